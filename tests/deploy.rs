//! The service definitions in `deploy/`: the systemd units (with the Kairos drop-in) pass
//! `systemd-analyze verify` without a warning, the OpenRC script is valid `sh`, and the example
//! env file is one `weft up` reads. Where `systemd-analyze` is missing the unit check prints
//! why it is skipped.

use std::path::Path;
use std::process::Command;

const REPO: &str = env!("CARGO_MANIFEST_DIR");
const WEFT: &str = env!("CARGO_BIN_EXE_weft");

fn deploy(path: &str) -> String {
    let full = Path::new(REPO).join("deploy").join(path);
    std::fs::read_to_string(&full).unwrap_or_else(|e| panic!("{}: {e}", full.display()))
}

/// Verifies `unit` (its text, with the binaries it runs pointed at this build, which exists
/// here) and its drop-ins, from a directory of their own.
fn verify(name: &str, unit: &str, dropins: &[(&str, String)]) {
    let Ok(version) = Command::new("systemd-analyze").arg("--version").output() else {
        eprintln!("SKIPPED verifying {name}: systemd-analyze is not installed (package systemd)");
        return;
    };
    assert!(version.status.success());
    let dir = tempfile::tempdir().unwrap();
    let unit = unit
        .replace("/usr/local/bin/weft", WEFT)
        .replace("/usr/bin/edgevpn", WEFT);
    std::fs::write(dir.path().join(name), unit).unwrap();
    if !dropins.is_empty() {
        let dropin_dir = dir.path().join(format!("{name}.d"));
        std::fs::create_dir(&dropin_dir).unwrap();
        for (file, text) in dropins {
            std::fs::write(dropin_dir.join(file), text).unwrap();
        }
    }
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(dir.path().join(name))
        .output()
        .expect("systemd-analyze runs");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{name}: {said}");
    assert_eq!(said.trim(), "", "{name}: systemd-analyze warns");
}

#[test]
fn the_systemd_units_verify_cleanly() {
    verify(
        "weft.service",
        &deploy("systemd/weft.service"),
        &[("kairos.conf", deploy("systemd/weft.service.d/kairos.conf"))],
    );
    verify(
        "edgevpn@kairos.service",
        &deploy("systemd/edgevpn@.service"),
        &[],
    );
}

#[test]
fn the_openrc_script_is_valid_sh() {
    let out = Command::new("sh")
        .args(["-n"])
        .arg(Path::new(REPO).join("deploy/openrc/weft"))
        .output()
        .expect("sh runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let script = deploy("openrc/weft");
    assert!(script.starts_with("#!/sbin/openrc-run\n"));
}

#[test]
fn the_example_env_file_holds_only_weft_settings() {
    let env = deploy("weft.env");
    let mut vars: Vec<(String, String)> = Vec::new();
    for line in env.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (key, value) = line.split_once('=').expect("KEY=value lines");
        assert!(key.starts_with("WEFT_"), "{key} is not a weft variable");
        vars.push((key.to_string(), value.to_string()));
    }
    // With a token filled in, weft reads the file's settings without complaint.
    let token = Command::new(WEFT).args(["token", "new"]).output().unwrap();
    let token = String::from_utf8(token.stdout).unwrap();
    let out = Command::new(WEFT)
        .args(["up", "--print-config"])
        .env_clear()
        .envs(vars.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .env("WEFT_TOKEN", token.trim())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
