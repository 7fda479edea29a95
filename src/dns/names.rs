//! Members' names in the mesh zone. A hostname becomes one DNS label: its first dot-separated
//! part, lower-cased, with every character outside `a-z 0-9 -` turned into `-`, trimmed of
//! leading and trailing dashes and cut to 63 bytes (`node` when nothing is left).
//!
//! Members whose labels collide all take `<label>-<tail of their PeerId>` instead, with the
//! shortest tail (six characters at least) that makes every name unique; the bare label then
//! answers nothing, so a name never points at the wrong machine. The result depends only on the
//! set of members, not on the order anyone saw them in, so every node derives the same names.

use std::collections::{BTreeMap, BTreeSet};

use crate::ledger::state::{LeaseState, LedgerState, PeerKey};

/// The longest DNS label.
const MAX_LABEL: usize = 63;
/// The shortest PeerId tail used to tell colliding members apart.
const MIN_TAIL: usize = 6;

/// A hostname as one valid DNS label.
pub fn label(hostname: &str) -> String {
    let first = hostname.split('.').next().unwrap_or_default();
    let mapped: String = first
        .chars()
        .map(|c| match c.to_ascii_lowercase() {
            c @ ('a'..='z' | '0'..='9') => c,
            _ => '-',
        })
        .collect();
    let cut = truncate(mapped.trim_matches('-'), MAX_LABEL).trim_end_matches('-');
    if cut.is_empty() {
        "node".to_string()
    } else {
        cut.to_string()
    }
}

/// The name (one label) of every live member holding an address.
pub fn member_labels(state: &LedgerState) -> BTreeMap<PeerKey, String> {
    let named = state
        .members()
        .iter()
        .filter(|(_, m)| m.lease == LeaseState::Live && m.address.is_some())
        .map(|(peer, m)| (peer.clone(), label(&m.hostname)));
    resolve(named)
}

/// Gives colliding labels PeerId suffixes; see the module documentation.
fn resolve(named: impl IntoIterator<Item = (PeerKey, String)>) -> BTreeMap<PeerKey, String> {
    let mut groups: BTreeMap<String, Vec<PeerKey>> = BTreeMap::new();
    for (peer, label) in named {
        groups.entry(label).or_default().push(peer);
    }
    let bare: BTreeSet<String> = groups
        .iter()
        .filter(|(_, peers)| peers.len() == 1)
        .map(|(label, _)| label.clone())
        .collect();
    let mut names = BTreeMap::new();
    let mut taken = bare.clone();
    for (label, mut peers) in groups {
        if peers.len() == 1 {
            names.insert(peers.remove(0), label);
            continue;
        }
        peers.sort();
        for (peer, name) in suffixed(&label, &peers, &taken) {
            taken.insert(name.clone());
            names.insert(peer, name);
        }
    }
    names
}

/// Names `label-<tail>` for `peers`, with the shortest tail that makes them unique and unlike
/// anything in `taken`; a counter settles what no tail can (PeerIds equal once lower-cased).
fn suffixed(label: &str, peers: &[PeerKey], taken: &BTreeSet<String>) -> Vec<(PeerKey, String)> {
    let longest = peers.iter().map(|p| p.len()).max().unwrap_or(0);
    for tail_len in MIN_TAIL..=longest.max(MIN_TAIL) {
        let names: Vec<String> = peers
            .iter()
            .map(|peer| with_suffix(label, &tail(peer, tail_len)))
            .collect();
        let distinct: BTreeSet<&String> = names.iter().collect();
        if distinct.len() == names.len() && names.iter().all(|n| !taken.contains(n)) {
            return peers.iter().cloned().zip(names).collect();
        }
    }
    peers
        .iter()
        .enumerate()
        .map(|(i, peer)| {
            let name = with_suffix(label, &format!("{}{i}", tail(peer, MIN_TAIL)));
            (peer.clone(), name)
        })
        .collect()
}

/// The last `n` characters of a PeerId, lower-cased (DNS names ignore case).
fn tail(peer: &str, n: usize) -> String {
    let start = peer.len().saturating_sub(n);
    peer.get(start..).unwrap_or(peer).to_ascii_lowercase()
}

/// `label-suffix`, the label cut so that the whole stays one valid label.
fn with_suffix(label: &str, suffix: &str) -> String {
    let room = MAX_LABEL.saturating_sub(suffix.len() + 1);
    let base = truncate(label, room).trim_end_matches('-');
    format!("{base}-{suffix}")
}

fn truncate(text: &str, max: usize) -> &str {
    // Labels are ASCII here, so any byte index is a character boundary.
    &text[..text.len().min(max)]
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn hostnames_become_valid_labels() {
        assert_eq!(label("Node-1"), "node-1");
        assert_eq!(label("node1.example.com"), "node1");
        assert_eq!(label("my_host name!"), "my-host-name");
        assert_eq!(label("--edge--"), "edge");
        assert_eq!(label("ü"), "node");
        assert_eq!(label(""), "node");
        assert_eq!(label(&"x".repeat(80)).len(), 63);
    }

    #[test]
    fn colliding_names_all_take_a_peer_id_suffix() {
        let names = resolve([
            ("12D3KooWAAAAAAabcdef".to_string(), "edge".to_string()),
            ("12D3KooWBBBBBBuvwxyz".to_string(), "edge".to_string()),
            ("12D3KooWCCCCCCqqqqqq".to_string(), "core".to_string()),
        ]);
        assert_eq!(names["12D3KooWAAAAAAabcdef"], "edge-abcdef");
        assert_eq!(names["12D3KooWBBBBBBuvwxyz"], "edge-uvwxyz");
        assert_eq!(names["12D3KooWCCCCCCqqqqqq"], "core");
    }

    #[test]
    fn a_suffix_grows_until_the_names_differ() {
        let names = resolve([
            ("12D3KooWxabcdef".to_string(), "edge".to_string()),
            ("12D3KooWyabcdef".to_string(), "edge".to_string()),
        ]);
        assert_eq!(names["12D3KooWxabcdef"], "edge-xabcdef");
        assert_eq!(names["12D3KooWyabcdef"], "edge-yabcdef");
    }

    proptest! {
        /// Whatever the hostnames and PeerIds, every member gets a distinct valid label, and
        /// the result does not depend on input order.
        #[test]
        fn names_are_unique_valid_and_order_free(
            members in proptest::collection::btree_map("[1-9A-HJ-NP-Za-km-z]{8,12}", "[a-zA-Z0-9._ -]{0,70}", 0..12),
        ) {
            let named: Vec<(String, String)> =
                members.iter().map(|(p, h)| (p.clone(), label(h))).collect();
            let names = resolve(named.clone());
            let reversed = resolve(named.into_iter().rev());
            prop_assert_eq!(&names, &reversed);
            prop_assert_eq!(names.len(), members.len());
            let distinct: BTreeSet<&String> = names.values().collect();
            prop_assert_eq!(distinct.len(), names.len());
            for name in names.values() {
                prop_assert!(!name.is_empty() && name.len() <= MAX_LABEL, "{}", name);
                prop_assert!(!name.starts_with('-') && !name.ends_with('-'), "{}", name);
                prop_assert!(name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-'), "{}", name);
            }
        }
    }
}
