//! Kairos cloud-config as `weft up --cloud-config` reads it: the examples in `deploy/` resolve to
//! the settings recorded in `tests/golden/` (`--print-config`, every value with the key it came
//! from), a later file wins over an earlier one while k3s' args and env accumulate, a directory
//! is read as Kairos reads its config directories, edgevpn's drop-in mode keeps the bootstrapper
//! at `none`, and a value of the wrong type stops start-up naming its key path.
//!
//! After an intended change, `WEFT_BLESS=1 cargo test --test cloud_config` rewrites the golden
//! files; review their diff.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const WEFT: &str = env!("CARGO_BIN_EXE_weft");
const REPO: &str = env!("CARGO_MANIFEST_DIR");

/// `weft args...` from the repository's root, with none of the caller's environment, so that
/// paths and origins in the output are stable.
fn weft_in(dir: &Path, binary: &Path, args: &[&str]) -> Output {
    Command::new(binary)
        .args(args)
        .current_dir(dir)
        .env_clear()
        .output()
        .expect("the weft binary runs")
}

fn weft(args: &[&str]) -> Output {
    weft_in(Path::new(REPO), Path::new(WEFT), args)
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn print_config(cloud_configs: &[&str]) -> Output {
    let mut args = vec![
        "up",
        "--print-config",
        "--hostname",
        "node1",
        "--state-dir",
        "/var/lib/weft",
    ];
    for file in cloud_configs {
        args.extend(["--cloud-config", file]);
    }
    weft(&args)
}

fn golden(name: &str) -> PathBuf {
    Path::new(REPO).join("tests/golden").join(name)
}

fn assert_golden(example: &str) {
    let out = print_config(&[&format!("deploy/cloud-config/{example}.yaml")]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stderr), "", "an example warns about nothing");
    let got = text(&out.stdout);
    let path = golden(&format!("cloud-config-{example}.txt"));
    if std::env::var_os("WEFT_BLESS").is_some() {
        std::fs::write(&path, &got).expect("golden file written");
        return;
    }
    let want = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (WEFT_BLESS=1 writes it)", path.display()));
    assert_eq!(got, want, "--print-config of {example}.yaml changed");
}

#[test]
fn the_single_node_example_resolves_to_its_golden_settings() {
    assert_golden("single-node");
}

#[test]
fn the_three_node_example_resolves_to_its_golden_settings() {
    assert_golden("three-nodes");
}

#[test]
fn the_ha_example_resolves_to_three_control_planes() {
    assert_golden("ha");
    let out = print_config(&["deploy/cloud-config/ha.yaml"]);
    assert!(
        text(&out.stdout).contains(
            "control_planes: 3  # cloud-config deploy/cloud-config/ha.yaml:p2p.auto.ha.master_nodes"
        ),
        "{}",
        text(&out.stdout)
    );
}

fn write(dir: &Path, name: &str, body: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, body).unwrap();
    path.to_str().unwrap().to_string()
}

#[test]
fn a_later_file_wins_and_a_directory_is_read_in_name_order() {
    let dir = tempfile::tempdir().unwrap();
    let first = write(
        dir.path(),
        "10_base.yaml",
        "#cloud-config\np2p:\n  role: worker\n  minimum_nodes: 5\n",
    );
    std::fs::create_dir(dir.path().join("sub")).unwrap();
    let second = write(
        &dir.path().join("sub"),
        "90_custom.yaml",
        "#cloud-config\np2p:\n  role: master\n",
    );
    // Not a cloud-config (no header): Kairos, and weft, pass over it in a directory.
    write(dir.path(), "zz_stages.yaml", "p2p:\n  role: none\n");
    let out = print_config(&[&first, &second]);
    let stdout = text(&out.stdout);
    assert!(stdout.contains(&format!(
        "role: \"master\"  # cloud-config {second}:p2p.role"
    )));
    assert!(stdout.contains(&format!(
        "minimum_nodes: 5  # cloud-config {first}:p2p.minimum_nodes"
    )));
    let out = print_config(&[dir.path().to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("role: \"master\""),
        "the last cloud-config under the directory wins: {}",
        text(&out.stdout)
    );
}

#[test]
fn k3s_args_and_env_accumulate_over_files() {
    let dir = tempfile::tempdir().unwrap();
    let first = write(
        dir.path(),
        "a.yaml",
        "k3s:\n  args: [--a]\n  env: {A: one, B: one}\n",
    );
    let second = write(
        dir.path(),
        "b.yaml",
        "k3s:\n  args: [--b, --a]\n  env: {B: two}\n",
    );
    let out = print_config(&[&first, &second]);
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains(&format!(
            "k3s_args: [\"--a\",\"--b\"]  # cloud-config {second}:k3s.args"
        )),
        "{stdout}"
    );
    assert!(
        stdout.contains("k3s_env: [\"A=one\",\"B=two\"]"),
        "{stdout}"
    );
}

#[test]
fn broken_or_missing_cloud_configs_in_kairos_directories_are_skipped_with_a_warning() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "10_bad.yaml", "#cloud-config\np2p: [unclosed\n");
    write(
        dir.path(),
        "20_good.yaml",
        "#cloud-config\np2p:\n  role: worker\n",
    );
    let missing = dir.path().join("absent");
    let out = print_config(&[dir.path().to_str().unwrap(), missing.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("10_bad.yaml") && stderr.contains("skipped"),
        "{stderr}"
    );
    assert!(stderr.contains("absent does not exist"), "{stderr}");
    assert!(text(&out.stdout).contains("role: \"worker\""));

    let out = print_config(&[missing.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("no cloud-config file found"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn wrong_types_stop_start_up_naming_the_key_path() {
    let dir = tempfile::tempdir().unwrap();
    for (body, key) in [
        ("p2p:\n  minimum_nodes: two\n", "p2p.minimum_nodes"),
        ("p2p:\n  dns: maybe\n", "p2p.dns"),
        ("p2p:\n  vpn:\n    env: [ADDRESS]\n", "p2p.vpn.env"),
        (
            "p2p:\n  auto:\n    ha:\n      master_nodes: many\n",
            "p2p.auto.ha.master_nodes",
        ),
        ("p2p:\n  role: boss\n", "p2p.role"),
        ("k3s:\n  args: --disable=traefik\n", "k3s.args"),
        ("k3s:\n  env: [A=b]\n", "k3s.env"),
        ("p2p: yes\n", "p2p"),
    ] {
        let file = write(dir.path(), "bad.yaml", body);
        let out = print_config(&[&file]);
        assert_eq!(out.status.code(), Some(2), "{body}");
        let stderr = text(&out.stderr);
        assert!(
            stderr.contains(key),
            "{body}: the error names {key}: {stderr}"
        );
        assert!(
            stderr.contains(&file),
            "{body}: the error names the file: {stderr}"
        );
    }
}

#[test]
fn unknown_keys_are_warned_about_and_kairos_own_keys_ignored() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(
        dir.path(),
        "c.yaml",
        "#cloud-config\nusers: [{name: kairos}]\ninstall: {device: auto}\np2p:\n  typo_key: 1\n  network_id: kairos\n",
    );
    let out = print_config(&[&file]);
    assert!(out.status.success());
    let stderr = text(&out.stderr);
    assert!(stderr.contains("unknown key p2p.typo_key"), "{stderr}");
    assert_eq!(
        stderr.lines().count(),
        1,
        "only the typo is warned about: {stderr}"
    );
}

#[test]
fn as_edgevpn_a_cloud_config_leaves_the_bootstrapper_to_kairos() {
    let dir = tempfile::tempdir().unwrap();
    let link = dir.path().join("edgevpn");
    std::os::unix::fs::symlink(WEFT, &link).unwrap();
    let file = write(dir.path(), "c.yaml", "p2p:\n  role: worker\n");
    let out = weft_in(
        Path::new(REPO),
        &link,
        &["--print-config", "--cloud-config", &file],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("bootstrapper: \"none\"  # default"),
        "{}",
        text(&out.stdout)
    );
    let native = print_config(&[&file]);
    assert!(text(&native.stdout).contains("bootstrapper: \"k3s\""));
}

#[test]
fn the_script_bootstrapper_needs_its_executable() {
    let out = weft(&["up", "--print-config", "--bootstrapper", "script"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("--bootstrap-script"),
        "{}",
        text(&out.stderr)
    );
}
