//! The node's identity: an ed25519 key pair in libp2p's protobuf encoding, kept in the state
//! directory (`identity.key`, mode 0600). Its PeerId is the node's name everywhere, so it is made
//! once and reused on every start; a key file that cannot be read or decoded stops start-up
//! rather than being replaced, because a silently new identity would orphan the node's lease
//! and ledger records.

use std::fs;
use std::io;
use std::os::unix::fs::{DirBuilderExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use libp2p::PeerId;
use libp2p::identity::Keypair;

/// File name of the key inside the state directory.
pub const KEY_FILE: &str = "identity.key";

/// Why the identity could not be loaded or created.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("cannot create state directory {path}: {source}", path = path.display())]
    StateDir { path: PathBuf, source: io::Error },
    #[error("cannot read identity key {path}: {source}", path = path.display())]
    Read { path: PathBuf, source: io::Error },
    #[error(
        "identity key {path} is corrupt ({reason}); weft will not replace it on its own because \
         the node's PeerId, lease and records belong to it. Restore it from a backup, or move it \
         away to start as a new node",
        path = path.display()
    )]
    Corrupt { path: PathBuf, reason: String },
    #[error("cannot write identity key {path}: {source}", path = path.display())]
    Write { path: PathBuf, source: io::Error },
}

/// The node's key pair and where it is kept.
#[derive(Clone)]
pub struct Identity {
    keypair: Keypair,
    path: PathBuf,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Identity({}, {})", self.peer_id(), self.path.display())
    }
}

impl Identity {
    /// Loads the identity from `state_dir`, creating the directory (mode 0700) and a new key on
    /// first start.
    pub fn load_or_create(state_dir: &Path) -> Result<Identity, IdentityError> {
        create_state_dir(state_dir)?;
        let path = state_dir.join(KEY_FILE);
        match fs::read(&path) {
            Ok(bytes) => Self::decode(&bytes, path),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Self::create(path),
            Err(source) => Err(IdentityError::Read { path, source }),
        }
    }

    fn decode(bytes: &[u8], path: PathBuf) -> Result<Identity, IdentityError> {
        let keypair =
            Keypair::from_protobuf_encoding(bytes).map_err(|e| IdentityError::Corrupt {
                path: path.clone(),
                reason: e.to_string(),
            })?;
        if let Ok(meta) = fs::metadata(&path)
            && meta.permissions().mode() & 0o077 != 0
        {
            tracing::warn!(
                path = %path.display(),
                mode = format!("{:04o}", meta.permissions().mode() & 0o777),
                "identity key is readable by other users; it should be mode 0600"
            );
        }
        Ok(Identity { keypair, path })
    }

    fn create(path: PathBuf) -> Result<Identity, IdentityError> {
        let keypair = Keypair::generate_ed25519();
        let bytes = keypair
            .to_protobuf_encoding()
            .expect("an ed25519 key pair always encodes");
        crate::durable::write(&path, &bytes, 0o600).map_err(|source| IdentityError::Write {
            path: path.clone(),
            source,
        })?;
        tracing::info!(path = %path.display(), peer_id = %keypair.public().to_peer_id(), "created a new node identity");
        Ok(Identity { keypair, path })
    }

    /// The node's PeerId.
    pub fn peer_id(&self) -> PeerId {
        self.keypair.public().to_peer_id()
    }

    /// The key pair, for libp2p and for signing session handshakes.
    pub fn keypair(&self) -> &Keypair {
        &self.keypair
    }

    /// Where the key is kept.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The node's X25519 secret for what is sealed to it alone (a rotated network token),
    /// derived from its identity key, so it needs no file of its own.
    pub fn sealing_secret(&self) -> [u8; 32] {
        self.keypair
            .derive_secret(SEALING_DOMAIN)
            .expect("weft's identity keys are ed25519, which derive secrets")
    }

    /// The X25519 public key of [`Identity::sealing_secret`], which the node records in the
    /// ledger.
    pub fn sealing_public(&self) -> [u8; 32] {
        x25519_dalek::x25519(self.sealing_secret(), x25519_dalek::X25519_BASEPOINT_BYTES)
    }
}

/// HKDF info of the sealing secret.
const SEALING_DOMAIN: &[u8] = b"weft/sealing-key/v1";

/// What weft keeps in the state directory (anything else there is the operator's).
const STATE_ENTRIES: &[&str] = &[
    KEY_FILE,
    "api.token",
    "deployed",
    "raft",
    crate::rotation::file::FILE_NAME,
    crate::rotation::pages::FILE_NAME,
];

/// Creates the state directory, and any missing parents, with mode 0700, then makes weft's
/// entries in it private whatever existed before: directories 0700, files 0600 (the key, the
/// raft log, the API token), and the directory itself 0700 unless it also holds files that are
/// not weft's (a directory shared by mistake keeps its mode, with a warning). Sockets and
/// symbolic links are left alone.
fn create_state_dir(dir: &Path) -> Result<(), IdentityError> {
    let error = |source| IdentityError::StateDir {
        path: dir.to_path_buf(),
        source,
    };
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(error)?;
    let foreign = fs::read_dir(dir)
        .map_err(error)?
        .filter_map(Result::ok)
        .any(|e| {
            let name = e.file_name();
            let name = name.to_string_lossy();
            !STATE_ENTRIES.iter().any(|own| name.starts_with(own))
        });
    if foreign {
        // Perhaps a directory shared with other software: its mode is the operator's call.
        tracing::warn!(path = %dir.display(), "the state directory holds files that are not weft's; its own mode is left as it is (make it 0700)");
    } else {
        make_private(dir).map_err(error)?;
    }
    for entry in STATE_ENTRIES {
        match make_private(&dir.join(entry)) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            other => other.map_err(error)?,
        }
    }
    Ok(())
}

/// Makes `path` private, and all below it when it is a directory.
fn make_private(path: &Path) -> io::Result<()> {
    let meta = fs::symlink_metadata(path)?;
    let wanted = if meta.is_dir() {
        0o700
    } else if meta.is_file() {
        0o600
    } else {
        return Ok(());
    };
    if meta.permissions().mode() & 0o7777 != wanted {
        tracing::info!(path = %path.display(), mode = format!("{wanted:04o}"), "made private");
        fs::set_permissions(path, fs::Permissions::from_mode(wanted))?;
    }
    if meta.is_dir() {
        for entry in fs::read_dir(path)? {
            make_private(&entry?.path())?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_state_dir_and_wefts_files_in_it_become_private() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("state");
        fs::create_dir_all(dir.join("raft")).unwrap();
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
        fs::write(dir.join("raft/ledger.redb"), b"x").unwrap();
        fs::set_permissions(
            dir.join("raft/ledger.redb"),
            fs::Permissions::from_mode(0o644),
        )
        .unwrap();
        let identity = Identity::load_or_create(&dir).unwrap();
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&dir.join("raft")), 0o700);
        assert_eq!(mode(&dir.join("raft/ledger.redb")), 0o600);
        assert_eq!(mode(identity.path()), 0o600);
    }

    #[test]
    fn a_shared_directory_keeps_its_mode_and_the_operators_files_too() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("shared");
        fs::create_dir_all(&dir).unwrap();
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
        fs::write(dir.join("operator-notes"), b"mine").unwrap();
        fs::set_permissions(
            dir.join("operator-notes"),
            fs::Permissions::from_mode(0o644),
        )
        .unwrap();
        let identity = Identity::load_or_create(&dir).unwrap();
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode(&dir), 0o755);
        assert_eq!(mode(&dir.join("operator-notes")), 0o644);
        assert_eq!(mode(identity.path()), 0o600);
    }

    #[test]
    fn the_same_state_dir_gives_the_same_peer_id() {
        let dir = tempfile::tempdir().unwrap();
        let first = Identity::load_or_create(dir.path()).unwrap();
        let second = Identity::load_or_create(dir.path()).unwrap();
        assert_eq!(first.peer_id(), second.peer_id());
    }

    #[test]
    fn a_new_key_file_is_private_to_its_owner() {
        let dir = tempfile::tempdir().unwrap();
        let identity = Identity::load_or_create(&dir.path().join("state")).unwrap();
        let mode = fs::metadata(identity.path()).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn a_corrupt_key_file_is_an_error_and_is_left_in_place() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(KEY_FILE);
        fs::write(&path, b"not a key").unwrap();
        let err = Identity::load_or_create(dir.path()).unwrap_err();
        assert!(matches!(err, IdentityError::Corrupt { .. }), "{err}");
        assert!(err.to_string().contains(&path.display().to_string()));
        assert_eq!(fs::read(&path).unwrap(), b"not a key");
    }
}
