//! Fake k3s for the bootstrapper's end-to-end tests and the demo: each host gets a root prefix
//! of its own (`<host dir>/root`) and the fake `systemctl`, `rc-service`, `rc-update` and `k3s`
//! of `tests/fixtures/fake-k3s` first on its PATH. The fakes record every call in the root's
//! `fake-calls.log` and write k3s' join token and kubeconfig where k3s would.

#![allow(dead_code)] // each test binary uses a different part of the helpers

use std::path::{Path, PathBuf};

use super::netns::Host;

/// The directory of the fake executables.
pub fn fake_bin() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/fake-k3s")
}

/// One host's fake system: its root prefix and what the fakes recorded there.
#[derive(Debug, Clone)]
pub struct FakeRoot {
    pub root: PathBuf,
}

impl FakeRoot {
    /// The fake root of `host` (created if missing).
    pub fn of(host: &Host) -> FakeRoot {
        let root = host.dir.join("root");
        std::fs::create_dir_all(&root).expect("fake root");
        FakeRoot { root }
    }

    /// The environment `weft up` needs to find the fakes.
    pub fn env(&self) -> Vec<(String, String)> {
        let path = format!(
            "{}:{}",
            fake_bin().display(),
            std::env::var("PATH").unwrap_or_else(|_| "/usr/sbin:/usr/bin:/sbin:/bin".into())
        );
        vec![
            ("PATH".into(), path),
            ("WEFT_FAKE_ROOT".into(), self.root.display().to_string()),
        ]
    }

    /// `weft up` flags that point the k3s bootstrapper (systemd) at this root.
    pub fn args(&self) -> Vec<String> {
        vec![
            "--bootstrapper".into(),
            "k3s".into(),
            "--init".into(),
            "systemd".into(),
            "--root".into(),
            self.root.display().to_string(),
        ]
    }

    /// Every call the fakes recorded, in order.
    pub fn calls(&self) -> Vec<String> {
        std::fs::read_to_string(self.root.join("fake-calls.log"))
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }

    /// A file under the root (`/etc/sysconfig/k3s-agent`), if it exists.
    pub fn file(&self, path: &str) -> Option<String> {
        std::fs::read_to_string(self.path(path)).ok()
    }

    /// A path under the root.
    pub fn path(&self, path: &str) -> PathBuf {
        self.root.join(path.trim_start_matches('/'))
    }

    /// The join token the fake k3s server wrote here.
    pub fn node_token(&self) -> Option<String> {
        self.file("/var/lib/rancher/k3s/server/node-token")
            .map(|t| t.trim().to_string())
    }
}

/// `(key, value)` pairs as the harness's `&[(&str, &str)]`.
pub fn borrowed(env: &[(String, String)]) -> Vec<(&str, &str)> {
    env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
}
