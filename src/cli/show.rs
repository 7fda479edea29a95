//! What the daemon reports, as tables for people (or JSON with `--json`): `weft status` and
//! `weft peers`.

use super::Failure;
use super::client::{ClientArgs, fetch};
use crate::api::{PeerEntry, StatusView};

pub(super) fn status(client: &ClientArgs) -> Result<(), Failure> {
    let view: StatusView = fetch(client, "/v1/status")?;
    if client.json {
        println!("{}", serde_json::to_string_pretty(&view)?);
        return Ok(());
    }
    println!("peer id:      {}", view.peer_id);
    println!("hostname:     {}", view.hostname);
    println!("network id:   {}", view.network_id);
    println!("interface:    {} (pool {})", view.interface, view.cidr);
    println!(
        "overlay ip:   {}",
        view.overlay_ip.as_deref().unwrap_or("none yet")
    );
    println!(
        "role:         {}",
        match (&view.role, view.role_deployed) {
            (Some(role), true) => format!("{role} (deployed)"),
            (Some(role), false) => format!("{role} (pending)"),
            (None, _) => "none".to_string(),
        }
    );
    match &view.bootstrap {
        Some(b) => {
            let detail = if b.detail.is_empty() {
                String::new()
            } else {
                format!(": {}", b.detail)
            };
            println!(
                "bootstrap:    {} {}{detail}",
                b.bootstrapper,
                b.phase.as_str()
            );
        }
        None => println!("bootstrap:    none (roles are only recorded)"),
    }
    println!("peers:        {} admitted", view.admitted_peers);
    let ledger = &view.ledger;
    let seat = if ledger.follower {
        "follower"
    } else if ledger.voters.contains(&view.peer_id) {
        "voter"
    } else if ledger.learners.contains(&view.peer_id) {
        "learner"
    } else {
        "no seat"
    };
    // A feed follower knows the voters (from the leader's messages) but not the learners.
    let seats = if ledger.follower {
        format!("{} voters", ledger.voters.len())
    } else {
        format!(
            "{} voters, {} learners",
            ledger.voters.len(),
            ledger.learners.len()
        )
    };
    println!(
        "cluster:      {} ({seat}, raft node {:016x}, leader {}, {seats}, applied {}, rules {})",
        ledger.cluster_id.as_deref().unwrap_or("forming"),
        ledger.node_id,
        ledger.leader.as_deref().unwrap_or("unknown"),
        ledger.applied_index,
        ledger.rules
    );
    println!("reachability: {}", view.reachability);
    println!("relay:        {}", view.relay);
    println!("version:      {}", view.version);
    println!("uptime:       {} s", view.uptime_secs);
    for note in &view.notes {
        println!("note:         {note}");
    }
    Ok(())
}

pub(super) fn peers(client: &ClientArgs) -> Result<(), Failure> {
    let peers: Vec<PeerEntry> = fetch(client, "/v1/peers")?;
    if client.json {
        println!("{}", serde_json::to_string_pretty(&peers)?);
        return Ok(());
    }
    if peers.is_empty() {
        println!("no admitted peers");
        return Ok(());
    }
    println!(
        "{:<16} {:<54} {:<8} {:>9}  {:<26} {:<17} {:>10} {:>10} {:>6}",
        "HOSTNAME", "PEER ID", "LINK", "RTT", "DATA PATH", "CIPHER", "TX", "RX", "DROPS"
    );
    for PeerEntry { control, dataplane } in &peers {
        let rtt = control
            .rtt_ms
            .map(|ms| format!("{ms:.2} ms"))
            .unwrap_or_else(|| "-".into());
        let link = match control.connection {
            crate::p2p::ConnectionKind::Direct => "direct",
            crate::p2p::ConnectionKind::Relayed => "relayed",
        };
        let (path, cipher, tx, rx, drops) = match dataplane {
            Some(d) => (
                d.path.clone(),
                d.cipher.clone().unwrap_or_else(|| "-".into()),
                bytes(d.tx_bytes),
                bytes(d.rx_bytes),
                d.drops.values().sum::<u64>().to_string(),
            ),
            None => (
                "no session".into(),
                "-".into(),
                "-".into(),
                "-".into(),
                "-".into(),
            ),
        };
        println!(
            "{:<16} {:<54} {:<8} {:>9}  {:<26} {:<17} {:>10} {:>10} {:>6}",
            control.hostname, control.peer_id, link, rtt, path, cipher, tx, rx, drops
        );
    }
    Ok(())
}

/// A byte count for people: 512 B, 1.5 KiB, 3.2 GiB.
fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_counts_read_in_binary_units() {
        assert_eq!(bytes(0), "0 B");
        assert_eq!(bytes(1023), "1023 B");
        assert_eq!(bytes(1536), "1.5 KiB");
        assert_eq!(bytes(3 << 30), "3.0 GiB");
    }
}
