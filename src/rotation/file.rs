//! The rotated token on disk (`<state dir>/token`, mode 0600, written whole with
//! [`crate::durable::write`]). A node's configuration (cloud-config, `EDGEVPNTOKEN`) keeps the
//! token it was installed with; after a rotation the node must go on with the new one across
//! restarts, so it keeps the new token here with the network ids of every token it replaced.
//! At start [`choose`] takes the kept token when the configured one is among those it
//! replaced, and the configured one otherwise (the operator moved the machine to another
//! network, or gave it the new token).

use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::hex;
use crate::keyring::Keyring;
use crate::token::Token;

/// The file's name in the state directory.
pub const FILE_NAME: &str = "token";
/// The most replaced network ids kept.
const MAX_REPLACED: usize = 64;

/// Why the kept token could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    #[error("cannot read the rotated token {path}: {source}", path = path.display())]
    Read { path: PathBuf, source: io::Error },
    #[error(
        "the rotated token {path} is damaged ({reason}); start with the current network token \
         in the configuration and move the file away",
        path = path.display()
    )]
    Damaged { path: PathBuf, reason: String },
    #[error("cannot write the rotated token {path}: {source}", path = path.display())]
    Write { path: PathBuf, source: io::Error },
}

/// What the file holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Kept {
    /// The token the network moved to (its text).
    pub token: String,
    /// The token before it, accepted until `grace_until`.
    pub previous: Option<String>,
    pub grace_until: u64,
    /// Network ids of every token this one replaced, oldest first.
    pub replaces: Vec<String>,
}

impl Kept {
    /// What to keep after moving from `from` (held with `kept`, if any) to `to`.
    pub fn after(kept: Option<&Kept>, from: &Token, to: &Token, grace_until: u64) -> Kept {
        let mut replaces = kept.map(|k| k.replaces.clone()).unwrap_or_default();
        replaces.push(hex(from.keys().network_id()));
        let excess = replaces.len().saturating_sub(MAX_REPLACED);
        replaces.drain(..excess);
        Kept {
            token: to.encode(),
            previous: Some(from.encode()),
            grace_until,
            replaces,
        }
    }
}

fn path(state_dir: &Path) -> PathBuf {
    state_dir.join(FILE_NAME)
}

/// The kept token, if there is one.
pub fn load(state_dir: &Path) -> Result<Option<Kept>, FileError> {
    let path = path(state_dir);
    let bytes = match std::fs::read(&path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(FileError::Read { path, source }),
    };
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|e| FileError::Damaged {
            path,
            reason: e.to_string(),
        })
}

/// Keeps `kept`, replacing the file whole.
pub fn save(state_dir: &Path, kept: &Kept) -> Result<(), FileError> {
    let path = path(state_dir);
    let bytes = serde_json::to_vec_pretty(kept).expect("the kept token serializes");
    crate::durable::write(&path, &bytes, 0o600).map_err(|source| FileError::Write { path, source })
}

/// The keyring a node starts with, from its configured token and the kept one.
pub fn choose(
    state_dir: &Path,
    configured: Token,
    kept: Option<&Kept>,
) -> Result<Keyring, FileError> {
    let Some(kept) = kept else {
        return Ok(Keyring::new(configured));
    };
    let damaged = |reason: String| FileError::Damaged {
        path: path(state_dir),
        reason,
    };
    let token = Token::parse(&kept.token).map_err(|e| damaged(e.to_string()))?;
    let configured_id = hex(configured.keys().network_id());
    let previous = match &kept.previous {
        Some(text) => Some((
            Token::parse(text).map_err(|e| damaged(e.to_string()))?,
            kept.grace_until,
        )),
        None => None,
    };
    if configured_id == hex(token.keys().network_id()) || kept.replaces.contains(&configured_id) {
        Ok(Keyring::with_previous(token, previous))
    } else {
        tracing::warn!(
            file = %path(state_dir).display(),
            "the rotated token kept here belongs to another network than the configured token; \
             using the configured token"
        );
        Ok(Keyring::new(configured))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::token::NativeToken;

    fn token() -> Token {
        Token::Native(NativeToken::generate(None, vec![], 3600))
    }

    fn current(keyring: &Keyring) -> String {
        hex(keyring.current().network_id())
    }

    #[test]
    fn a_node_configured_with_any_replaced_token_starts_on_the_kept_one() {
        let dir = tempfile::tempdir().unwrap();
        let (t0, t1, t2, other) = (token(), token(), token(), token());
        let first = Kept::after(None, &t0, &t1, 10);
        let second = Kept::after(Some(&first), &t1, &t2, 20);
        save(dir.path(), &second).unwrap();
        let kept = load(dir.path()).unwrap().unwrap();
        assert_eq!(kept, second);
        let t2_id = hex(t2.keys().network_id());
        for configured in [t0.clone(), t1.clone(), t2.clone()] {
            let keyring = choose(dir.path(), configured, Some(&kept)).unwrap();
            assert_eq!(current(&keyring), t2_id);
            assert_eq!(
                keyring.held().accepted(19).len(),
                2,
                "t1 until the window closes"
            );
            assert_eq!(keyring.held().accepted(20).len(), 1);
        }
        let elsewhere = choose(dir.path(), other.clone(), Some(&kept)).unwrap();
        assert_eq!(current(&elsewhere), hex(other.keys().network_id()));
        let fresh = choose(dir.path(), t0.clone(), None).unwrap();
        assert_eq!(current(&fresh), hex(t0.keys().network_id()));
    }

    #[test]
    fn a_damaged_file_is_named_in_the_error() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(FILE_NAME), b"{not json").unwrap();
        let error = load(dir.path()).unwrap_err().to_string();
        assert!(
            error.contains("token") && error.contains("damaged"),
            "{error}"
        );
        assert!(load(tempfile::tempdir().unwrap().path()).unwrap().is_none());
    }
}
