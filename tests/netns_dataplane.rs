//! End-to-end data plane in network namespaces: members reach each other's overlay addresses
//! through the encrypted UDP path, with and without TUN offloads. Needs root and iproute2;
//! elsewhere it prints why it is skipped.

mod support;

use std::time::Duration;

use support::netns::{Lan, wait_until};

const WEFT: &str = env!("CARGO_BIN_EXE_weft");
const DEADLINE: Duration = Duration::from_secs(60);

/// Starts `n` nodes (the last one without TUN offloads) and returns their overlay addresses.
fn mesh(lan: &mut Lan, n: usize) -> Vec<String> {
    let token = lan.new_token();
    for i in 0..n {
        let mut args = vec!["--token", token.as_str(), "--no-dht"];
        if i == n - 1 {
            args.push("--no-offload");
        }
        lan.start_weft(i, &args, &[]);
    }
    lan.settled_addresses(&(0..n).collect::<Vec<_>>(), DEADLINE)
}

fn peers(lan: &Lan, i: usize) -> Vec<serde_json::Value> {
    let out = lan.weft(&["peers", "--json", "--api", &lan.hosts[i].api()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("peers JSON")
}

#[test]
fn three_nodes_ping_each_other_over_the_overlay() {
    require_netns!();
    let mut lan = Lan::new(3, WEFT);
    let overlay = mesh(&mut lan, 3);
    for i in 0..3 {
        for j in (0..3).filter(|&j| j != i) {
            wait_until(
                DEADLINE,
                &format!("n{} to ping n{} at {}", i + 1, j + 1, overlay[j]),
                || {
                    let out = lan.hosts[i].run("ping", &["-c", "1", "-W", "1", &overlay[j]]);
                    out.status.success().then_some(())
                },
            );
        }
    }
    // Every pair uses the direct UDP path, seen from both ends, and the cipher both ends
    // offer: AES-256-GCM where this machine runs it in hardware.
    let cipher = if weft::dataplane::frame::Cipher::aes_gcm_in_hardware() {
        "aes-256-gcm"
    } else {
        "chacha20-poly1305"
    };
    for i in 0..3 {
        let peers = peers(&lan, i);
        assert_eq!(peers.len(), 2, "{peers:#?}");
        for peer in &peers {
            let data = &peer["dataplane"];
            let path = data["path"].as_str().unwrap_or_default();
            assert!(path.starts_with("udp 10."), "n{}: {peer:#?}", i + 1);
            assert_eq!(data["cipher"], cipher, "n{}: {peer:#?}", i + 1);
            assert!(data["rx_packets"].as_u64().unwrap() > 0, "{peer:#?}");
            assert!(data["tx_packets"].as_u64().unwrap() > 0, "{peer:#?}");
        }
    }
    // A pool address no member holds is answered with ICMP host unreachable, not silence.
    let status = lan.status(0).unwrap();
    let unused = unused_address(&overlay, status["cidr"].as_str().unwrap());
    let out = lan.hosts[0].run("ping", &["-c", "1", "-W", "2", &unused]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("Destination Host Unreachable"),
        "ping {unused}: {text}"
    );
}

#[test]
fn sessions_are_made_when_traffic_asks_and_the_first_packet_arrives() {
    require_netns!();
    let mut lan = Lan::new(3, WEFT);
    let overlay = mesh(&mut lan, 3);
    let ids: Vec<String> = (0..3).map(|i| lan.peer_id(i)).collect();
    // Both ends of n1 → n2 route to each other before the first packet.
    for i in [0, 1] {
        wait_until(
            DEADLINE,
            &format!("n{} to route to both peers", i + 1),
            || {
                (peers(&lan, i)
                    .iter()
                    .filter(|p| p["dataplane"].is_object())
                    .count()
                    == 2)
                    .then_some(())
            },
        );
    }
    // One ping, one try: the packet that asks for the session waits for it and arrives.
    let out = lan.hosts[0].run("ping", &["-c", "1", "-W", "5", &overlay[1]]);
    assert!(
        out.status.success(),
        "the first ping was lost:\n{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let n1 = peers(&lan, 0);
    let to_n2 = n1
        .iter()
        .find(|p| p["peer_id"] == ids[1])
        .expect("n2 in n1's peers");
    assert!(
        to_n2["dataplane"]["handshakes"].as_u64() >= Some(1),
        "{to_n2:#}"
    );
    assert_eq!(
        to_n2["dataplane"]["drops"]["no_session"],
        serde_json::Value::Null,
        "{to_n2:#}"
    );
    // Nobody sent n3 anything: it has made no session, so it keeps no path alive.
    let to_n3 = n1
        .iter()
        .find(|p| p["peer_id"] == ids[2])
        .expect("n3 in n1's peers");
    assert_eq!(to_n3["dataplane"]["handshakes"], 0, "{to_n3:#}");
    for peer in peers(&lan, 2) {
        assert_eq!(peer["dataplane"]["handshakes"], 0, "{peer:#}");
        assert_eq!(peer["dataplane"]["path"], "none", "{peer:#}");
        assert_eq!(peer["dataplane"]["tx_packets"], 0, "{peer:#}");
    }
}

#[test]
fn members_keep_few_connections_and_dial_one_when_a_packet_needs_it() {
    require_netns!();
    const N: usize = 8;
    let mut lan = Lan::new(N, WEFT);
    let token = lan.new_token();
    for i in 0..N {
        let args = ["--token", token.as_str(), "--no-dht", "--idle-timeout", "3"];
        lan.start_weft(i, &args, &[]);
    }
    let overlay = lan.settled_addresses(&(0..N).collect::<Vec<_>>(), DEADLINE);
    let ids: Vec<String> = (0..N).map(|i| lan.peer_id(i)).collect();
    let connected = |lan: &Lan, i: usize| -> Vec<String> {
        peers(lan, i)
            .iter()
            .filter_map(|p| p["peer_id"].as_str().map(str::to_string))
            .collect()
    };
    // Connections nothing uses close (the gossip mesh's stay): some pair is left without one.
    let (a, b) = wait_until(DEADLINE, "a pair of members without a connection", || {
        (0..N).find_map(|i| {
            let theirs = connected(&lan, i);
            (0..N)
                .find(|&j| j != i && !theirs.contains(&ids[j]))
                .map(|j| (i, j))
        })
    });
    // One ping, one try: the packet waits while the member is dialled, admitted and
    // handshaken with, and arrives.
    let out = lan.hosts[a].run("ping", &["-c", "1", "-W", "8", &overlay[b]]);
    assert!(
        out.status.success(),
        "n{} to n{}: the first ping was lost:\n{}\n{}",
        a + 1,
        b + 1,
        String::from_utf8_lossy(&out.stdout),
        lan.logs()
    );
}

/// An address of the pool `cidr` that is none of `taken`.
fn unused_address(taken: &[String], cidr: &str) -> String {
    let net: ipnet::Ipv4Net = cidr.parse().unwrap();
    net.hosts()
        .map(|a| a.to_string())
        .rfind(|a| !taken.contains(a))
        .expect("a free address")
}

#[test]
fn a_tcp_transfer_arrives_intact_with_and_without_offloads() {
    require_netns!();
    let mut lan = Lan::new(3, WEFT);
    let overlay = mesh(&mut lan, 3);
    // n1 → n2: both with offloads; n1 → n3: into a node without them.
    for target in [1, 2] {
        let sent = transfer(&mut lan, 0, target, &overlay[target], TRANSFER_MIB);
        let received = lan.hosts[target].dir.join("received.sha256");
        let got = wait_until(DEADLINE, "the receiver to hash what arrived", || {
            std::fs::read_to_string(&received)
                .ok()
                .filter(|t| t.len() >= 64)
        });
        assert_eq!(got[..64], sent[..64], "n1 → n{}", target + 1);
    }
}

/// Size of each TCP transfer.
const TRANSFER_MIB: usize = 1024;

/// Sends `mib` MiB of random bytes over TCP from host `from` to host `to` (overlay address
/// `address`), where `nc` hashes what it receives into `received.sha256`; returns the
/// SHA-256 of what was sent.
fn transfer(lan: &mut Lan, from: usize, to: usize, address: &str, mib: usize) -> String {
    let received = lan.hosts[to].dir.join("received.sha256");
    let _ = std::fs::remove_file(&received);
    // `exec`: the harness stops nc by its PID; sha256sum then sees the end and exits too.
    let sink = format!("exec nc -l 7000 > >(sha256sum > {})", received.display());
    lan.spawn(
        to,
        "sink",
        std::path::Path::new("bash"),
        &["-c", &sink],
        &[],
    );
    wait_until(DEADLINE, "the sink to listen", || {
        let out = lan.hosts[to].run("ss", &["-ltnH", "sport = :7000"]);
        (!out.stdout.is_empty()).then_some(())
    });
    let sent = lan.hosts[from].dir.join("sent.sha256");
    let source = format!(
        "set -o pipefail; head -c {bytes} /dev/urandom | tee >(sha256sum > {sent}) | timeout 300 nc -v -N {address} 7000",
        bytes = mib << 20,
        sent = sent.display(),
    );
    let out = lan.hosts[from].run("bash", &["-c", &source]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    wait_until(DEADLINE, "the sender's hash", || {
        std::fs::read_to_string(&sent)
            .ok()
            .filter(|t| t.len() >= 64)
    })
}

/// The data plane's figures of host `i` (`/v1/dataplane`).
fn dataplane(lan: &Lan, i: usize) -> serde_json::Value {
    let out = lan.weft(&["peers", "--json", "--api", &lan.hosts[i].api()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let peers: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    serde_json::Value::Array(peers.into_iter().map(|p| p["dataplane"].clone()).collect())
}

/// Waits until every data-plane peer of host `i` uses a path starting with `prefix`.
fn wait_path(lan: &Lan, i: usize, prefix: &str) {
    wait_until(
        DEADLINE,
        &format!("n{} to use the {prefix} path", i + 1),
        || {
            let all = dataplane(lan, i);
            let paths: Vec<&str> = all
                .as_array()?
                .iter()
                .filter_map(|d| d["path"].as_str())
                .collect();
            (!paths.is_empty() && paths.iter().all(|p| p.starts_with(prefix))).then_some(())
        },
    );
}

/// Runs an nftables script in host `i`'s namespace.
fn nft(lan: &Lan, i: usize, script: &str) {
    let out = lan.hosts[i].run("bash", &["-c", &format!("nft -f - <<'EOF'\n{script}\nEOF")]);
    assert!(
        out.status.success(),
        "nft: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn with_udp_blocked_traffic_moves_to_the_libp2p_stream_and_back() {
    require_netns!();
    let mut lan = Lan::new(2, WEFT);
    let overlay = mesh(&mut lan, 2);
    lan.wait_ping(1, &overlay[0], DEADLINE);
    wait_path(&lan, 0, "udp ");
    let out = lan.weft(&["peers", "--json", "--api", &lan.hosts[1].api()]);
    let peers: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    // n2 sends to n1's data port: the port of its path.
    let path = peers[0]["dataplane"]["path"].as_str().unwrap().to_string();
    let n1_port = path.rsplit(':').next().unwrap().to_string();

    // Block n1's data port both ways: every UDP frame to or from it is lost.
    nft(
        &lan,
        0,
        &format!(
            "table inet weftblock {{\n chain in {{ type filter hook input priority 0; udp dport {n1_port} drop; }}\n chain out {{ type filter hook output priority 0; udp sport {n1_port} drop; }}\n}}"
        ),
    );
    // A path is found lost by data that goes unanswered, so traffic comes first.
    lan.wait_ping(1, &overlay[0], DEADLINE);
    lan.wait_ping(0, &overlay[1], DEADLINE);
    wait_path(&lan, 0, "libp2p stream");
    wait_path(&lan, 1, "libp2p stream");
    let sent = transfer(&mut lan, 1, 0, &overlay[0], 16);
    let received = lan.hosts[0].dir.join("received.sha256");
    let got = wait_until(DEADLINE, "the receiver's hash", || {
        std::fs::read_to_string(&received)
            .ok()
            .filter(|t| t.len() >= 64)
    });
    assert_eq!(got[..64], sent[..64], "a transfer over the fallback");

    nft(&lan, 0, "delete table inet weftblock");
    wait_path(&lan, 0, "udp ");
    wait_path(&lan, 1, "udp ");
    lan.wait_ping(1, &overlay[0], DEADLINE);
}

#[test]
fn a_relayed_only_pair_passes_ping_and_tcp() {
    require_netns!();
    // n1 (A) and n3 (B) each share a segment with n2 (R) only; R does not forward packets.
    let mut lan = Lan::segments(3, &[&[0, 1], &[1, 2]], WEFT);
    let token = lan.new_token();
    let (a, r, b) = (0, 1, 2);
    lan.start_relayed(&token, (a, r, b), &["--no-mdns", "--no-dht"], DEADLINE);
    let all = lan.settled_addresses(&[a, r, b], DEADLINE);
    let overlay = [all[0].clone(), all[2].clone()];
    lan.wait_ping(a, &overlay[1], DEADLINE);
    lan.wait_ping(b, &overlay[0], DEADLINE);
    let sent = transfer(&mut lan, a, b, &overlay[1], 16);
    let received = lan.hosts[b].dir.join("received.sha256");
    let got = wait_until(DEADLINE, "the receiver's hash", || {
        std::fs::read_to_string(&received)
            .ok()
            .filter(|t| t.len() >= 64)
    });
    assert_eq!(
        got[..64],
        sent[..64],
        "a TCP transfer between a relayed pair"
    );
    let b_id = lan.status(b).unwrap()["peer_id"]
        .as_str()
        .unwrap()
        .to_string();
    let view = peers(&lan, a)
        .into_iter()
        .find(|p| p["peer_id"] == b_id.as_str())
        .expect("B is a peer of A");
    assert_eq!(view["connection"], "relayed", "{view:#}");
    assert_eq!(view["dataplane"]["path"], "libp2p stream", "{view:#}");
}

/// The figures of host `i`'s data plane (`GET /v1/dataplane`, through `weft peers --json` and
/// `weft status`'s API).
fn dataplane_stats(lan: &Lan, i: usize) -> serde_json::Value {
    let socket = lan.hosts[i].api_socket();
    let out = std::process::Command::new("curl")
        .args(["-s", "--unix-socket", socket.to_str().unwrap()])
        .arg("http://weft/v1/dataplane")
        .output()
        .expect("curl runs");
    serde_json::from_slice(&out.stdout).expect("dataplane JSON")
}

/// `count` of the drop counter `reason` in a drops object (0 when absent).
fn drops(v: &serde_json::Value, reason: &str) -> u64 {
    v["drops"][reason].as_u64().unwrap_or(0)
}

/// The bytes of one IPv4 packet printed by `tcpdump -x`.
fn tcpdump_bytes(text: &str) -> Vec<u8> {
    text.lines()
        .filter_map(|l| l.trim_start().strip_prefix("0x")?.split_once(':'))
        .flat_map(|(_, hex)| {
            hex.split_whitespace()
                .map(str::to_string)
                .collect::<Vec<_>>()
        })
        .flat_map(|group| {
            (0..group.len())
                .step_by(2)
                .map(move |k| u8::from_str_radix(&group[k..k + 2], 16).unwrap())
                .collect::<Vec<_>>()
        })
        .collect()
}

/// Bash statements that send `payload` as one UDP datagram to `to`, `times` times. The bytes go
/// through a file: `printf` straight into the socket may write (and so send) in pieces.
fn udp_send(payload: &[u8], to: &str, times: usize, file: &std::path::Path) -> String {
    std::fs::write(file, payload).unwrap();
    let (host, port) = to.rsplit_once(':').unwrap();
    let file = file.display();
    format!("for i in $(seq {times}); do cat {file} > /dev/udp/{host}/{port}; done\n")
}

#[test]
fn forged_truncated_and_replayed_packets_change_only_drop_counters() {
    require_netns!();
    let mut lan = Lan::new(2, WEFT);
    let overlay = mesh(&mut lan, 2);
    lan.wait_ping(1, &overlay[0], DEADLINE);
    wait_path(&lan, 1, "udp ");
    let n1_data = peers(&lan, 1)[0]["dataplane"]["path"]
        .as_str()
        .unwrap()
        .trim_start_matches("udp ")
        .to_string();
    let port = n1_data.rsplit_once(':').unwrap().1.to_string();

    // Capture one real frame from n2 to n1 (a ping, larger than a keepalive).
    lan.spawn(
        1,
        "ping",
        std::path::Path::new("ping"),
        &["-c", "100", "-i", "0.2", &overlay[0]],
        &[],
    );
    let filter = format!("udp dst port {port} and greater 100");
    let out = lan.hosts[0].run(
        "timeout",
        &[
            "20", "tcpdump", "-i", "eth0", "-c", "1", "-x", "-n", "-Q", "in", &filter,
        ],
    );
    let packet = tcpdump_bytes(&String::from_utf8_lossy(&out.stdout));
    let header = usize::from(packet[0] & 0x0f) * 4 + 8;
    let frame = packet[header..].to_vec();
    assert_eq!(frame[0], 4, "a data frame: {frame:02x?}");

    let before = dataplane_stats(&lan, 0);
    let path_before = peers(&lan, 0)[0]["dataplane"]["path"].clone();
    let mut tag = frame.clone();
    *tag.last_mut().unwrap() ^= 1;
    let mut body = frame.clone();
    body[20] ^= 0x80;
    let mut index = frame.clone();
    for b in &mut index[4..8] {
        *b ^= 0xff;
    }
    let mut kind = frame.clone();
    kind[0] = 9;
    let mut reserved = frame.clone();
    reserved[2] = 1;
    const N: u64 = 20;
    let mut script = String::new();
    let truncated = frame[..20].to_vec();
    let forged = [&frame, &tag, &body, &index, &kind, &reserved, &truncated];
    for (k, payload) in forged.into_iter().enumerate() {
        let file = lan.hosts[1].dir.join(format!("forged{k}.bin"));
        script.push_str(&udp_send(payload, &n1_data, N as usize, &file));
    }
    let out = lan.hosts[1].run("bash", &["-c", &script]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let after = wait_until(DEADLINE, "n1 to count every forged datagram", || {
        let now = dataplane_stats(&lan, 0);
        let peer = &now["peers"][0];
        let peer_before = &before["peers"][0];
        let counted = drops(&now, "malformed") >= drops(&before, "malformed") + 3 * N
            && drops(&now, "unknown_index") >= drops(&before, "unknown_index") + N
            && drops(peer, "bad_tag") >= drops(peer_before, "bad_tag") + 2 * N
            && drops(peer, "replay") >= drops(peer_before, "replay") + N;
        counted.then_some(now)
    });
    // Nothing else moved: the path is the same, and the overlay still works.
    assert_eq!(peers(&lan, 0)[0]["dataplane"]["path"], path_before);
    assert_eq!(
        drops(&after["peers"][0], "replay"),
        drops(&before["peers"][0], "replay") + N
    );
    lan.wait_ping(1, &overlay[0], DEADLINE);
    lan.wait_ping(0, &overlay[1], DEADLINE);
}

/// Whether `program` runs here.
fn installed(program: &str) -> bool {
    std::process::Command::new(program)
        .arg("--version")
        .output()
        .is_ok()
}

#[test]
fn a_node_behind_a_upnp_gateway_maps_its_data_port_and_removes_the_mapping_on_exit() {
    require_netns!();
    if !installed("miniupnpd") {
        support::netns::report_skip("miniupnpd (miniupnpd-nftables) is not installed");
        return;
    }
    // n1 sits on the LAN (segment 0) behind n2, a NAT gateway whose WAN side is segment 1.
    let mut lan = Lan::segments(2, &[&[0, 1], &[1]], WEFT);
    let (node, gateway) = (0, 1);
    let gw = lan.hosts[gateway].clone();
    gw.run("sysctl", &["-qw", "net.ipv4.ip_forward=1"]);
    nft(
        &lan,
        gateway,
        "table inet filter {
  chain forward { type filter hook forward priority 0; policy accept; jump miniupnpd; }
  chain miniupnpd { }
  chain prerouting { type nat hook prerouting priority -100; policy accept; jump prerouting_miniupnpd; }
  chain postrouting { type nat hook postrouting priority 100; policy accept; jump postrouting_miniupnpd; oifname \"eth1\" masquerade; }
  chain prerouting_miniupnpd { }
  chain postrouting_miniupnpd { }
}",
    );
    // miniupnpd refuses private external addresses; it only reports this one (documentation
    // of the mapping), nothing is ever sent to it.
    const EXTERNAL: &str = "11.22.33.44";
    let conf = gw.dir.join("miniupnpd.conf");
    std::fs::write(
        &conf,
        format!(
            "ext_ifname=eth1\next_ip={EXTERNAL}\nlistening_ip=eth0\nenable_natpmp=no\nenable_upnp=yes\nsecure_mode=yes\nallow 1024-65535 10.99.0.0/24 1024-65535\ndeny 0-65535 0.0.0.0/0 0-65535\n"
        ),
    )
    .unwrap();
    let pidfile = gw.dir.join("miniupnpd.pid");
    lan.spawn(
        gateway,
        "miniupnpd",
        std::path::Path::new("miniupnpd"),
        &[
            "-d",
            "-f",
            conf.to_str().unwrap(),
            "-P",
            pidfile.to_str().unwrap(),
        ],
        &[],
    );
    // SSDP goes to a multicast group: route it onto the LAN, as a default route would.
    support::netns::ip(&[
        "-n",
        &lan.hosts[node].netns,
        "route",
        "add",
        "224.0.0.0/4",
        "dev",
        "eth0",
    ]);
    let token = lan.new_token();
    let weft = lan.start_weft(
        node,
        &["--token", &token, "--no-dht", "--data-port", "40123"],
        &[],
    );
    lan.wait_api(node, DEADLINE);
    let expected = format!("{EXTERNAL}:40123");
    wait_until(DEADLINE, "the UPnP mapping of the data port", || {
        (dataplane_stats(&lan, node)["upnp"] == expected.as_str()).then_some(())
    });
    let rules = || {
        let out = gw.run(
            "nft",
            &["list", "chain", "inet", "filter", "prerouting_miniupnpd"],
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let mapped = rules();
    assert!(
        mapped.contains("40123") && mapped.contains(&lan.hosts[node].addr.to_string()),
        "the gateway forwards the port to the node: {mapped}"
    );
    lan.processes[weft].signal("TERM");
    lan.processes[weft].wait_exit(DEADLINE).expect("weft stops");
    assert!(
        !rules().contains("40123"),
        "the mapping is removed: {}",
        rules()
    );
}
