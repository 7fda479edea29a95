//! The bootstrapper's I/O on the host: paths under the root prefix, files written atomically
//! with their mode (a crash leaves the old file or the new one, never half of one), and external
//! commands run with a deadline and a short, bounded account of their failure.

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::io::AsyncReadExt as _;

/// How much of a failed command's output an error quotes.
const OUTPUT_TAIL: usize = 512;

/// Why a file or command step failed. Never carries a secret: only paths, commands and their
/// own output.
#[derive(Debug, thiserror::Error)]
pub enum StepError {
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot run {command}: {source}")]
    Spawn {
        command: String,
        source: std::io::Error,
    },
    #[error("{command} failed ({status}){output}")]
    Failed {
        command: String,
        status: String,
        output: String,
    },
    #[error("{command} did not finish within {} s", .after.as_secs())]
    Timeout { command: String, after: Duration },
    #[error("{0}")]
    Other(String),
}

/// `path` (absolute, as on the host) under `root`.
pub fn under(root: &Path, path: &str) -> PathBuf {
    root.join(path.trim_start_matches('/'))
}

/// Writes `contents` to `path` with `mode`: a temporary file beside it (created with that mode,
/// so a secret is never readable by others, even briefly), fsync, rename, fsync of the
/// directory. Parent directories are created (0755).
pub fn write_atomic(path: &Path, contents: &[u8], mode: u32) -> Result<(), StepError> {
    crate::durable::write(path, contents, mode).map_err(|source| StepError::Write {
        path: path.to_path_buf(),
        source,
    })
}

/// Reads a file as text, `None` when it does not exist.
pub fn read_optional(path: &Path) -> Result<Option<String>, StepError> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(Some(text)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(StepError::Read {
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// Runs `program args...` with extra `env`, waits up to `deadline`, and fails with the end of
/// its output when it exits with an error. Output is read as it comes (a chatty program
/// cannot block on a full pipe) and only its last bytes are kept.
pub async fn run(
    program: &Path,
    args: &[String],
    env: &[(String, String)],
    deadline: Duration,
) -> Result<(), StepError> {
    let command = std::iter::once(program.display().to_string())
        .chain(args.iter().cloned())
        .collect::<Vec<_>>()
        .join(" ");
    let mut child = tokio::process::Command::new(program)
        .args(args)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|source| StepError::Spawn {
            command: command.clone(),
            source,
        })?;
    let stdout = child.stdout.take();
    let stderr = child.stderr.take();
    let finished = tokio::time::timeout(deadline, async {
        let (out, err, status) = tokio::join!(tail(stdout), tail(stderr), child.wait());
        (out, err, status)
    })
    .await;
    let Ok((out, err, status)) = finished else {
        let _ = child.kill().await;
        return Err(StepError::Timeout {
            command,
            after: deadline,
        });
    };
    let status = status.map_err(|source| StepError::Spawn {
        command: command.clone(),
        source,
    })?;
    if status.success() {
        return Ok(());
    }
    let output = [err, out]
        .into_iter()
        .find(|text| !text.trim().is_empty())
        .map(|text| format!(": {}", text.trim()))
        .unwrap_or_default();
    Err(StepError::Failed {
        command,
        status: status
            .code()
            .map_or_else(|| "killed by a signal".into(), |c| format!("exit code {c}")),
        output,
    })
}

/// The last [`OUTPUT_TAIL`] bytes a pipe carries, as text.
async fn tail(pipe: Option<impl tokio::io::AsyncRead + Unpin>) -> String {
    let Some(mut pipe) = pipe else {
        return String::new();
    };
    let mut kept: Vec<u8> = Vec::new();
    let mut buf = [0u8; 4096];
    while let Ok(n) = pipe.read(&mut buf).await {
        if n == 0 {
            break;
        }
        kept.extend_from_slice(&buf[..n]);
        if kept.len() > OUTPUT_TAIL {
            kept.drain(..kept.len() - OUTPUT_TAIL);
        }
    }
    String::from_utf8_lossy(&kept).into_owned()
}

/// The first of `names` found as an executable file in the directories of `PATH`, or in
/// `fallbacks`.
pub fn find_executable(name: &str, fallbacks: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .chain(fallbacks.iter().map(PathBuf::from))
        .find(|candidate| {
            std::fs::metadata(candidate)
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_land_under_the_root() {
        assert_eq!(
            under(Path::new("/tmp/r"), "/etc/sysconfig/k3s"),
            PathBuf::from("/tmp/r/etc/sysconfig/k3s")
        );
        assert_eq!(
            under(Path::new("/"), "/etc/sysconfig/k3s"),
            PathBuf::from("/etc/sysconfig/k3s")
        );
    }

    #[test]
    fn an_atomic_write_replaces_the_file_with_the_mode_asked_for() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("etc/sysconfig/k3s-agent");
        write_atomic(&path, b"K3S_TOKEN=old\n", 0o600).unwrap();
        write_atomic(&path, b"K3S_TOKEN=new\n", 0o600).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"K3S_TOKEN=new\n");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let leftovers: Vec<_> = std::fs::read_dir(path.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(leftovers.len(), 1, "no temporary file left: {leftovers:?}");
    }

    #[tokio::test]
    async fn a_failing_command_reports_its_code_and_the_end_of_its_output() {
        let sh = Path::new("/bin/sh");
        run(
            sh,
            &["-c".into(), "exit 0".into()],
            &[],
            Duration::from_secs(5),
        )
        .await
        .unwrap();
        let err = run(
            sh,
            &["-c".into(), "echo boom >&2; exit 3".into()],
            &[],
            Duration::from_secs(5),
        )
        .await
        .unwrap_err()
        .to_string();
        assert!(err.contains("exit code 3") && err.contains("boom"), "{err}");
        let err = run(
            sh,
            &["-c".into(), "sleep 5".into()],
            &[],
            Duration::from_millis(100),
        )
        .await
        .unwrap_err();
        assert!(matches!(err, StepError::Timeout { .. }));
    }
}
