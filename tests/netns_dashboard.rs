//! The dashboard in a real browser: three `weft` nodes in namespaces, the first serving its API
//! on loopback TCP (so the page needs the bearer token, handed over in the URL's fragment as
//! `weft dashboard` users would paste it), and headless Chromium in that node's namespace at a
//! phone's width. The page must list the three members with their addresses and roles, fit the
//! screen without sideways scrolling, and show a DNS record added on another node without being
//! reloaded. A screenshot is written to the host's directory, and to `$WEFT_SCREENSHOT` when set
//! (how `docs/dashboard.png` is made).
//!
//! Needs root, iproute2 and Debian's `chromium`; elsewhere it prints why it is skipped.

mod support;

use std::time::Duration;

use base64::Engine as _;
use serde_json::json;
use support::cdp::{self, Page};
use support::netns::{Lan, report_skip, wait_until};

const WEFT: &str = env!("CARGO_BIN_EXE_weft");
const DEADLINE: Duration = Duration::from_secs(90);
const DEVTOOLS: &str = "127.0.0.1:9222";

/// The text of the elements `selector` matches, one per line.
fn texts(page: &mut Page, selector: &str) -> String {
    let script = format!(
        "[...document.querySelectorAll({})].map(e => e.innerText).join('\\n')",
        json!(selector)
    );
    page.eval(&script)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

#[test]
fn the_dashboard_lists_the_mesh_and_follows_it_live() {
    require_netns!();
    if let Some(reason) = cdp::unavailable() {
        report_skip(&reason);
        return;
    }
    let mut lan = Lan::new(3, WEFT);
    let token = lan.new_token();
    let first = lan.hosts[0].clone();
    let state = first.state_dir();
    lan.spawn(
        0,
        "weft@n1",
        std::path::Path::new(WEFT),
        &[
            "up",
            "--state-dir",
            state.to_str().unwrap(),
            "--api",
            "127.0.0.1:8080",
            "--hostname",
            "n1",
            "--token",
            &token,
            "--no-dht",
            "--dns",
            "127.0.0.1:53",
            "--no-dns-forward",
            "--role",
            "master",
        ],
        &[],
    );
    for i in 1..3 {
        lan.start_weft(i, &["--token", &token, "--no-dht", "--role", "worker"], &[]);
    }
    let addresses = lan.settled_addresses(&[1, 2], DEADLINE);
    let api_token = wait_until(DEADLINE, "n1's API token file", || {
        std::fs::read_to_string(state.join("api.token")).ok()
    });

    let profile = first.dir.join("chromium");
    let url = format!("http://127.0.0.1:8080/#token={}", api_token.trim());
    let mut args: Vec<String> = cdp::FLAGS.iter().map(|f| f.to_string()).collect();
    args.extend([
        format!(
            "--remote-debugging-port={}",
            DEVTOOLS.rsplit(':').next().unwrap()
        ),
        format!("--user-data-dir={}", profile.display()),
        "--window-size=390,1200".to_string(),
        url,
    ]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    lan.spawn(
        0,
        "chromium@n1",
        std::path::Path::new("chromium"),
        &args,
        &[],
    );
    let mut page = wait_until(DEADLINE, "Chromium's DevTools", || {
        match Page::attach(&first.netns, DEVTOOLS) {
            Ok(page) => Some(page),
            Err(e) => {
                eprintln!("DevTools not ready: {e}");
                None
            }
        }
    });
    page.call(
        "Emulation.setDeviceMetricsOverride",
        json!({ "width": 390, "height": 1200, "deviceScaleFactor": 1, "mobile": true }),
    )
    .unwrap();

    // The three members, each with its address and role, once the mesh has settled, and the
    // raft voters among them.
    let all = wait_until(
        DEADLINE,
        "the three members with addresses, roles and raft seats",
        || {
            let text = texts(&mut page, "#members-table tr[data-peer]");
            let rows = text.lines().count();
            (rows == 3
                && addresses.iter().all(|a| text.contains(a.as_str()))
                && text.matches("worker").count() == 2
                && text.contains("master")
                && text.contains("voter"))
            .then_some(text)
        },
    );
    assert!(
        all.contains("n1") && all.contains("n2") && all.contains("n3"),
        "{all}"
    );
    let hidden = page
        .eval("document.getElementById('login').hidden")
        .unwrap();
    assert_eq!(
        hidden,
        json!(true),
        "the token from the URL logged the page in"
    );
    let overflow = page
        .eval("document.documentElement.scrollWidth - window.innerWidth")
        .unwrap();
    assert!(
        overflow.as_i64().is_some_and(|px| px <= 0),
        "the page scrolls sideways by {overflow} px at phone width"
    );

    // A record added on another node reaches this page without a reload.
    let added = lan.weft(&[
        "dns",
        "add",
        "web.weft.internal",
        "A",
        "10.1.0.200",
        "--api",
        &lan.hosts[1].api(),
    ]);
    assert!(
        added.status.success(),
        "{}",
        String::from_utf8_lossy(&added.stderr)
    );
    wait_until(DEADLINE, "the new record on the page", || {
        texts(&mut page, "#dns-table tbody tr")
            .contains("web.weft.internal")
            .then_some(())
    });
    let reloads = page
        .eval("performance.getEntriesByType('navigation').length")
        .unwrap();
    assert_eq!(reloads, json!(1), "the page was not reloaded");

    let shot = page
        .call(
            "Page.captureScreenshot",
            json!({ "format": "png", "captureBeyondViewport": true }),
        )
        .unwrap();
    let png = base64::engine::general_purpose::STANDARD
        .decode(shot["data"].as_str().unwrap())
        .unwrap();
    assert!(png.starts_with(b"\x89PNG"), "a PNG screenshot");
    std::fs::write(first.dir.join("dashboard.png"), &png).unwrap();
    if let Ok(path) = std::env::var("WEFT_SCREENSHOT") {
        std::fs::write(&path, &png).unwrap();
        eprintln!("dashboard screenshot written to {path}");
    }
}
