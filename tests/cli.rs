//! The `weft` binary as an operator meets it: tokens, configuration layering, edgevpn
//! compatibility and the exit codes of bad input. Nothing here starts a daemon
//! (`up --print-config` exits after resolving the configuration).

use std::path::Path;
use std::process::{Command, Output, Stdio};

use std::io::Write as _;

const WEFT: &str = env!("CARGO_BIN_EXE_weft");

/// `weft args...` with exactly the environment given (none of the caller's WEFT_*/EDGEVPN*).
fn weft(args: &[&str], env: &[(&str, &str)]) -> Output {
    weft_at(Path::new(WEFT), args, env)
}

fn weft_at(binary: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(binary)
        .args(args)
        .env_clear()
        .envs(env.iter().copied())
        .output()
        .expect("the weft binary runs")
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The value and origin comment of `key` in `--print-config` output.
fn setting(out: &Output, key: &str) -> (String, String) {
    let text = stdout(out);
    let line = text
        .lines()
        .find(|l| l.starts_with(&format!("{key}: ")))
        .unwrap_or_else(|| panic!("no {key} in:\n{text}\n{}", stderr(out)));
    let rest = &line[key.len() + 2..];
    let (value, origin) = rest
        .split_once("  # ")
        .expect("every line names its origin");
    (value.to_string(), origin.to_string())
}

fn new_token() -> String {
    let out = weft(&["token", "new"], &[]);
    assert!(out.status.success());
    stdout(&out).trim().to_string()
}

const EDGEVPN_TOKEN_YAML: &str = "otp:\n  dht:\n    interval: 9000\n    key: AbCdEfGhIjKlMnOpQrStUvWxYz0123456789abcdefg\n    length: 43\n  crypto:\n    interval: 9000\n    key: ZyXwVuTsRqPoNmLkJiHgFeDcBa9876543210zyxwvut\n    length: 43\nroom: RoomRoomRoomRoomRoomRoomRoomRoomRoomRoomRoo\nrendezvous: RdvRdvRdvRdvRdvRdvRdvRdvRdvRdvRdvRdvRdvRdvR\nmdns: MdnsMdnsMdnsMdnsMdnsMdnsMdnsMdnsMdnsMdnsMdn\nmax_message_size: 20971520\n";

fn edgevpn_token() -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(EDGEVPN_TOKEN_YAML)
}

#[test]
fn a_new_token_round_trips_through_inspect_on_stdin() {
    let token = new_token();
    let mut child = Command::new(WEFT)
        .args(["token", "inspect", "-", "--json"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(token.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let described: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(described["kind"], "native");
    assert_eq!(described["version"], 1);
    assert_eq!(described["network_id"].as_str().unwrap().len(), 16);
    assert!(
        !stdout(&out).contains(&token),
        "inspect must not echo the token"
    );
}

#[test]
fn token_settings_survive_the_round_trip() {
    let out = weft(
        &[
            "token",
            "new",
            "--cidr",
            "10.77.0.0/16",
            "--bootstrap",
            "/ip4/192.0.2.9/tcp/4001",
        ],
        &[],
    );
    let token = stdout(&out).trim().to_string();
    let shown = stdout(&weft(&["token", "inspect", &token], &[]));
    assert!(
        shown.contains("10.77.0.0/16") && shown.contains("/ip4/192.0.2.9/tcp/4001"),
        "{shown}"
    );
}

#[test]
fn an_edgevpn_token_is_inspected_as_edgevpn() {
    let out = weft(&["token", "inspect", &edgevpn_token()], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let shown = stdout(&out);
    assert!(shown.contains("kind:        edgevpn"), "{shown}");
    assert!(
        !shown.contains("RoomRoom") && !shown.contains("ZyXwVu"),
        "secrets leaked: {shown}"
    );
}

#[test]
fn three_kinds_of_malformed_token_get_distinct_precise_errors_and_exit_2() {
    use base64::Engine as _;
    let b64 = |yaml: &str| base64::engine::general_purpose::STANDARD.encode(yaml);
    let cases = [
        ("V0VGVAE$$$", "not valid base64"),
        (
            &b64(&EDGEVPN_TOKEN_YAML
                .replace("room: RoomRoomRoomRoomRoomRoomRoomRoomRoomRoomRoo\n", "")),
            "missing field room",
        ),
        (
            &b64(&EDGEVPN_TOKEN_YAML
                .replace("max_message_size: 20971520", "max_message_size: [1, 2]")),
            "field max_message_size must be a positive integer, got a sequence",
        ),
    ];
    let mut messages = Vec::new();
    for (token, expected) in cases {
        let out = weft(&["token", "inspect", token], &[]);
        assert_eq!(out.status.code(), Some(2), "{token}: {}", stderr(&out));
        assert!(stderr(&out).contains(expected), "{token}: {}", stderr(&out));
        messages.push(stderr(&out));
    }
    messages.dedup();
    assert_eq!(messages.len(), 3);
}

#[test]
fn a_token_file_or_config_too_large_to_be_one_is_refused_naming_it() {
    for (flag, limit) in [("--token-file", "65536"), ("--config", "16777216")] {
        let out = weft(&["up", "--print-config", flag, "/dev/zero"], &[]);
        assert_eq!(out.status.code(), Some(2), "{flag}: {}", stderr(&out));
        let message = stderr(&out);
        assert!(
            message.contains("/dev/zero")
                && message.contains(&format!("larger than {limit} bytes")),
            "{flag}: {message}"
        );
    }
}

#[test]
fn a_log_filter_that_is_not_ascii_is_refused_not_a_crash() {
    // What the config fuzz target found: tracing's filter parser panicked on this.
    let level = "dkni\u{e0}\u{e0}[\t,\u{ff}";
    let out = weft(&["up", "--print-config"], &[("EDGEVPNLOGLEVEL", level)]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("in ASCII"), "{}", stderr(&out));
}

#[test]
fn flags_override_env_which_overrides_the_file_which_overrides_defaults() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("weft.yaml");
    std::fs::write(
        &file,
        "mtu: 1300\ninterface: fromfile0\ncidr: 10.9.0.0/24\nhostname: file-host\n",
    )
    .unwrap();
    let file = file.to_str().unwrap();
    let out = weft(
        &["up", "--print-config", "--config", file, "--mtu", "1280"],
        &[("WEFT_MTU", "1350"), ("WEFT_INTERFACE", "fromenv0")],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(setting(&out, "mtu"), ("1280".into(), "flag --mtu".into()));
    assert_eq!(
        setting(&out, "interface"),
        (
            "\"fromenv0\"".into(),
            "environment variable WEFT_INTERFACE".into()
        )
    );
    assert_eq!(
        setting(&out, "cidr"),
        ("\"10.9.0.0/24\"".into(), format!("config file {file}"))
    );
    assert_eq!(
        setting(&out, "dns_cache_size"),
        ("200".into(), "default".into())
    );
}

#[test]
fn print_config_output_is_itself_a_valid_config_file() {
    let dir = tempfile::tempdir().unwrap();
    let out = weft(&["up", "--print-config", "--mtu", "1300", "--no-mdns"], &[]);
    let file = dir.path().join("printed.yaml");
    // The token line is redacted and there is no token here, so the file is usable as is.
    std::fs::write(&file, stdout(&out)).unwrap();
    let again = weft(
        &["up", "--print-config", "--config", file.to_str().unwrap()],
        &[],
    );
    assert!(again.status.success(), "{}", stderr(&again));
    assert_eq!(setting(&again, "mtu").0, "1300");
    assert_eq!(setting(&again, "mdns").0, "false");
}

#[test]
fn the_token_network_settings_sit_between_defaults_and_the_file() {
    let token = stdout(&weft(&["token", "new", "--cidr", "10.33.0.0/16"], &[]))
        .trim()
        .to_string();
    let out = weft(&["up", "--print-config"], &[("WEFT_TOKEN", &token)]);
    assert_eq!(
        setting(&out, "cidr"),
        ("\"10.33.0.0/16\"".into(), "network token".into())
    );
    let out = weft(
        &["up", "--print-config", "--cidr", "10.34.0.0/24"],
        &[("WEFT_TOKEN", &token)],
    );
    assert_eq!(setting(&out, "cidr").0, "\"10.34.0.0/24\"");
    assert!(!stdout(&out).contains(&token), "the token must be redacted");
}

#[test]
fn edgevpn_environment_variables_map_onto_weft_settings() {
    let dir = tempfile::tempdir().unwrap();
    let env = [
        ("EDGEVPNTOKEN", edgevpn_token()),
        ("IFACE", "edgevpn0".into()),
        ("ADDRESS", "10.1.0.5/24".into()),
        ("EDGEVPNMTU", "1200".into()),
        ("EDGEVPNMDNS", "false".into()),
        ("EDGEVPNDHT", "false".into()),
        (
            "EDGEVPNBOOTSTRAPPEERS",
            "/ip4/192.0.2.1/tcp/4001,/ip4/192.0.2.2/tcp/4001".into(),
        ),
        ("EDGEVPNLISTENMADDRS", "/ip4/0.0.0.0/tcp/4001".into()),
        ("APILISTEN", "127.0.0.1:8080".into()),
        ("APILISTENUNIXMODE", "0660".into()),
        ("DNSADDRESS", "127.0.0.1:53".into()),
        ("DNSFORWARD", "true".into()),
        ("DNSFORWARDSERVER", "8.8.8.8:53,1.1.1.1:53".into()),
        ("DNSCACHESIZE", "64".into()),
        ("DHCPLEASEDIR", dir.path().to_str().unwrap().into()),
        ("EDGEVPNLOGLEVEL", "debug".into()),
        ("EDGEVPNSOMETHINGNEW", "ignored".into()),
    ];
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let out = weft(&["up", "--print-config"], &env);
    assert!(out.status.success(), "{}", stderr(&out));
    let expect = [
        ("interface", "\"edgevpn0\"", "IFACE"),
        ("cidr", "\"10.1.0.0/24\"", "ADDRESS"),
        ("address", "\"10.1.0.5\"", "ADDRESS"),
        ("mtu", "1200", "EDGEVPNMTU"),
        ("mdns", "false", "EDGEVPNMDNS"),
        ("dht", "false", "EDGEVPNDHT"),
        (
            "bootstrap",
            "[\"/ip4/192.0.2.1/tcp/4001\",\"/ip4/192.0.2.2/tcp/4001\"]",
            "EDGEVPNBOOTSTRAPPEERS",
        ),
        (
            "listen",
            "[\"/ip4/0.0.0.0/tcp/4001\"]",
            "EDGEVPNLISTENMADDRS",
        ),
        ("api", "\"127.0.0.1:8080\"", "APILISTEN"),
        ("api_unix_mode", "\"0660\"", "APILISTENUNIXMODE"),
        ("dns", "\"127.0.0.1:53\"", "DNSADDRESS"),
        ("dns_forward", "true", "DNSFORWARD"),
        (
            "dns_forward_servers",
            "[\"8.8.8.8:53\",\"1.1.1.1:53\"]",
            "DNSFORWARDSERVER",
        ),
        ("dns_cache_size", "64", "DNSCACHESIZE"),
        ("log_level", "\"debug\"", "EDGEVPNLOGLEVEL"),
    ];
    for (key, value, var) in expect {
        assert_eq!(
            setting(&out, key),
            (value.to_string(), format!("environment variable {var}")),
            "{key}"
        );
    }
    assert!(setting(&out, "token").0.contains("edgevpn token"));
    assert_eq!(
        setting(&out, "token").1,
        "environment variable EDGEVPNTOKEN"
    );
    assert_eq!(
        setting(&out, "state_dir").1,
        "environment variable DHCPLEASEDIR"
    );
}

#[test]
fn weft_variables_win_over_edgevpn_aliases() {
    let out = weft(
        &["up", "--print-config"],
        &[("EDGEVPNMTU", "1200"), ("WEFT_MTU", "1400")],
    );
    assert_eq!(
        setting(&out, "mtu"),
        ("1400".into(), "environment variable WEFT_MTU".into())
    );
}

#[test]
fn edgevpn_config_file_is_read_as_the_token() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("edgevpn.yaml");
    std::fs::write(&file, EDGEVPN_TOKEN_YAML).unwrap();
    let out = weft(
        &["up", "--print-config"],
        &[("EDGEVPNCONFIG", file.to_str().unwrap())],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        setting(&out, "token").1,
        "file named by environment variable EDGEVPNCONFIG"
    );
}

#[test]
fn invoked_as_edgevpn_with_no_subcommand_it_runs_up() {
    let dir = tempfile::tempdir().unwrap();
    let link = dir.path().join("edgevpn");
    std::os::unix::fs::symlink(WEFT, &link).unwrap();
    // Without a token `up` refuses to start: proof that `up` is what ran.
    let out = weft_at(&link, &[], &[("EDGEVPNMTU", "1200")]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("no network token"),
        "{}",
        stderr(&out)
    );
    let out = weft_at(&link, &["--print-config"], &[("EDGEVPNMTU", "1200")]);
    assert_eq!(setting(&out, "mtu").0, "1200");
}

/// Flags, environment, and the fragments the error message must contain.
type BadInput<'a> = (Vec<&'a str>, Vec<(&'a str, &'a str)>, Vec<String>);

#[test]
fn bad_values_exit_2_naming_setting_origin_and_value() {
    let dir = tempfile::tempdir().unwrap();
    let bad_yaml = dir.path().join("bad.yaml");
    std::fs::write(&bad_yaml, "mtu: [1, 2\n").unwrap();
    let typo = dir.path().join("typo.yaml");
    std::fs::write(&typo, "mut: 1300\n").unwrap();
    let bad_value = dir.path().join("value.yaml");
    std::fs::write(&bad_value, "data_port: 70000\n").unwrap();
    let cases: Vec<BadInput> = vec![
        (
            vec!["--cidr", "10.1.0.0/33"],
            vec![],
            vec!["invalid cidr \"10.1.0.0/33\" from flag --cidr".into()],
        ),
        (
            vec![],
            vec![("WEFT_CIDR", "banana")],
            vec!["invalid cidr \"banana\" from environment variable WEFT_CIDR".into()],
        ),
        (
            vec!["--bootstrap", "/ip4/1.2.3.4/tcp/notaport"],
            vec![],
            vec![
                "invalid bootstrap".into(),
                "flag --bootstrap".into(),
                "notaport".into(),
            ],
        ),
        (
            vec![],
            vec![("EDGEVPNLISTENMADDRS", "garbage")],
            vec![
                "invalid listen".into(),
                "environment variable EDGEVPNLISTENMADDRS".into(),
                "\"garbage\"".into(),
            ],
        ),
        (
            vec!["--data-port", "65536"],
            vec![],
            vec!["invalid data_port \"65536\" from flag --data-port".into()],
        ),
        (
            vec![],
            vec![("EDGEVPNMDNS", "perhaps")],
            vec!["invalid mdns \"perhaps\" from environment variable EDGEVPNMDNS".into()],
        ),
        (
            vec!["--no-dht=sometimes"],
            vec![],
            vec!["invalid dht \"sometimes\" from flag --no-dht".into()],
        ),
        (
            vec!["--config", bad_yaml.to_str().unwrap()],
            vec![],
            vec![format!("config file {}", bad_yaml.display())],
        ),
        (
            vec!["--config", typo.to_str().unwrap()],
            vec![],
            vec!["unknown setting \"mut\"".into()],
        ),
        (
            vec!["--config", bad_value.to_str().unwrap()],
            vec![],
            vec![format!(
                "invalid data_port \"70000\" from config file {}",
                bad_value.display()
            )],
        ),
        (
            vec!["--api", "unix://relative.sock"],
            vec![],
            vec!["invalid api".into(), "flag --api".into()],
        ),
        (
            vec!["--token", "!!"],
            vec![],
            vec!["token from flag --token: invalid token".into()],
        ),
    ];
    for (args, env, expected) in cases {
        let mut all = vec!["up", "--print-config"];
        all.extend(&args);
        let out = weft(&all, &env);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{args:?} {env:?}: {}",
            stderr(&out)
        );
        for fragment in expected {
            assert!(
                stderr(&out).contains(&fragment),
                "{args:?} {env:?}: want {fragment:?} in {}",
                stderr(&out)
            );
        }
    }
}

#[test]
fn an_address_outside_the_pool_is_refused() {
    let out = weft(
        &[
            "up",
            "--print-config",
            "--cidr",
            "10.8.0.0/24",
            "--address",
            "10.9.0.1",
        ],
        &[],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("not a usable host address of the overlay pool 10.8.0.0/24"));
}

#[test]
fn status_without_a_daemon_explains_what_to_check() {
    let dir = tempfile::tempdir().unwrap();
    let api = format!("unix://{}/none.sock", dir.path().display());
    let out = weft(&["status", "--api", &api], &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("is `weft up` running"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn trusting_a_member_without_the_operators_key_is_refused_before_contacting_the_daemon() {
    let dir = tempfile::tempdir().unwrap();
    let api = format!("unix://{}/none.sock", dir.path().display());
    for command in ["trust", "untrust"] {
        let out = weft(&["members", command, "cp-1", "--api", &api], &[]);
        assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
        let text = stderr(&out);
        assert!(text.contains("--operator-key-file"), "{text}");
        assert!(!text.contains("is `weft up` running"), "{text}");
    }
}

#[test]
fn ledger_recover_without_force_explains_the_risk_and_touches_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let api = format!("unix://{}/none.sock", dir.path().display());
    let out = weft(&["ledger", "recover", "--api", &api], &[]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let text = stderr(&out);
    assert!(text.contains("lost its quorum"), "{text}");
    assert!(text.contains("are lost"), "{text}");
    assert!(text.contains("--force"), "{text}");
    assert!(
        !text.contains("is `weft up` running"),
        "it refuses before contacting the daemon: {text}"
    );
}

#[test]
fn relaying_is_auto_by_default_on_with_the_bare_flag_and_a_bad_mode_is_named() {
    let out = weft(&["up", "--print-config"], &[]);
    assert_eq!(
        setting(&out, "relay"),
        ("\"auto\"".into(), "default".into())
    );
    let out = weft(&["up", "--print-config", "--relay"], &[]);
    assert_eq!(setting(&out, "relay").0, "\"on\"");
    let out = weft(&["up", "--print-config"], &[("WEFT_RELAY", "false")]);
    assert_eq!(setting(&out, "relay").0, "\"off\"");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("weft.yaml");
    std::fs::write(&file, "relay: true\n").unwrap();
    let out = weft(
        &["up", "--print-config", "--config", file.to_str().unwrap()],
        &[],
    );
    assert_eq!(
        setting(&out, "relay").0,
        "\"on\"",
        "a YAML boolean still reads"
    );
    let out = weft(&["up", "--print-config", "--relay=sometimes"], &[]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("relay") && err.contains("sometimes") && err.contains("auto, on or off"),
        "{err}"
    );
}

#[test]
fn an_operator_key_is_made_once_read_back_and_taken_by_up_only_when_well_formed() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("operator.key");
    let file = file.to_str().unwrap();
    let made = weft(&["operator", "keygen", "--out", file], &[]);
    assert!(made.status.success(), "{}", stderr(&made));
    let public = stdout(&made).trim().to_string();
    use std::os::unix::fs::PermissionsExt as _;
    let mode = std::fs::metadata(file).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    let read = weft(&["operator", "pubkey", file], &[]);
    assert_eq!(stdout(&read).trim(), public);
    // Never replaced: every node trusts the public key of the first.
    let again = weft(&["operator", "keygen", "--out", file], &[]);
    assert_eq!(again.status.code(), Some(2));
    assert!(
        stderr(&again).contains("never overwritten"),
        "{}",
        stderr(&again)
    );

    let up = weft(&["up", "--print-config", "--operator-key", &public], &[]);
    assert_eq!(setting(&up, "operator_key").0, format!("\"{public}\""));
    let unset = weft(&["up", "--print-config"], &[]);
    assert!(setting(&unset, "operator_key").1.contains("any member may"));
    let bad = weft(&["up", "--print-config"], &[("WEFT_OPERATOR_KEY", "AAAA")]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(
        stderr(&bad).contains("operator_key") && stderr(&bad).contains("32 bytes"),
        "{}",
        stderr(&bad)
    );
}
