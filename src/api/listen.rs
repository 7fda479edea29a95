//! Binding the API's listener and serving it until shutdown.
//!
//! A unix socket gets the configured file mode. A socket file left by a crashed daemon is
//! replaced; one that still answers belongs to a live daemon and is an error, as is any path that
//! is not a socket (weft never deletes a file it did not make). On shutdown the socket file is
//! removed, unless another process has replaced it meanwhile.

use std::io;
use std::os::unix::fs::{
    DirBuilderExt as _, FileTypeExt as _, MetadataExt as _, PermissionsExt as _,
};
use std::path::{Path, PathBuf};

use axum::Router;
use tokio::net::{TcpListener, UnixListener, UnixStream};
use tokio_util::sync::CancellationToken;

use super::ApiAddr;

/// Why the API could not listen.
#[derive(Debug, thiserror::Error)]
pub enum ListenError {
    #[error("another weft is already serving its API on {path} (stop it first, or choose another --api)", path = path.display())]
    Live { path: PathBuf },
    #[error("{path} exists and is not a unix socket; refusing to replace it", path = path.display())]
    NotASocket { path: PathBuf },
    #[error("cannot listen on {addr}: {source}")]
    Bind { addr: ApiAddr, source: io::Error },
    #[error("cannot set mode {mode:04o} on {path}: {source}", path = path.display())]
    Mode {
        path: PathBuf,
        mode: u32,
        source: io::Error,
    },
}

/// A bound API listener.
#[derive(Debug)]
pub enum ApiListener {
    Unix {
        listener: UnixListener,
        path: PathBuf,
        /// (device, inode) of the socket file, so shutdown removes only our own.
        file_id: (u64, u64),
    },
    Tcp(TcpListener),
}

impl ApiListener {
    /// Binds `addr`; a unix socket gets file mode `unix_mode`.
    pub async fn bind(addr: &ApiAddr, unix_mode: u32) -> Result<ApiListener, ListenError> {
        match addr {
            ApiAddr::Tcp(socket) => {
                let listener =
                    TcpListener::bind(socket)
                        .await
                        .map_err(|source| ListenError::Bind {
                            addr: addr.clone(),
                            source,
                        })?;
                Ok(ApiListener::Tcp(listener))
            }
            ApiAddr::Unix(path) => bind_unix(addr, path, unix_mode).await,
        }
    }

    /// The address actually bound (with the OS-chosen port for `host:0`).
    pub fn local_addr(&self) -> ApiAddr {
        match self {
            ApiListener::Unix { path, .. } => ApiAddr::Unix(path.clone()),
            ApiListener::Tcp(l) => l
                .local_addr()
                .map(ApiAddr::Tcp)
                .unwrap_or_else(|_| ApiAddr::Tcp(([0, 0, 0, 0], 0).into())),
        }
    }

    /// Serves `router` until `shutdown` is cancelled, then removes the socket file.
    pub async fn serve(self, router: Router, shutdown: CancellationToken) -> io::Result<()> {
        match self {
            ApiListener::Tcp(listener) => super::serve::serve(listener, router, shutdown).await,
            ApiListener::Unix {
                listener,
                path,
                file_id,
            } => {
                let served = super::serve::serve(listener, router, shutdown).await;
                remove_if_ours(&path, file_id);
                served
            }
        }
    }
}

async fn bind_unix(addr: &ApiAddr, path: &Path, mode: u32) -> Result<ApiListener, ListenError> {
    let bind_error = |source| ListenError::Bind {
        addr: addr.clone(),
        source,
    };
    if let Some(parent) = path.parent() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(parent)
            .map_err(bind_error)?;
    }
    match std::fs::symlink_metadata(path) {
        Ok(meta) if !meta.file_type().is_socket() => {
            return Err(ListenError::NotASocket {
                path: path.to_path_buf(),
            });
        }
        Ok(_) => match UnixStream::connect(path).await {
            Ok(_) => {
                return Err(ListenError::Live {
                    path: path.to_path_buf(),
                });
            }
            Err(_) => {
                tracing::info!(path = %path.display(), "replacing a stale API socket");
                std::fs::remove_file(path).map_err(bind_error)?;
            }
        },
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(bind_error(e)),
    }
    let listener = UnixListener::bind(path).map_err(bind_error)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).map_err(|source| {
        ListenError::Mode {
            path: path.to_path_buf(),
            mode,
            source,
        }
    })?;
    let meta = std::fs::metadata(path).map_err(bind_error)?;
    Ok(ApiListener::Unix {
        listener,
        path: path.to_path_buf(),
        file_id: (meta.dev(), meta.ino()),
    })
}

fn remove_if_ours(path: &Path, file_id: (u64, u64)) {
    match std::fs::symlink_metadata(path) {
        Ok(meta) if (meta.dev(), meta.ino()) == file_id => {
            if let Err(e) = std::fs::remove_file(path) {
                tracing::warn!(path = %path.display(), error = %e, "could not remove the API socket");
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn socket_in(dir: &tempfile::TempDir) -> (ApiAddr, PathBuf) {
        let path = dir.path().join("api.sock");
        (ApiAddr::Unix(path.clone()), path)
    }

    #[tokio::test]
    async fn a_stale_socket_is_replaced_and_gets_the_requested_mode() {
        let dir = tempfile::tempdir().unwrap();
        let (addr, path) = socket_in(&dir);
        drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
        let listener = ApiListener::bind(&addr, 0o660).await.unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o660);
        drop(listener);
    }

    #[tokio::test]
    async fn a_live_socket_is_not_taken_over() {
        let dir = tempfile::tempdir().unwrap();
        let (addr, _) = socket_in(&dir);
        let _first = ApiListener::bind(&addr, 0o600).await.unwrap();
        assert!(matches!(
            ApiListener::bind(&addr, 0o600).await,
            Err(ListenError::Live { .. })
        ));
    }

    #[tokio::test]
    async fn a_regular_file_at_the_socket_path_is_never_deleted() {
        let dir = tempfile::tempdir().unwrap();
        let (addr, path) = socket_in(&dir);
        std::fs::write(&path, b"keep me").unwrap();
        assert!(matches!(
            ApiListener::bind(&addr, 0o600).await,
            Err(ListenError::NotASocket { .. })
        ));
        assert_eq!(std::fs::read(&path).unwrap(), b"keep me");
    }

    #[tokio::test]
    async fn shutdown_removes_the_socket_file() {
        let dir = tempfile::tempdir().unwrap();
        let (addr, path) = socket_in(&dir);
        let listener = ApiListener::bind(&addr, 0o600).await.unwrap();
        let shutdown = CancellationToken::new();
        shutdown.cancel();
        listener.serve(Router::new(), shutdown).await.unwrap();
        assert!(!path.exists());
    }
}
