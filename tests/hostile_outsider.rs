//! An outsider without the token floods a node with connections: 300 TCP connections from one
//! address that never finish their handshake and reconnect as soon as they close. A member that
//! starts meanwhile must still be admitted within 10 s. Runs in one process on loopback (the
//! outsider connects from 127.0.0.2, the members from 127.0.0.1), no root.

mod support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use libp2p::multiaddr::Protocol;
use support::mesh::{address, admitted, network, start, start_guarded, wait_within};
use weft::p2p::per_ip::PerIpLimits;

/// Connections the outsider keeps trying to hold.
const FLOOD: usize = 300;

/// The TCP address of a loopback listen multiaddr.
fn socket_of(addr: &libp2p::Multiaddr) -> SocketAddr {
    let mut ip = None;
    let mut port = None;
    for p in addr.iter() {
        match p {
            Protocol::Ip4(a) => ip = Some(a),
            Protocol::Tcp(p) => port = Some(p),
            _ => {}
        }
    }
    SocketAddr::from((ip.expect("an IPv4 address"), port.expect("a TCP port")))
}

/// One of the outsider's connections: opens from 127.0.0.2, holds the socket until the node
/// closes it (or 5 s pass), and opens again after a short pause, until `stop`.
async fn hog(target: SocketAddr, stop: Arc<AtomicBool>, opened: Arc<AtomicUsize>) {
    use tokio::io::AsyncReadExt as _;
    while !stop.load(Ordering::Relaxed) {
        let socket = tokio::net::TcpSocket::new_v4().expect("a socket");
        socket
            .bind("127.0.0.2:0".parse().unwrap())
            .expect("127.0.0.2 is a loopback address");
        if let Ok(mut stream) = socket.connect(target).await {
            opened.fetch_add(1, Ordering::Relaxed);
            let mut buffer = [0u8; 1024];
            let _ = tokio::time::timeout(Duration::from_secs(5), async {
                while matches!(stream.read(&mut buffer).await, Ok(n) if n > 0) {}
            })
            .await;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_flood_from_one_address_does_not_keep_a_new_member_out() {
    let token = network();
    let node = start_guarded(&token, "target", vec![], PerIpLimits::share_of(256)).await;
    let entry = address(&node).await;
    let stop = Arc::new(AtomicBool::new(false));
    let opened = Arc::new(AtomicUsize::new(0));
    let hogs: Vec<_> = (0..FLOOD)
        .map(|_| tokio::spawn(hog(socket_of(&entry), stop.clone(), opened.clone())))
        .collect();
    wait_within(Duration::from_secs(10), "the flood to be under way", || {
        (opened.load(Ordering::Relaxed) >= FLOOD).then_some(())
    })
    .await;

    let member = start(&token, "newcomer", vec![entry]).await;
    let node_id = node.handle.peer_id().to_string();
    let member_id = member.handle.peer_id().to_string();
    wait_within(
        Duration::from_secs(10),
        "the new member and the node to admit each other during the flood",
        || {
            (admitted(&member).contains(&node_id) && admitted(&node).contains(&member_id))
                .then_some(())
        },
    )
    .await;
    stop.store(true, Ordering::Relaxed);
    for hog in hogs {
        hog.abort();
    }
}
