//! The raw layers of configuration before any value is typed: where each one came from
//! ([`Origin`]), the figment provider that carries it, and the YAML config file reader.
//!
//! Every flag and every environment variable is its own layer, so when a value turns out to be
//! bad the error can name exactly the flag, variable or file that supplied it.

use std::fmt;
use std::path::{Path, PathBuf};

use figment::value::{Dict, Map, Value};
use figment::{Metadata, Profile, Provider};

use super::ConfigError;

/// Where a setting's effective value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// weft's built-in default.
    Default,
    /// A network setting carried inside the token.
    Token,
    /// The YAML file given with `--config`.
    File(PathBuf),
    /// A key of a Kairos cloud-config file given with `--cloud-config` (`p2p.role`, ...).
    CloudConfig { file: PathBuf, key: String },
    /// An environment variable (weft's `WEFT_*` or an edgevpn alias).
    Env(String),
    /// A command-line flag such as `--cidr`.
    Flag(String),
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Default => f.write_str("default"),
            Origin::Token => f.write_str("network token"),
            Origin::File(path) => write!(f, "config file {}", path.display()),
            // A value the file implies rather than states reads "FILE (why)".
            Origin::CloudConfig { file, key } if key.starts_with('(') => {
                write!(f, "cloud-config {} {key}", file.display())
            }
            Origin::CloudConfig { file, key } => write!(f, "cloud-config {}:{key}", file.display()),
            Origin::Env(name) => write!(f, "environment variable {name}"),
            Origin::Flag(flag) => write!(f, "flag {flag}"),
        }
    }
}

/// One setting as given on the command line or in a `WEFT_*` variable, not yet typed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawSetting {
    /// The setting's key (`cidr`, `state_dir`, ...).
    pub key: &'static str,
    pub origin: Origin,
    pub value: RawValue,
}

/// An untyped value: one string, or several for repeatable settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RawValue {
    Text(String),
    List(Vec<String>),
}

impl From<RawValue> for Value {
    fn from(raw: RawValue) -> Value {
        match raw {
            RawValue::Text(text) => Value::from(text),
            RawValue::List(items) => Value::from(items),
        }
    }
}

/// A figment provider holding the values of one origin.
#[derive(Debug, Clone)]
pub(super) struct Layer {
    pub origin: Origin,
    pub values: Dict,
}

impl Layer {
    pub fn new(origin: Origin) -> Self {
        Layer {
            origin,
            values: Dict::new(),
        }
    }

    pub fn with(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.values.insert(key.to_string(), value.into());
        self
    }

    /// The metadata name figment keeps for this layer; [`Origin`]s are told apart by it.
    pub fn name(origin: &Origin) -> String {
        origin.to_string()
    }
}

impl Provider for Layer {
    fn metadata(&self) -> Metadata {
        Metadata::named(Layer::name(&self.origin))
    }

    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        Ok(Profile::Default.collect(self.values.clone()))
    }
}

/// The largest config or cloud-config file read: far more than any real one, little enough
/// that a wrong path (a disk, a log, `/dev/zero`) is refused instead of filling memory.
pub(super) const MAX_FILE: u64 = 16 << 20;

/// Reads the text of `path`, refusing more than `limit` bytes; the error is for a message
/// that names the file.
pub fn read_text(path: &Path, limit: u64) -> Result<String, String> {
    use std::io::Read as _;
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .and_then(|file| file.take(limit + 1).read_to_end(&mut bytes))
        .map_err(|e| e.to_string())?;
    if bytes.len() as u64 > limit {
        return Err(format!("larger than {limit} bytes; is it the right file?"));
    }
    String::from_utf8(bytes).map_err(|_| "not UTF-8 text".to_string())
}

/// Reads the YAML config file into a layer, refusing keys that are not settings (a typo in a
/// config file should stop start-up, not be silently ignored).
pub(super) fn read_file(path: &Path, known: &[&str]) -> Result<Layer, ConfigError> {
    let text = read_text(path, MAX_FILE).map_err(|reason| ConfigError::File {
        path: path.to_path_buf(),
        reason,
    })?;
    let values: Dict = if text.trim().is_empty() {
        Dict::new()
    } else {
        serde_saphyr::from_str(&text).map_err(|e| ConfigError::File {
            path: path.to_path_buf(),
            reason: format!("not a YAML mapping of settings: {e}"),
        })?
    };
    if let Some(unknown) = values.keys().find(|k| !known.contains(&k.as_str())) {
        return Err(ConfigError::UnknownKey {
            key: unknown.clone(),
            path: path.to_path_buf(),
            known: known.join(", "),
        });
    }
    Ok(Layer {
        origin: Origin::File(path.to_path_buf()),
        values,
    })
}
