//! The script bootstrapper: runs the operator's executable with this node's role and the
//! cluster's facts in its environment. The join token reaches it in a 0600 file, never in the
//! environment (which `/proc` shows to the node's other users); the founder writes the token
//! it makes to `WEFT_JOIN_TOKEN_OUT`, which weft publishes sealed for the others. The exit code
//! decides success.

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::time::Duration;

use async_trait::async_trait;

use super::files::{self, StepError, under};
use super::plan::Job;
use super::{Bootstrapper, Progress, Published};
use crate::ledger::state::Phase;

/// Where the token files live, under the root: a runtime directory (tmpfs on real systems),
/// not the state dir.
const WORK_DIR: &str = "/run/weft/bootstrap";

/// A user executable as bootstrapper.
#[derive(Debug, Clone)]
pub struct Script {
    pub program: PathBuf,
    pub root: PathBuf,
    pub interface: String,
    /// How long one run may take.
    pub deadline: Duration,
}

impl Script {
    fn dir(&self) -> PathBuf {
        under(&self.root, WORK_DIR)
    }

    fn out_file(&self) -> PathBuf {
        self.dir().join("join-token.out")
    }
}

#[async_trait]
impl Bootstrapper for Script {
    async fn deploy(
        &self,
        job: &Job,
        progress: Progress<'_>,
    ) -> Result<Option<Published>, StepError> {
        let dir = self.dir();
        std::fs::create_dir_all(&dir).map_err(|source| StepError::Write {
            path: dir.clone(),
            source,
        })?;
        set_private(&dir)?;
        let token_file = dir.join("join-token");
        let out = self.out_file();
        let _ = std::fs::remove_file(&out);
        let token_path = match &job.join {
            Some(join) => {
                files::write_atomic(&token_file, join.token.as_bytes(), 0o600)?;
                token_file.display().to_string()
            }
            None => String::new(),
        };
        let env = vec![
            ("WEFT_ROLE".to_string(), job.role.to_string()),
            ("WEFT_OVERLAY_IP".to_string(), job.overlay_ip.to_string()),
            (
                "WEFT_MASTER_IP".to_string(),
                job.join
                    .as_ref()
                    .map(|j| j.ip.to_string())
                    .unwrap_or_default(),
            ),
            ("WEFT_INTERFACE".to_string(), self.interface.clone()),
            ("WEFT_JOIN_TOKEN_FILE".to_string(), token_path),
            ("WEFT_JOIN_TOKEN_OUT".to_string(), out.display().to_string()),
        ];
        if !progress(Phase::Starting) {
            let _ = std::fs::remove_file(&token_file);
            return Err(super::k3s::superseded());
        }
        let ran = files::run(&self.program, &[], &env, self.deadline).await;
        let _ = std::fs::remove_file(&token_file);
        ran?;
        if !job.role.founds_cluster() {
            return Ok(None);
        }
        self.republish(job.overlay_ip).await
    }

    async fn republish(&self, _overlay_ip: Ipv4Addr) -> Result<Option<Published>, StepError> {
        let out = self.out_file();
        let token = files::read_optional(&out)?
            .map(|t| t.trim().to_string())
            .filter(|t| !t.is_empty())
            .ok_or_else(|| {
                StepError::Other(format!(
                    "the script wrote no join token to {} ($WEFT_JOIN_TOKEN_OUT); the other \
                     members need one to join",
                    out.display()
                ))
            })?;
        Ok(Some(Published {
            server_url: None,
            join_token: token,
            kubeconfig: None,
        }))
    }
}

fn set_private(dir: &std::path::Path) -> Result<(), StepError> {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(|source| {
        StepError::Write {
            path: dir.to_path_buf(),
            source,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::super::plan::JoinFacts;
    use super::*;
    use crate::ledger::state::Role;

    fn script(dir: &std::path::Path, body: &str) -> Script {
        let program = dir.join("bootstrap.sh");
        std::fs::write(&program, format!("#!/bin/sh\n{body}\n")).unwrap();
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&program, std::fs::Permissions::from_mode(0o755)).unwrap();
        Script {
            program,
            root: dir.to_path_buf(),
            interface: "weft0".into(),
            deadline: Duration::from_secs(10),
        }
    }

    #[tokio::test]
    async fn a_worker_script_sees_its_facts_and_the_token_in_a_private_file() {
        let dir = tempfile::tempdir().unwrap();
        let seen = dir.path().join("seen");
        let s = script(
            dir.path(),
            &format!(
                "{{ echo \"$WEFT_ROLE $WEFT_OVERLAY_IP $WEFT_MASTER_IP $WEFT_INTERFACE\"; \
                 cat \"$WEFT_JOIN_TOKEN_FILE\"; echo; stat -c %a \"$WEFT_JOIN_TOKEN_FILE\"; \
                 env | grep -c K10tok || true; }} > {}",
                seen.display()
            ),
        );
        let job = Job {
            role: Role::Worker,
            overlay_ip: Ipv4Addr::new(10, 1, 0, 3),
            join: Some(JoinFacts {
                ip: Ipv4Addr::new(10, 1, 0, 1),
                server_url: None,
                token: "K10tok".into(),
            }),
        };
        assert_eq!(s.deploy(&job, &|_| true).await.unwrap(), None);
        let seen = std::fs::read_to_string(seen).unwrap();
        assert_eq!(seen, "worker 10.1.0.3 10.1.0.1 weft0\nK10tok\n600\n0\n");
        assert!(
            !s.dir().join("join-token").exists(),
            "the token file is removed after the run"
        );
    }

    #[tokio::test]
    async fn the_founder_publishes_what_its_script_wrote_and_a_failure_says_why() {
        let dir = tempfile::tempdir().unwrap();
        let s = script(dir.path(), "echo made-token > \"$WEFT_JOIN_TOKEN_OUT\"");
        let job = Job {
            role: Role::Master,
            overlay_ip: Ipv4Addr::new(10, 1, 0, 1),
            join: None,
        };
        let published = s.deploy(&job, &|_| true).await.unwrap().unwrap();
        assert_eq!(published.join_token, "made-token");

        let failing = script(dir.path(), "echo 'no disk' >&2; exit 4");
        let err = failing
            .deploy(&job, &|_| true)
            .await
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("exit code 4") && err.contains("no disk"),
            "{err}"
        );
    }
}
