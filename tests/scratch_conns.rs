mod support;
use std::time::Duration;
use support::netns::Lan;
const WEFT: &str = env!("CARGO_BIN_EXE_weft");

#[test]
fn scratch_connections() {
    let n = 5;
    let mut lan = Lan::new(n, WEFT);
    let token = lan.new_token();
    for i in 0..n {
        lan.start_weft(i, &["--token", token.as_str()], &[]);
    }
    let _ = lan.settled_addresses(&(0..n).collect::<Vec<_>>(), Duration::from_secs(60));
    std::thread::sleep(Duration::from_secs(20));
    for i in 0..n {
        let m = lan.hosts[i].run(
            "curl",
            &[
                "-s",
                "--unix-socket",
                lan.hosts[i].api_socket().to_str().unwrap(),
                "http://x/metrics",
            ],
        );
        for l in String::from_utf8_lossy(&m.stdout)
            .lines()
            .filter(|l| l.contains("connections") && !l.starts_with('#') && !l.contains("duration"))
        {
            eprintln!("   M {l}");
        }
        let out = lan.weft(&["peers", "--json", "--api", &lan.hosts[i].api()]);
        let v: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
        let ss = lan.hosts[i].run("ss", &["-tn", "state", "established"]);
        let tcp = String::from_utf8_lossy(&ss.stdout)
            .lines()
            .count()
            .saturating_sub(1);
        eprintln!("CONN n{} peers {} tcp-established {}", i + 1, v.len(), tcp);
        eprintln!("{}", String::from_utf8_lossy(&ss.stdout));
    }
}
