//! The k3s bootstrapper: writes the role's environment file and command line (a systemd
//! drop-in, or OpenRC's environment file), enables and starts `k3s` or `k3s-agent`, and on a
//! server waits for k3s' join token; the founder hands back its token, server URL and admin
//! kubeconfig to publish. Every path is under the root prefix, so tests run against fake
//! `systemctl`, `rc-service`, `rc-update` and `k3s` executables in a temporary directory.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use async_trait::async_trait;

use super::files::{self, StepError, under};
use super::plan::Job;
use super::render::{self, K3sOptions};
use super::{Bootstrapper, InitChoice, Progress, Published};
use crate::ledger::state::Phase;

/// k3s' join token on a server.
const NODE_TOKEN: &str = "/var/lib/rancher/k3s/server/node-token";
/// The admin kubeconfig k3s writes on a server.
const K3S_YAML: &str = "/etc/rancher/k3s/k3s.yaml";
/// How long one init-system command may take.
const COMMAND_DEADLINE: Duration = Duration::from_secs(120);
/// How often a server's files are looked for.
const POLL: Duration = Duration::from_millis(500);

/// The init system that runs k3s.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Init {
    Systemd,
    OpenRc,
}

impl Init {
    /// The configured one, or the one found under `root`: systemd when `/run/systemd/system`
    /// exists, else OpenRC when `/run/openrc` or `/sbin/openrc-run` does, else systemd.
    pub fn resolve(choice: InitChoice, root: &Path) -> Init {
        match choice {
            InitChoice::Systemd => Init::Systemd,
            InitChoice::OpenRc => Init::OpenRc,
            InitChoice::Auto => {
                let exists = |p: &str| under(root, p).exists();
                if exists("/run/systemd/system") {
                    Init::Systemd
                } else if exists("/run/openrc") || exists("/sbin/openrc-run") {
                    Init::OpenRc
                } else {
                    Init::Systemd
                }
            }
        }
    }
}

/// k3s under systemd or OpenRC.
#[derive(Debug, Clone)]
pub struct K3s {
    pub root: PathBuf,
    pub init: Init,
    pub options: K3sOptions,
    /// How long a server may take to write its join token.
    pub token_wait: Duration,
}

#[async_trait]
impl Bootstrapper for K3s {
    async fn deploy(
        &self,
        job: &Job,
        progress: Progress<'_>,
    ) -> Result<Option<Published>, StepError> {
        let service = render::service(job, &self.options).map_err(StepError::Other)?;
        let binary = files::find_executable("k3s", &["/usr/local/bin/k3s", "/usr/bin/k3s"])
            .ok_or_else(|| {
                StepError::Other(
                    "k3s is not installed: no k3s on PATH, in /usr/local/bin or /usr/bin".into(),
                )
            })?;
        let name = service.name;
        let other = if name == "k3s" { "k3s-agent" } else { "k3s" };
        match self.init {
            Init::Systemd => {
                files::write_atomic(
                    &under(&self.root, &format!("/etc/sysconfig/{name}")),
                    render::env_file(&service.env).as_bytes(),
                    0o600,
                )?;
                files::write_atomic(
                    &under(
                        &self.root,
                        &format!("/etc/systemd/system/{name}.service.d/override.conf"),
                    ),
                    render::systemd_dropin(&binary.display().to_string(), &service.args).as_bytes(),
                    0o644,
                )?;
                if !progress(Phase::Starting) {
                    return Err(superseded());
                }
                let systemctl = tool("systemctl")?;
                // A node that held the other role before runs the other service: ours replaces
                // it (only one weft configured: its drop-in is there).
                let other_dropin = format!("/etc/systemd/system/{other}.service.d/override.conf");
                if under(&self.root, &other_dropin).exists() {
                    run(&systemctl, &["disable", "--now", other]).await?;
                    remove(&under(&self.root, &other_dropin))?;
                }
                // Restart, not start: a running k3s must pick up the new configuration.
                for args in [
                    vec!["daemon-reload"],
                    vec!["enable", name],
                    vec!["restart", "--no-block", name],
                ] {
                    run(&systemctl, &args).await?;
                }
            }
            Init::OpenRc => {
                let mut env = service.env.clone();
                env.push((
                    "command_args".into(),
                    render::openrc_command_args(name, &service.args),
                ));
                files::write_atomic(
                    &under(&self.root, &format!("/etc/rancher/k3s/{name}.env")),
                    render::env_file(&env).as_bytes(),
                    0o600,
                )?;
                if !progress(Phase::Starting) {
                    return Err(superseded());
                }
                let other_env = under(&self.root, &format!("/etc/rancher/k3s/{other}.env"));
                if other_env.exists() {
                    run(&tool("rc-service")?, &[other, "stop"]).await?;
                    run(&tool("rc-update")?, &["del", other, "default"]).await?;
                    remove(&other_env)?;
                }
                run(&tool("rc-update")?, &["add", name, "default"]).await?;
                run(&tool("rc-service")?, &[name, "restart"]).await?;
            }
        }
        if !job.role.is_control_plane() {
            return Ok(None);
        }
        let token = self.wait_for(NODE_TOKEN).await?;
        if !job.role.founds_cluster() {
            return Ok(None);
        }
        let k3s_yaml = self.wait_for(K3S_YAML).await?;
        Ok(Some(self.published(job.overlay_ip, &token, &k3s_yaml)))
    }

    async fn republish(&self, overlay_ip: Ipv4Addr) -> Result<Option<Published>, StepError> {
        let read = |path: &str| {
            let path = under(&self.root, path);
            files::read_optional(&path)?.ok_or_else(|| {
                StepError::Other(format!(
                    "{} is missing: is k3s still installed here?",
                    path.display()
                ))
            })
        };
        let token = read(NODE_TOKEN)?;
        let k3s_yaml = read(K3S_YAML)?;
        Ok(Some(self.published(overlay_ip, &token, &k3s_yaml)))
    }
}

impl K3s {
    fn published(&self, overlay_ip: Ipv4Addr, token: &str, k3s_yaml: &str) -> Published {
        let url = render::server_url(overlay_ip);
        Published {
            kubeconfig: Some(render::kubeconfig_for(k3s_yaml, &url)),
            server_url: Some(url),
            join_token: token.trim().to_string(),
        }
    }

    /// The contents of a file k3s writes once it runs, waiting up to `token_wait`.
    async fn wait_for(&self, path: &str) -> Result<String, StepError> {
        let path = under(&self.root, path);
        let deadline = tokio::time::Instant::now() + self.token_wait;
        loop {
            if let Some(text) = files::read_optional(&path)?.filter(|t| !t.trim().is_empty()) {
                return Ok(text);
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(StepError::Other(format!(
                    "k3s did not write {} within {} s (see its log: journalctl -u k3s, or \
                     /var/log/k3s.log)",
                    path.display(),
                    self.token_wait.as_secs()
                )));
            }
            tokio::time::sleep(POLL).await;
        }
    }
}

/// The role moved to another member while this node was writing its configuration.
pub(super) fn superseded() -> StepError {
    StepError::Other(
        "the ledger gave this node another role while it was being configured; nothing was          started"
            .into(),
    )
}

fn remove(path: &Path) -> Result<(), StepError> {
    std::fs::remove_file(path).map_err(|source| StepError::Write {
        path: path.to_path_buf(),
        source,
    })
}

/// An init-system tool, from PATH or the usual places.
fn tool(name: &str) -> Result<PathBuf, StepError> {
    let usual = [
        format!("/usr/bin/{name}"),
        format!("/bin/{name}"),
        format!("/sbin/{name}"),
    ];
    let usual: Vec<&str> = usual.iter().map(String::as_str).collect();
    files::find_executable(name, &usual)
        .ok_or_else(|| StepError::Other(format!("{name} is not installed")))
}

async fn run(program: &Path, args: &[&str]) -> Result<(), StepError> {
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    files::run(program, &args, &[], COMMAND_DEADLINE).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_init_system_is_detected_under_the_root() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(Init::resolve(InitChoice::Auto, dir.path()), Init::Systemd);
        std::fs::create_dir_all(dir.path().join("run/openrc")).unwrap();
        assert_eq!(Init::resolve(InitChoice::Auto, dir.path()), Init::OpenRc);
        std::fs::create_dir_all(dir.path().join("run/systemd/system")).unwrap();
        assert_eq!(Init::resolve(InitChoice::Auto, dir.path()), Init::Systemd);
        assert_eq!(Init::resolve(InitChoice::OpenRc, dir.path()), Init::OpenRc);
    }
}
