//! The API's bearer token file: read by the daemon that requires it on TCP and by the CLI that
//! sends it. The daemon makes one (32 random bytes, base64url, mode 0600) when the file is
//! absent, so a TCP listener is never open by accident; an operator may also write their own.

use std::io::{self, Read as _};
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use rand::RngCore as _;

/// The shortest token accepted from a file.
const MIN_LEN: usize = 16;
/// The largest token file read.
const MAX_FILE: u64 = 4096;

/// Why the token file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum BearerError {
    #[error("cannot read the API token file {path}: {source}", path = path.display())]
    Read { path: PathBuf, source: io::Error },
    #[error("cannot write the API token file {path}: {source}", path = path.display())]
    Write { path: PathBuf, source: io::Error },
    #[error(
        "the API token file {path} holds {len} characters; a token needs at least {MIN_LEN} \
         (delete the file and weft makes a strong one)",
        path = path.display()
    )]
    TooShort { path: PathBuf, len: usize },
    #[error("the API token file {path} cannot be used: {why}", path = path.display())]
    Invalid { path: PathBuf, why: String },
}

/// The token in `path`, trimmed: a regular file of at most [`MAX_FILE`] bytes holding at least
/// [`MIN_LEN`] visible ASCII characters (it travels in an HTTP header).
pub fn read(path: &Path) -> Result<String, BearerError> {
    let invalid = |why: &str| BearerError::Invalid {
        path: path.to_path_buf(),
        why: why.to_string(),
    };
    let read_error = |source| BearerError::Read {
        path: path.to_path_buf(),
        source,
    };
    // Checked before opening: opening a FIFO would block until a writer comes.
    if !std::fs::metadata(path).map_err(read_error)?.is_file() {
        return Err(invalid("it is not a regular file"));
    }
    let file = std::fs::File::open(path).map_err(read_error)?;
    if !file.metadata().map_err(read_error)?.is_file() {
        return Err(invalid("it is not a regular file"));
    }
    let mut text = String::new();
    file.take(MAX_FILE + 1)
        .read_to_string(&mut text)
        .map_err(read_error)?;
    if text.len() as u64 > MAX_FILE {
        return Err(invalid("it is larger than 4 KiB"));
    }
    let token = text.trim();
    if token.len() < MIN_LEN {
        return Err(BearerError::TooShort {
            path: path.to_path_buf(),
            len: token.len(),
        });
    }
    if !token.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(invalid(
            "a token is visible ASCII characters only (no spaces or line breaks inside)",
        ));
    }
    Ok(token.to_string())
}

/// The token in `path`, made first when the file does not exist.
pub fn load_or_create(path: &Path) -> Result<String, BearerError> {
    match std::fs::metadata(path) {
        Ok(meta) => {
            if meta.permissions().mode() & 0o077 != 0 {
                tracing::warn!(
                    path = %path.display(),
                    mode = format!("{:04o}", meta.permissions().mode() & 0o7777),
                    "the API token file is readable by other users; chmod 600 it"
                );
            }
            read(path)
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => create(path),
        Err(source) => Err(BearerError::Read {
            path: path.to_path_buf(),
            source,
        }),
    }
}

fn create(path: &Path) -> Result<String, BearerError> {
    let write_error = |source| BearerError::Write {
        path: path.to_path_buf(),
        source,
    };
    let mut secret = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut secret);
    let token = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(secret);
    crate::durable::write(path, format!("{token}\n").as_bytes(), 0o600).map_err(write_error)?;
    tracing::info!(path = %path.display(), "made the API's bearer token");
    Ok(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_file_gets_a_private_strong_token_that_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/api.token");
        let made = load_or_create(&path).unwrap();
        assert_eq!(made.len(), 43);
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(load_or_create(&path).unwrap(), made);
        assert_eq!(read(&path).unwrap(), made);
    }

    #[test]
    fn a_short_token_is_refused_with_the_file_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("api.token");
        std::fs::write(&path, "abc\n").unwrap();
        let error = load_or_create(&path).unwrap_err().to_string();
        assert!(error.contains("api.token"), "{error}");
        assert!(error.contains("3 characters"), "{error}");
    }

    #[test]
    fn tokens_that_cannot_go_in_a_header_and_huge_files_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("api.token");
        std::fs::write(&path, "abcdefgh\nijklmnopqrst\n").unwrap();
        assert!(
            read(&path)
                .unwrap_err()
                .to_string()
                .contains("visible ASCII")
        );
        std::fs::write(&path, vec![b'a'; 10_000]).unwrap();
        assert!(read(&path).unwrap_err().to_string().contains("4 KiB"));
        assert!(
            read(dir.path())
                .unwrap_err()
                .to_string()
                .contains("regular file")
        );
    }
}
