//! Routing: which member an overlay packet goes to. The table maps each live member's overlay
//! address to its PeerId, is rebuilt from the ledger whenever it changes, and is read by the
//! packet path through a lock-free snapshot (`arc-swap`). A packet for an overlay address no
//! member holds is answered with an ICMP destination-unreachable written back into the TUN
//! ([`icmp_unreachable`]), so applications fail fast instead of timing out.

use std::collections::HashMap;
use std::net::Ipv4Addr;

use crate::ledger::state::{LeaseState, LedgerState};

/// Overlay address → member PeerId (text form, as the ledger keys members).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RouteTable {
    routes: HashMap<Ipv4Addr, String>,
}

impl RouteTable {
    /// The routes to every live member with an address, except `me`.
    pub fn from_state(state: &LedgerState, me: &str) -> Self {
        RouteTable {
            routes: state
                .members()
                .iter()
                .filter(|(peer, m)| peer.as_str() != me && m.lease == LeaseState::Live)
                .filter_map(|(peer, m)| Some((m.address?, peer.clone())))
                .collect(),
        }
    }

    /// The member holding `address`.
    pub fn lookup(&self, address: Ipv4Addr) -> Option<&str> {
        self.routes.get(&address).map(String::as_str)
    }

    /// Every route: an overlay address and its member.
    pub fn iter(&self) -> impl Iterator<Item = (Ipv4Addr, &str)> {
        self.routes.iter().map(|(a, p)| (*a, p.as_str()))
    }

    pub fn len(&self) -> usize {
        self.routes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.routes.is_empty()
    }
}

/// The destination of an IPv4 packet, `None` for anything else or a truncated header.
pub fn ipv4_destination(packet: &[u8]) -> Option<Ipv4Addr> {
    if packet.len() < 20 || packet[0] >> 4 != 4 {
        return None;
    }
    Some(Ipv4Addr::new(
        packet[16], packet[17], packet[18], packet[19],
    ))
}

/// Whether the kernel may answer an IPv4 packet while it is written to the TUN: TCP (with an
/// acknowledgement, or more data an acknowledgement lets out) and an ICMP echo or timestamp
/// request (its reply) are answered in the kernel's receive path, inside the write. A
/// fragmented request is answered once reassembled, which a later fragment (one with an
/// offset, whose type only the first shows) may complete, so such a fragment counts too, and
/// the first does not. Other ICMP (an echo's reply, an error) is not answered, and UDP only by
/// an application later (the kernel's port unreachable aside, rare enough not to look for), so
/// looking for an answer after writing them would be a read for nothing.
pub fn answered_in_write(packet: &[u8]) -> bool {
    if packet.len() < 20 || packet[0] >> 4 != 4 || packet[0] & 0x0f < 5 {
        return false;
    }
    match packet[9] {
        TCP => true,
        ICMP => {
            let header = usize::from(packet[0] & 0x0f) * 4;
            let fragment = u16::from_be_bytes([packet[6], packet[7]]);
            if fragment & FRAGMENT_OFFSET != 0 {
                return true;
            }
            fragment & MORE_FRAGMENTS == 0
                && matches!(
                    packet.get(header),
                    Some(&(ECHO_REQUEST | TIMESTAMP_REQUEST))
                )
        }
        _ => false,
    }
}

const ICMP: u8 = 1;
const TCP: u8 = 6;
const ECHO_REQUEST: u8 = 8;
const TIMESTAMP_REQUEST: u8 = 13;
const MORE_FRAGMENTS: u16 = 0x2000;
const FRAGMENT_OFFSET: u16 = 0x1fff;

/// The source of an IPv4 packet, `None` for anything else or a truncated header.
pub fn ipv4_source(packet: &[u8]) -> Option<Ipv4Addr> {
    ipv4_destination(packet)?;
    Some(Ipv4Addr::new(
        packet[12], packet[13], packet[14], packet[15],
    ))
}

/// Bytes of the original datagram an ICMP error quotes after its IP header (RFC 792).
const QUOTED_PAYLOAD: usize = 8;

/// Writes into `out` an ICMPv4 "destination host unreachable" from `from` to the sender of
/// `packet` (the data plane answers in the name of the missing address: the kernel drops ICMP
/// that claims to come from one of its own addresses), quoting its IP header and first 8 payload bytes, and
/// returns its length. `None` when `packet` is not a well-formed IPv4 packet, is itself an ICMP
/// error (never answer an error with an error), or `out` is too small.
pub fn icmp_unreachable(packet: &[u8], from: Ipv4Addr, out: &mut [u8]) -> Option<usize> {
    ipv4_destination(packet)?;
    let header_len = usize::from(packet[0] & 0x0f) * 4;
    if header_len < 20 || packet.len() < header_len {
        return None;
    }
    let protocol = packet[9];
    if protocol == 1 && packet.len() > header_len {
        // ICMP: answer only queries (echo request), never errors.
        let kind = packet[header_len];
        if kind != 8 {
            return None;
        }
    }
    let quoted = (header_len + QUOTED_PAYLOAD).min(packet.len());
    let total = 20 + 8 + quoted;
    if out.len() < total {
        return None;
    }
    let out = &mut out[..total];
    out.fill(0);
    // IPv4 header.
    out[0] = 0x45;
    out[2..4].copy_from_slice(&(total as u16).to_be_bytes());
    out[8] = 64; // TTL
    out[9] = 1; // ICMP
    out[12..16].copy_from_slice(&from.octets());
    out[16..20].copy_from_slice(&packet[12..16]);
    let checksum = internet_checksum(&out[..20]);
    out[10..12].copy_from_slice(&checksum.to_be_bytes());
    // ICMP: type 3 (destination unreachable), code 1 (host unreachable), 4 unused bytes, then
    // the quote.
    out[20] = 3;
    out[21] = 1;
    out[28..].copy_from_slice(&packet[..quoted]);
    let checksum = internet_checksum(&out[20..]);
    out[22..24].copy_from_slice(&checksum.to_be_bytes());
    Some(total)
}

/// RFC 1071's one's-complement sum over `bytes`.
fn internet_checksum(bytes: &[u8]) -> u16 {
    let mut sum: u32 = bytes
        .chunks(2)
        .map(|pair| u32::from(u16::from_be_bytes([pair[0], *pair.get(1).unwrap_or(&0)])))
        .sum();
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::ledger::state::{Command, join_command};

    fn udp_packet(src: [u8; 4], dst: [u8; 4]) -> Vec<u8> {
        let mut packet = vec![0u8; 20 + 8 + 12];
        packet[0] = 0x45;
        let len = packet.len() as u16;
        packet[2..4].copy_from_slice(&len.to_be_bytes());
        packet[8] = 64;
        packet[9] = 17;
        packet[12..16].copy_from_slice(&src);
        packet[16..20].copy_from_slice(&dst);
        packet[20..28].copy_from_slice(&[0x30, 0x39, 0x00, 0x35, 0, 20, 0, 0]);
        packet
    }

    fn join(state: &mut LedgerState, peer: &str) {
        let index = state.applied() + 1;
        state.apply(index, &join_command(peer));
    }

    #[test]
    fn only_tcp_and_icmp_requests_are_answered_in_the_write() {
        let mut packet = udp_packet([10, 1, 0, 2], [10, 1, 0, 1]);
        assert!(!answered_in_write(&packet));
        packet[9] = 6;
        assert!(answered_in_write(&packet));
        assert!(!answered_in_write(&packet[..19]), "a truncated header");
        // ICMP: the type follows the 20-byte header.
        packet[9] = 1;
        for (kind, answered) in [(8, true), (13, true), (0, false), (3, false), (11, false)] {
            packet[20] = kind;
            assert_eq!(answered_in_write(&packet), answered, "ICMP type {kind}");
        }
        assert!(!answered_in_write(&packet[..20]), "no ICMP header");
        // A later fragment (an offset) may complete a request; a first one (more to come) not.
        packet[20] = 8;
        packet[6] = 0x20;
        assert!(!answered_in_write(&packet), "a first fragment");
        packet[6] = 0;
        packet[20] = 0;
        packet[7] = 1;
        assert!(answered_in_write(&packet), "a later fragment");
        packet[7] = 0;
        packet[20] = 8;
        packet[6] = 0x40;
        assert!(answered_in_write(&packet), "don't fragment is no fragment");
        packet[6] = 0;
        // A header length below 20 bytes, whose "type" would read as a request.
        packet[0] = 0x44;
        packet[16] = 8;
        assert!(
            !answered_in_write(&packet),
            "a header length below 20 bytes"
        );
        packet[0] = 0x60;
        assert!(!answered_in_write(&packet), "not IPv4");
    }

    #[test]
    fn the_table_routes_live_members_except_this_node() {
        let mut state = LedgerState::new("10.1.0.0/24".parse().unwrap());
        for peer in ["me", "a", "b"] {
            join(&mut state, peer);
        }
        let index = state.applied() + 1;
        state.apply(index, &Command::Expire { peer: "b".into() });
        let table = RouteTable::from_state(&state, "me");
        assert_eq!(table.len(), 1);
        let a = state.members()["a"].address.unwrap();
        assert_eq!(table.lookup(a), Some("a"));
        let me = state.members()["me"].address.unwrap();
        assert_eq!(table.lookup(me), None);
    }

    #[test]
    fn an_unroutable_packet_gets_a_valid_host_unreachable_back() {
        let packet = udp_packet([10, 1, 0, 1], [10, 1, 0, 77]);
        assert_eq!(ipv4_destination(&packet), Some(Ipv4Addr::new(10, 1, 0, 77)));
        let mut out = [0u8; 128];
        let n = icmp_unreachable(&packet, Ipv4Addr::new(10, 1, 0, 1), &mut out).unwrap();
        let reply = &out[..n];
        assert_eq!(n, 20 + 8 + 28);
        assert_eq!(internet_checksum(&reply[..20]), 0, "IP header checksum");
        assert_eq!(internet_checksum(&reply[20..]), 0, "ICMP checksum");
        assert_eq!((reply[20], reply[21]), (3, 1));
        assert_eq!(&reply[16..20], &[10, 1, 0, 1], "back to the sender");
        assert_eq!(&reply[28..], &packet[..28], "quotes header and 8 bytes");
    }

    #[test]
    fn icmp_errors_and_non_ipv4_get_no_answer() {
        let mut error = udp_packet([10, 1, 0, 1], [10, 1, 0, 77]);
        error[9] = 1;
        error[20] = 3;
        let mut out = [0u8; 128];
        assert_eq!(
            icmp_unreachable(&error, Ipv4Addr::LOCALHOST, &mut out),
            None
        );
        let mut echo = error.clone();
        echo[20] = 8;
        assert!(icmp_unreachable(&echo, Ipv4Addr::LOCALHOST, &mut out).is_some());
        let mut v6 = udp_packet([0; 4], [0; 4]);
        v6[0] = 0x60;
        assert_eq!(icmp_unreachable(&v6, Ipv4Addr::LOCALHOST, &mut out), None);
        assert_eq!(ipv4_destination(&[0x45; 10]), None);
    }

    proptest! {
        #[test]
        fn arbitrary_packets_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..120)) {
            let mut out = [0u8; 256];
            let _ = ipv4_destination(&bytes);
            let _ = icmp_unreachable(&bytes, Ipv4Addr::LOCALHOST, &mut out);
        }
    }
}
