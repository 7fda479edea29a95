//! A set of members named by their places in the member table, where a list would name each
//! by its PeerId: the form in which the leader commits lease renewals
//! ([`super::Command::Renewals`]) once every live member reads it.
//!
//! Every node receives every renewal, so a renewals entry naming each member by its PeerId
//! (about 56 bytes in JSON) made a node's idle traffic grow by that much per member and
//! renewal interval. Here a member takes one bit, in the order of the member table's keys, and
//! the set names the table it was drawn against by a digest of those keys: a table that changed
//! between the leader drawing the set and the entry applying (a member joined or was dropped)
//! fails the digest, and the set names nobody rather than the wrong members. Pure: every
//! replica that applies the same entry to the same state decides the same.

use base64::Engine as _;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use super::PeerKey;

const BITS: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD_NO_PAD;

/// Members of one member table, one bit each.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberSet {
    /// The table's digest ([`digest`]).
    pub of: u64,
    /// A bit per key of the table in order, the lowest bit of the first byte first, in base64.
    pub bits: String,
}

/// The first eight bytes of the SHA-256 of `keys`, each followed by a newline.
pub fn digest<'a>(keys: impl IntoIterator<Item = &'a PeerKey>) -> u64 {
    let mut hash = Sha256::new();
    for key in keys {
        hash.update(key.as_bytes());
        hash.update(b"\n");
    }
    let full = hash.finalize();
    let mut first = [0; 8];
    first.copy_from_slice(&full[..8]);
    u64::from_be_bytes(first)
}

impl MemberSet {
    /// The keys of `table`, in its order, for which `chosen` holds.
    pub fn of<'a>(
        table: impl IntoIterator<Item = &'a PeerKey> + Clone,
        chosen: impl Fn(&PeerKey) -> bool,
    ) -> MemberSet {
        let mut bytes = Vec::new();
        for (place, key) in table.clone().into_iter().enumerate() {
            if place % 8 == 0 {
                bytes.push(0u8);
            }
            if chosen(key)
                && let Some(byte) = bytes.last_mut()
            {
                *byte |= 1 << (place % 8);
            }
        }
        MemberSet {
            of: digest(table),
            bits: BITS.encode(&bytes),
        }
    }

    /// The keys of `table` this set names, in order; `None` when it was drawn against another
    /// table, or its bits do not decode or run past the table by more than a byte's padding.
    pub fn members<'a>(&self, table: &[&'a PeerKey]) -> Option<Vec<&'a PeerKey>> {
        if digest(table.iter().copied()) != self.of {
            return None;
        }
        let room = table.len().div_ceil(8);
        // Looked at before decoding: a longer text cannot decode to `room` bytes or fewer.
        if self.bits.len() > room.div_ceil(3) * 4 {
            return None;
        }
        let bytes = BITS.decode(&self.bits).ok()?;
        if bytes.len() > room {
            return None;
        }
        let named = table
            .iter()
            .enumerate()
            .filter(|(place, _)| {
                bytes
                    .get(place / 8)
                    .is_some_and(|byte| byte & (1 << (place % 8)) != 0)
            })
            .map(|(_, key)| *key)
            .collect();
        Some(named)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use proptest::prelude::*;

    use super::*;

    fn keys(names: &[&str]) -> Vec<PeerKey> {
        names.iter().map(|n| n.to_string()).collect()
    }

    #[test]
    fn a_set_takes_a_bit_a_member() {
        let table: Vec<PeerKey> = (0..4096).map(|i| format!("12D3KooW{i:044}")).collect();
        let set = MemberSet::of(&table, |_| true);
        assert_eq!(set.bits.len(), 683, "512 bytes in base64");
        assert!(serde_json::to_vec(&set).unwrap().len() < 730);
    }

    #[test]
    fn a_set_drawn_against_another_table_names_nobody() {
        let table = keys(&["a", "b", "c"]);
        let set = MemberSet::of(&table, |k| k == "b");
        let refs: Vec<&PeerKey> = table.iter().collect();
        assert_eq!(set.members(&refs), Some(vec![&table[1]]));

        let grown = keys(&["a", "b", "ba", "c"]);
        let refs: Vec<&PeerKey> = grown.iter().collect();
        assert_eq!(set.members(&refs), None, "a member joined in between");
        let shrunk = keys(&["a", "c"]);
        let refs: Vec<&PeerKey> = shrunk.iter().collect();
        assert_eq!(set.members(&refs), None, "a member was dropped in between");
    }

    #[test]
    fn bits_that_do_not_decode_or_run_past_the_table_name_nobody() {
        let table = keys(&["a", "b"]);
        let refs: Vec<&PeerKey> = table.iter().collect();
        let of = digest(&table);
        let long = "A".repeat(1 << 20);
        for bits in ["!!", "AAA", "////", long.as_str()] {
            let set = MemberSet {
                of,
                bits: bits.into(),
            };
            assert_eq!(set.members(&refs), None, "{bits}");
        }
        let short = MemberSet {
            of,
            bits: String::new(),
        };
        assert_eq!(short.members(&refs), Some(vec![]), "no bits: nobody named");
    }

    #[test]
    fn the_digest_tells_the_keys_apart_not_only_their_letters() {
        assert_ne!(digest(&keys(&["ab", "c"])), digest(&keys(&["a", "bc"])));
        assert_ne!(digest(&keys(&["a"])), digest(&keys(&[])));
    }

    proptest! {
        #[test]
        fn a_set_names_exactly_the_members_chosen(
            table in proptest::collection::btree_set("[a-z0-9]{1,12}", 0..300),
            picks in proptest::collection::vec(any::<bool>(), 300),
        ) {
            let table: Vec<PeerKey> = table.into_iter().collect();
            let chosen: BTreeSet<&PeerKey> = table
                .iter()
                .zip(&picks)
                .filter(|(_, pick)| **pick)
                .map(|(key, _)| key)
                .collect();
            let set = MemberSet::of(&table, |k| chosen.contains(k));
            let back: MemberSet =
                serde_json::from_slice(&serde_json::to_vec(&set).unwrap()).unwrap();
            let refs: Vec<&PeerKey> = table.iter().collect();
            let named = back.members(&refs).unwrap();
            prop_assert_eq!(named.into_iter().collect::<BTreeSet<_>>(), chosen);
            prop_assert!(set.bits.len() <= table.len().div_ceil(8).div_ceil(3) * 4);
        }
    }
}
