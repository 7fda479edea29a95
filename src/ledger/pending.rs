//! Small JSON files in the raft directory that carry an unfinished action across a restart: a
//! merge's carried state until it is re-proposed, a recovery's seed until the new cluster has
//! committed it. Written durably ([`crate::durable`]), so a crash leaves the old file or the
//! new one, never half of one.

use std::io;
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde::de::DeserializeOwned;

/// One kind of pending file.
#[derive(Debug, Clone, Copy)]
pub struct PendingFile {
    name: &'static str,
    /// What it holds, for messages.
    what: &'static str,
}

impl PendingFile {
    pub const fn new(name: &'static str, what: &'static str) -> Self {
        PendingFile { name, what }
    }

    pub fn path(&self, dir: &Path) -> PathBuf {
        dir.join(self.name)
    }

    pub fn save<T: Serialize>(&self, dir: &Path, value: &T) -> io::Result<()> {
        let json = serde_json::to_vec(value).map_err(io::Error::other)?;
        crate::durable::write(&self.path(dir), &json, 0o600)
    }

    /// The value, if the file exists. An unreadable file is reported and treated as absent.
    pub fn load<T: DeserializeOwned>(&self, dir: &Path) -> Option<T> {
        let path = self.path(dir);
        let bytes = std::fs::read(&path).ok()?;
        match serde_json::from_slice(&bytes) {
            Ok(value) => Some(value),
            Err(e) => {
                tracing::error!(path = %path.display(), error = %e, "ignoring an unreadable {}", self.what);
                None
            }
        }
    }

    /// Removes the file once its action is done.
    pub fn clear(&self, dir: &Path) {
        if let Err(e) = std::fs::remove_file(self.path(dir))
            && e.kind() != io::ErrorKind::NotFound
        {
            tracing::warn!(error = %e, "cannot remove the {}", self.what);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: PendingFile = PendingFile::new("thing.json", "thing");

    #[test]
    fn a_value_survives_until_cleared_and_garbage_reads_as_absent() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(FILE.load::<Vec<u32>>(dir.path()), None);
        FILE.save(dir.path(), &vec![1u32, 2]).unwrap();
        assert_eq!(FILE.load::<Vec<u32>>(dir.path()), Some(vec![1, 2]));
        FILE.clear(dir.path());
        assert_eq!(FILE.load::<Vec<u32>>(dir.path()), None);
        std::fs::write(FILE.path(dir.path()), "{not json").unwrap();
        assert_eq!(FILE.load::<Vec<u32>>(dir.path()), None);
    }
}
