//! The sentinel: a file written once this node's role is deployed. While it exists the
//! bootstrapper never reconfigures k3s at start (Kairos' `/usr/local/.kairos/deployed` has the
//! same meaning); removing it asks for a fresh bootstrap at the next start. weft writes the
//! role it deployed into it; an empty or foreign sentinel (Kairos' own) counts as present with
//! no role named.

use std::net::Ipv4Addr;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::files::{self, StepError};
use crate::ledger::state::Role;

/// What weft writes into the sentinel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sentinel {
    pub role: Role,
    pub overlay_ip: Ipv4Addr,
    pub bootstrapper: String,
    /// UNIX seconds.
    pub deployed_at: u64,
}

/// Whether the sentinel exists, and the role it names: `None` when it does not exist,
/// `Some(None)` when it exists without a role weft can read.
pub fn read(path: &Path) -> Result<Option<Option<Role>>, StepError> {
    Ok(files::read_optional(path)?
        .map(|text| serde_json::from_str::<Sentinel>(&text).ok().map(|s| s.role)))
}

/// Writes the sentinel (world-readable: it holds no secret).
pub fn write(path: &Path, sentinel: &Sentinel) -> Result<(), StepError> {
    let mut text = serde_json::to_string_pretty(sentinel)
        .map_err(|e| StepError::Other(format!("cannot encode the sentinel: {e}")))?;
    text.push('\n');
    files::write_atomic(path, text.as_bytes(), 0o644)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sentinel_is_absent_ours_or_foreign() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("usr/local/.kairos/deployed");
        assert_eq!(read(&path).unwrap(), None);
        write(
            &path,
            &Sentinel {
                role: Role::Worker,
                overlay_ip: Ipv4Addr::new(10, 1, 0, 3),
                bootstrapper: "k3s".into(),
                deployed_at: 1,
            },
        )
        .unwrap();
        assert_eq!(read(&path).unwrap(), Some(Some(Role::Worker)));
        std::fs::write(&path, "").unwrap();
        assert_eq!(read(&path).unwrap(), Some(None));
    }
}
