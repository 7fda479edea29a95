//! Kairos cloud-config files (`weft up --cloud-config FILE|DIR`, repeatable): the `p2p:` block
//! and the `k3s:` / `k3s-agent:` blocks become weft settings, each with its origin
//! (`cloud-config FILE:p2p.role`), so that `--print-config` and errors name the key that
//! supplied a value. Files are collected and merged as Kairos does: a directory stands for the
//! cloud-configs under it (with a `#cloud-config` header), later files win for single values,
//! and k3s' args and env accumulate.
//!
//! Only the blocks weft acts on are read; the rest of a cloud-config (users, install, stages)
//! belongs to Kairos and is ignored. Unknown keys inside those blocks are warned about; a value
//! of the wrong type stops start-up with its key path.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::Value as Json;

use super::ConfigError;
use super::layers::{Layer, Origin};
use super::values::parse_bool;

/// The address `p2p.dns: true` serves the mesh's DNS on (Kairos points the host's resolver
/// there).
const KAIROS_DNS: &str = "127.0.0.1:53";
/// Kairos' default for `p2p.minimum_nodes`.
const KAIROS_MINIMUM_NODES: u64 = 2;

/// What the cloud-config files contribute: layers in precedence order (lowest first) and
/// warnings about keys weft does not use.
#[derive(Debug, Default)]
pub(super) struct CloudLayers {
    pub layers: Vec<Layer>,
    pub warnings: Vec<String>,
}

/// Facts gathered over all files, resolved after the last one (a later file may change a key
/// that an earlier one's mapping depends on, and lists and maps accumulate).
#[derive(Default)]
struct Across {
    role_given: bool,
    auto_enable: Option<(bool, Origin)>,
    ha_enable: Option<(bool, Origin)>,
    master_nodes: Option<(u64, Origin)>,
    minimum_nodes_given: bool,
    first_p2p: Option<PathBuf>,
    /// `k3s.args`, `k3s.env`, `k3s-agent.args`, `k3s-agent.env`: merged over the files as
    /// Kairos merges them (lists gain the items they lack, maps the keys, a later value
    /// winning), with the last file that contributed.
    merged: BTreeMap<&'static str, (Vec<String>, Origin)>,
}

/// The headers Kairos requires in a cloud-config found in a directory (within its first ten
/// lines); other YAML there (yip stages, say) is not a cloud-config.
const HEADERS: [&str; 3] = ["#cloud-config", "#kairos-config", "#node-config"];

/// Reads the cloud-config files `paths` name, in order (see [`expand`]). `as_edgevpn` (weft
/// running as `edgevpn`, Kairos' drop-in mode) keeps the bootstrapper at `none`: Kairos'
/// provider drives k3s then.
pub(super) fn read(paths: &[PathBuf], as_edgevpn: bool) -> Result<CloudLayers, ConfigError> {
    let mut out = CloudLayers::default();
    let mut across = Across::default();
    let files = expand(paths, &mut out.warnings)?;
    if files.is_empty() && !paths.is_empty() {
        let named: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
        return Err(ConfigError::File {
            path: paths[0].clone(),
            reason: format!("no cloud-config file found in {}", named.join(", ")),
        });
    }
    for (path, found_in_dir) in &files {
        match read_file(path, &mut out, &mut across) {
            // Kairos passes over a file in its config directories that does not parse.
            Err(ConfigError::File { reason, .. }) if *found_in_dir => out.warnings.push(format!(
                "cloud-config {}: {reason}; skipped",
                path.display()
            )),
            other => other?,
        }
    }
    if let Some((first, _)) = files.first()
        && !as_edgevpn
    {
        out.layers.push(
            Layer::new(origin(first, "(implied: Kairos' native mode)")).with("bootstrapper", "k3s"),
        );
    }
    for (setting, (items, from)) in std::mem::take(&mut across.merged) {
        out.layers.push(Layer::new(from).with(setting, items));
    }
    if let Some(file) = &across.first_p2p {
        if !across.minimum_nodes_given {
            out.layers.push(
                Layer::new(origin(file, "p2p.minimum_nodes (Kairos' default)"))
                    .with("minimum_nodes", KAIROS_MINIMUM_NODES),
            );
        }
        if let Some((false, from)) = &across.auto_enable
            && !across.role_given
        {
            out.layers
                .push(Layer::new(from.clone()).with("role", "none"));
        }
        let ha_enabled = match &across.ha_enable {
            Some((on, _)) => *on,
            None => across.master_nodes.is_some(),
        };
        if ha_enabled {
            let (extra, from) = across.master_nodes.clone().unwrap_or_else(|| {
                let from = across.ha_enable.as_ref().map(|(_, o)| o.clone());
                (0, from.unwrap_or_else(|| origin(file, "p2p.auto.ha")))
            });
            if extra == 0 {
                out.warnings.push(format!(
                    "{from}: HA is enabled without p2p.auto.ha.master_nodes, so no control plane \
                     is added to the first"
                ));
            }
            // Out-of-range counts are refused with their origin when the setting is typed.
            let control_planes = extra.saturating_add(1);
            out.layers
                .push(Layer::new(from).with("control_planes", control_planes.to_string()));
        }
    }
    Ok(out)
}

/// The files `paths` name, in order, each with whether it was found in a directory: a file as
/// itself; a directory as the cloud-configs anywhere under it, in path order (Kairos reads
/// `/oem` and `/usr/local/cloud-config` that way, and only files with a cloud-config header).
/// A path that does not exist is warned about and skipped (Kairos' directories are optional).
fn expand(
    paths: &[PathBuf],
    warnings: &mut Vec<String>,
) -> Result<Vec<(PathBuf, bool)>, ConfigError> {
    let mut files = Vec::new();
    for path in paths {
        if !path.exists() {
            warnings.push(format!(
                "cloud-config {} does not exist; skipped",
                path.display()
            ));
        } else if path.is_dir() {
            let mut found = Vec::new();
            walk(path, &mut found)?;
            found.sort();
            files.extend(
                found
                    .into_iter()
                    .filter(|f| has_header(f))
                    .map(|f| (f, true)),
            );
        } else {
            files.push((path.clone(), false));
        }
    }
    Ok(files)
}

/// The `*.yaml` and `*.yml` files under `dir`, at any depth; a directory reached twice (a
/// symbolic link loop) is read once.
fn walk(dir: &Path, found: &mut Vec<PathBuf>) -> Result<(), ConfigError> {
    walk_once(dir, found, &mut std::collections::HashSet::new())
}

fn walk_once(
    dir: &Path,
    found: &mut Vec<PathBuf>,
    seen: &mut std::collections::HashSet<PathBuf>,
) -> Result<(), ConfigError> {
    if let Ok(real) = std::fs::canonicalize(dir)
        && !seen.insert(real)
    {
        return Ok(());
    }
    let entries = std::fs::read_dir(dir).map_err(|e| ConfigError::File {
        path: dir.to_path_buf(),
        reason: e.to_string(),
    })?;
    for path in entries.filter_map(|e| e.ok().map(|e| e.path())) {
        if path.is_dir() {
            walk_once(&path, found, seen)?;
        } else if path
            .extension()
            .is_some_and(|ext| ext == "yaml" || ext == "yml")
        {
            found.push(path);
        }
    }
    Ok(())
}

/// Whether one of the first ten lines of `path` is a cloud-config header.
fn has_header(path: &Path) -> bool {
    use std::io::BufRead as _;
    use std::io::Read as _;
    // Ten lines of a cloud-config fit in far less; a file that is no text ends here.
    std::fs::File::open(path).is_ok_and(|file| {
        std::io::BufReader::new(file.take(64 * 1024))
            .lines()
            .take(10)
            .map_while(Result::ok)
            .any(|line| HEADERS.iter().any(|h| line.trim_start().starts_with(h)))
    })
}

fn origin(file: &Path, key: &str) -> Origin {
    Origin::CloudConfig {
        file: file.to_path_buf(),
        key: key.to_string(),
    }
}

fn read_file(path: &Path, out: &mut CloudLayers, across: &mut Across) -> Result<(), ConfigError> {
    let text = super::layers::read_text(path, super::layers::MAX_FILE).map_err(|reason| {
        ConfigError::File {
            path: path.to_path_buf(),
            reason,
        }
    })?;
    let document: Json = if text.trim().is_empty() {
        Json::Null
    } else {
        serde_saphyr::from_str(&text).map_err(|e| ConfigError::File {
            path: path.to_path_buf(),
            reason: format!("not a YAML cloud-config: {e}"),
        })?
    };
    let mut file = File { path, out };
    let root = match &document {
        Json::Null => return Ok(()),
        Json::Object(map) => map,
        other => return Err(file.wrong("(the document)", other, "a mapping")),
    };
    if let Some(p2p) = root.get("p2p") {
        across.first_p2p.get_or_insert_with(|| path.to_path_buf());
        read_p2p(&mut file, p2p, across)?;
    }
    for (block, args_key, env_key) in [
        ("k3s", "k3s_args", "k3s_env"),
        ("k3s-agent", "k3s_agent_args", "k3s_agent_env"),
    ] {
        if let Some(value) = root.get(block) {
            read_k3s(&mut file, across, block, value, args_key, env_key)?;
        }
    }
    Ok(())
}

/// One file being read: where values come from and where they go.
struct File<'a> {
    path: &'a Path,
    out: &'a mut CloudLayers,
}

impl File<'_> {
    fn origin(&self, key: &str) -> Origin {
        origin(self.path, key)
    }

    fn set(&mut self, key: &str, setting: &str, value: impl Into<figment::value::Value>) {
        let layer = Layer::new(self.origin(key)).with(setting, value);
        self.out.layers.push(layer);
    }

    fn warn(&mut self, message: String) {
        self.out
            .warnings
            .push(format!("cloud-config {}: {message}", self.path.display()));
    }

    fn wrong(&self, key: &str, value: &Json, expected: &str) -> ConfigError {
        ConfigError::CloudConfig {
            path: self.path.to_path_buf(),
            key: key.to_string(),
            reason: format!("expected {expected}, got {}", describe(value)),
        }
    }

    fn mapping<'v>(
        &self,
        key: &str,
        value: &'v Json,
    ) -> Result<&'v serde_json::Map<String, Json>, ConfigError> {
        value
            .as_object()
            .ok_or_else(|| self.wrong(key, value, "a mapping"))
    }

    fn boolean(&self, key: &str, value: &Json) -> Result<bool, ConfigError> {
        match value {
            Json::Bool(b) => Ok(*b),
            Json::String(s) => parse_bool(s).ok_or_else(|| self.wrong(key, value, "true or false")),
            other => Err(self.wrong(key, other, "true or false")),
        }
    }

    fn count(&self, key: &str, value: &Json) -> Result<u64, ConfigError> {
        let n = match value {
            Json::Number(n) => n.as_u64(),
            Json::String(s) => s.trim().parse().ok(),
            _ => None,
        };
        n.ok_or_else(|| self.wrong(key, value, "a whole number"))
    }

    fn text(&self, key: &str, value: &Json) -> Result<String, ConfigError> {
        scalar(value).ok_or_else(|| self.wrong(key, value, "a single value"))
    }

    fn unknown(&mut self, block: &str, key: &str, known: &[&str]) {
        self.warn(format!(
            "unknown key {block}.{key}, ignored (known: {})",
            known.join(", ")
        ));
    }
}

const P2P_KEYS: &[&str] = &[
    "network_token",
    "network_id",
    "role",
    "dns",
    "minimum_nodes",
    "disable_dht",
    "vpn",
    "auto",
];

fn read_p2p(file: &mut File<'_>, value: &Json, across: &mut Across) -> Result<(), ConfigError> {
    let p2p = file.mapping("p2p", value)?;
    for (key, value) in p2p {
        let path = format!("p2p.{key}");
        match key.as_str() {
            "network_token" => {
                let token = file.text(&path, value)?;
                file.set(&path, "token", token);
            }
            // Kairos' provider names its coordination bucket with it; weft coordinates in its
            // own ledger and has no use for it.
            "network_id" => {}
            "role" => {
                let role = file.text(&path, value)?;
                across.role_given = true;
                file.set(&path, "role", role);
            }
            "dns" => {
                let on = file.boolean(&path, value)?;
                file.set(&path, "dns", if on { KAIROS_DNS } else { "" });
            }
            "minimum_nodes" => {
                across.minimum_nodes_given = true;
                let text = file.text(&path, value)?;
                file.set(&path, "minimum_nodes", text);
            }
            "disable_dht" => {
                let off = file.boolean(&path, value)?;
                file.set(&path, "dht", !off);
                file.set(&path, "public_dht", !off);
            }
            "vpn" => read_vpn(file, value)?,
            "auto" => read_auto(file, value, across)?,
            other => file.unknown("p2p", other, P2P_KEYS),
        }
    }
    Ok(())
}

fn read_vpn(file: &mut File<'_>, value: &Json) -> Result<(), ConfigError> {
    const KEYS: &[&str] = &["create", "use", "env"];
    for (key, value) in file.mapping("p2p.vpn", value)? {
        let path = format!("p2p.vpn.{key}");
        match key.as_str() {
            "create" => {
                let on = file.boolean(&path, value)?;
                file.set(&path, "tun", on);
            }
            "use" => {
                let on = file.boolean(&path, value)?;
                file.set(&path, "k3s_vpn", on);
            }
            "env" => {
                let mut env = BTreeMap::new();
                for (var, value) in file.mapping(&path, value)? {
                    let text = file.text(&format!("{path}.{var}"), value)?;
                    env.insert(var.clone(), text);
                }
                let origin_of = |var: &str| file.origin(&format!("{path}.{var}"));
                let layers = super::edgevpn::layers_from(&env, origin_of)?;
                file.out.layers.extend(layers);
            }
            other => file.unknown("p2p.vpn", other, KEYS),
        }
    }
    Ok(())
}

fn read_auto(file: &mut File<'_>, value: &Json, across: &mut Across) -> Result<(), ConfigError> {
    const KEYS: &[&str] = &["enable", "enabled", "ha"];
    const HA_KEYS: &[&str] = &["enable", "enabled", "master_nodes"];
    for (key, value) in file.mapping("p2p.auto", value)? {
        let path = format!("p2p.auto.{key}");
        match key.as_str() {
            "enable" | "enabled" => {
                across.auto_enable = Some((file.boolean(&path, value)?, file.origin(&path)));
            }
            "ha" => {
                for (key, value) in file.mapping(&path, value)? {
                    let path = format!("p2p.auto.ha.{key}");
                    match key.as_str() {
                        "enable" | "enabled" => {
                            across.ha_enable =
                                Some((file.boolean(&path, value)?, file.origin(&path)));
                        }
                        "master_nodes" => {
                            let n = file.count(&path, value)?;
                            across.master_nodes = Some((n, file.origin(&path)));
                        }
                        "external_db" => file.warn(format!(
                            "{path} is not supported: weft's control planes use k3s' embedded \
                             etcd; ignored"
                        )),
                        other => file.unknown("p2p.auto.ha", other, HA_KEYS),
                    }
                }
            }
            other => file.unknown("p2p.auto", other, KEYS),
        }
    }
    Ok(())
}

fn read_k3s(
    file: &mut File<'_>,
    across: &mut Across,
    block: &str,
    value: &Json,
    args_key: &'static str,
    env_key: &'static str,
) -> Result<(), ConfigError> {
    const KEYS: &[&str] = &["args", "env", "enabled"];
    for (key, value) in file.mapping(block, value)? {
        let path = format!("{block}.{key}");
        match key.as_str() {
            "args" => {
                let items = value
                    .as_array()
                    .ok_or_else(|| file.wrong(&path, value, "a list of arguments"))?;
                let args: Vec<String> = items
                    .iter()
                    .enumerate()
                    .map(|(i, item)| file.text(&format!("{path}[{i}]"), item))
                    .collect::<Result<_, _>>()?;
                let (merged, from) = across
                    .merged
                    .entry(args_key)
                    .or_insert_with(|| (Vec::new(), file.origin(&path)));
                // An argument an earlier file gave is not repeated; one file's own repeats
                // (`--node-label a=1 --node-label b=2`) are kept.
                let earlier = merged.len();
                for arg in args {
                    if !merged[..earlier].contains(&arg) {
                        merged.push(arg);
                    }
                }
                *from = file.origin(&path);
            }
            "env" => {
                let (merged, from) = across
                    .merged
                    .entry(env_key)
                    .or_insert_with(|| (Vec::new(), file.origin(&path)));
                for (var, value) in file.mapping(&path, value)? {
                    let text = file.text(&format!("{path}.{var}"), value)?;
                    let pair = format!("{var}={text}");
                    let prefix = format!("{var}=");
                    match merged.iter_mut().find(|p| p.starts_with(&prefix)) {
                        Some(existing) => *existing = pair,
                        None => merged.push(pair),
                    }
                }
                *from = file.origin(&path);
            }
            // Kairos' switch for k3s without p2p; under p2p weft decides what runs.
            "enabled" => {}
            "replace_args" | "replace_env" | "embedded_registry" => file.warn(format!(
                "{path} is not supported by weft's k3s bootstrapper (it appends args and env); \
                 ignored"
            )),
            other => file.unknown(block, other, KEYS),
        }
    }
    Ok(())
}

/// A scalar as text (strings, numbers, booleans).
fn scalar(value: &Json) -> Option<String> {
    match value {
        Json::String(s) => Some(s.clone()),
        Json::Number(n) => Some(n.to_string()),
        Json::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn describe(value: &Json) -> String {
    match value {
        Json::Null => "nothing".into(),
        Json::Bool(b) => b.to_string(),
        Json::Number(n) => n.to_string(),
        Json::String(s) => format!("{s:?}"),
        Json::Array(_) => "a list".into(),
        Json::Object(_) => "a mapping".into(),
    }
}
