//! Clock trouble in network namespaces (issue 16): three `weft up` processes whose wall clocks
//! disagree by ten minutes each way, across a DHT rendezvous epoch boundary. C's clock is set
//! 7.5 minutes before a boundary, A's ten minutes ahead of C (past the boundary, in the next
//! epoch) and B's ten minutes behind C. The nodes meet through a bootstrap address and peer
//! exchange; the rendezvous runs beside them. A debug build's `WEFT_CLOCK_OFFSET` sets each clock
//! (`src/clock.rs`); the monotonic clock, which leases run on, is untouched, as with a real
//! clock step. The nodes still admit each other, form one cluster with distinct addresses,
//! replicate a write, ping across the overlay, and with a 15 s lease timeout nobody's lease
//! expires over four timeouts. Needs root and iproute2; elsewhere it prints why it is skipped.

mod support;

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use support::netns::{Lan, wait_until};

const WEFT: &str = env!("CARGO_BIN_EXE_weft");
const DEADLINE: Duration = Duration::from_secs(90);
/// The token's rendezvous epoch: long enough that ten minutes either side of C stays within
/// the epochs C looks up before it has a member (its own and the nearer neighbour).
const EPOCH: u64 = 1200;
const LEASE_TIMEOUT: u64 = 15;
/// The edgevpn ledger bucket of live members.
const HEALTHCHECK: &str = "healthcheck";

/// Host `i`'s wall clock, in UNIX seconds, as its edgevpn API shows it: the healthcheck bucket
/// of `GET /api/ledger` stamps every live member with the node's own time.
fn clock_of(lan: &Lan, i: usize) -> Option<i64> {
    let socket = lan.hosts[i].api_socket();
    let out = std::process::Command::new("curl")
        .args(["-s", "--unix-socket", socket.to_str()?])
        .arg("http://weft/api/ledger")
        .output()
        .ok()?;
    let ledger: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
    let stamp = ledger[HEALTHCHECK].as_object()?.values().next()?.as_str()?;
    let out = std::process::Command::new("date")
        .args(["-u", "+%s", "-d", stamp.trim_matches('"')])
        .output()
        .ok()?;
    String::from_utf8_lossy(&out.stdout).trim().parse().ok()
}

/// The leases `weft members` shows on host `i`, by hostname.
fn leases(lan: &Lan, i: usize) -> Vec<(String, String)> {
    let out = lan.weft(&["members", "--json", "--api", &lan.hosts[i].api()]);
    let members: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap_or_default();
    members
        .iter()
        .map(|m| {
            (
                m["hostname"].as_str().unwrap_or_default().to_string(),
                m["lease"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

#[test]
fn clocks_ten_minutes_apart_across_an_epoch_boundary_still_meet_and_keep_their_leases() {
    require_netns!();
    if !cfg!(debug_assertions) {
        support::netns::report_skip("WEFT_CLOCK_OFFSET is read by debug builds only");
        return;
    }
    let mut lan = Lan::new(3, WEFT);
    let out = lan.weft(&["token", "new", "--rendezvous-epoch", &EPOCH.to_string()]);
    assert!(out.status.success(), "weft token new");
    let token = String::from_utf8_lossy(&out.stdout).trim().to_string();

    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let boundary = (now / EPOCH + 1) * EPOCH;
    // C 450 s before the boundary: the test ends long before C's clock crosses it.
    let c_offset = boundary as i64 - now as i64 - 450;
    let offsets = [c_offset + 600, c_offset - 600, c_offset];
    let (a, b, c) = (0, 1, 2);
    for (host, offset) in [a, b, c].iter().zip(offsets) {
        let epoch = (now as i64 + offset) as u64 / EPOCH;
        eprintln!("n{}: clock offset {offset} s, epoch {epoch}", host + 1);
    }

    let lease = LEASE_TIMEOUT.to_string();
    let common = ["--token", &token, "--no-mdns", "--lease-timeout", &lease];
    let mut args = common.to_vec();
    args.extend(["--listen", "/ip4/0.0.0.0/tcp/4001"]);
    let offset = offsets[c].to_string();
    lan.start_weft(c, &args, &[("WEFT_CLOCK_OFFSET", &offset)]);
    let c_id = lan.wait_api(c, DEADLINE)["peer_id"]
        .as_str()
        .expect("a PeerId")
        .to_string();
    let to_c = format!("/ip4/{}/tcp/4001/p2p/{c_id}", lan.hosts[c].addr);
    for host in [a, b] {
        let mut args = common.to_vec();
        args.extend(["--bootstrap", &to_c]);
        let offset = offsets[host].to_string();
        lan.start_weft(host, &args, &[("WEFT_CLOCK_OFFSET", &offset)]);
    }
    let started = Instant::now();
    let overlay = lan.settled_addresses(&[a, b, c], DEADLINE);
    eprintln!(
        "one cluster with distinct addresses after {:?}",
        started.elapsed()
    );

    // The offsets are real: each node's API tells its own time.
    let clocks: Vec<i64> = [a, b, c]
        .iter()
        .map(|&i| wait_until(DEADLINE, "a node's clock", || clock_of(&lan, i)))
        .collect();
    let real = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    for (i, clock) in clocks.iter().enumerate() {
        let off = clock - real;
        assert!(
            (off - offsets[i]).abs() <= 5,
            "n{} runs {off} s off, not {}",
            i + 1,
            offsets[i]
        );
    }

    wait_until(DEADLINE, "a write through A to commit", || {
        let out = lan.weft(&[
            "ledger",
            "put",
            "clock",
            "k",
            "skewed",
            "--api",
            &lan.hosts[a].api(),
        ]);
        out.status.success().then_some(())
    });
    wait_until(DEADLINE, "A's write to read back on B", || {
        let out = lan.weft(&["ledger", "get", "clock", "k", "--api", &lan.hosts[b].api()]);
        (String::from_utf8_lossy(&out.stdout).trim() == "skewed").then_some(())
    });
    lan.wait_ping(a, &overlay[1], DEADLINE);
    lan.wait_ping(b, &overlay[0], DEADLINE);

    let watched = Instant::now();
    let watch = Duration::from_secs(4 * LEASE_TIMEOUT);
    while watched.elapsed() < watch {
        for host in [a, b, c] {
            let seen = leases(&lan, host);
            assert_eq!(seen.len(), 3, "n{} sees three members: {seen:?}", host + 1);
            assert!(
                seen.iter().all(|(_, lease)| lease == "live"),
                "n{} sees an expired lease: {seen:?}",
                host + 1
            );
        }
        std::thread::sleep(Duration::from_secs(2));
    }
    eprintln!("no lease expired over {watch:?} ({} lease timeouts)", 4);
}
