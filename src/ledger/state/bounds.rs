//! Bounds on what the ledger holds besides its shared data: member records, the deny list,
//! reservations, the trust list ([`super::trust`]), the addresses remembered for returning
//! members and the operator's last signed command per subject ([`super::operator`]). Any token
//! holder can make new identities and propose commands naming any PeerId, so each of these is
//! capped in count and each record in size. With the shared data's own limit
//! ([`SHARED_DATA_LIMIT`]) the whole state encodes to less than the largest snapshot or
//! catch-up a node takes ([`MAX_SNAPSHOT`]), however it was filled; the assertion below keeps
//! the sum so.
//!
//! At its cap, a join of a new member drops the record of the member expired longest ago
//! whose role does not bind it; when none is left to drop the join is refused
//! ([`super::Outcome::MembersFull`]). A full deny list, reservation table or trust list
//! refuses the next entry ([`super::Outcome::ListFull`]). A member's hostname is cut to a DNS
//! name's length, and only its first few endpoints of a plausible length are kept.

use crate::ledger::raft::snapshot::MAX_SNAPSHOT;

use super::operator::{MAX_MARKS, MAX_SCOPE, MAX_SIGNED_COMMAND};
use super::roles::REPORT_DETAIL_LIMIT;
use super::trust::MAX_TRUSTED;
use super::{LeaseState, LedgerState, MAX_TOMBSTONE_BYTES, PeerKey, SHARED_DATA_LIMIT};

/// Member records the ledger holds, live or expired.
pub const MAX_MEMBERS: usize = 4096;
/// PeerIds the deny list holds.
pub const MAX_DENIED: usize = 4096;
/// Static address reservations.
pub const MAX_RESERVATIONS: usize = 4096;
/// Members' last addresses remembered for a rejoin, members that left included.
const MAX_REMEMBERED: usize = 2 * MAX_MEMBERS;
/// The longest PeerId text a command may name (a PeerId's base58 text is about 52 bytes).
pub const PEER_KEY_LIMIT: usize = 128;
/// The longest hostname a member record keeps (a DNS name's limit).
pub const HOSTNAME_LIMIT: usize = 253;
/// Endpoints a member record keeps, and the longest of them.
const ENDPOINTS_LIMIT: usize = 8;
const ENDPOINT_LIMIT: usize = 128;
/// Longest OS, architecture or version a member may record.
pub(super) const PLATFORM_FIELD_LIMIT: usize = 64;

/// What one member record encodes to at most: its texts at six bytes a character (a control
/// character's JSON escape), plus the fixed fields (keys, numbers, the sealing key as 32
/// numbers, the roles) with room to spare.
const MEMBER_WORST: usize = 6
    * (PEER_KEY_LIMIT
        + HOSTNAME_LIMIT
        + ENDPOINTS_LIMIT * ENDPOINT_LIMIT
        + 3 * PLATFORM_FIELD_LIMIT
        + REPORT_DETAIL_LIMIT)
    + 2048;
/// What an entry of the deny list, the reservations, the remembered addresses or the trust
/// list encodes to at most.
const ENTRY_WORST: usize = 6 * PEER_KEY_LIMIT + 64;
/// The audit trail, the tombstones, the policy and the rotation (its command and its pages,
/// each within the command limit), generously.
const REST_WORST: usize = 16 << 20;
/// What one of the operator's signed commands the state keeps encodes to at most: its subject
/// (a prefix and a PeerId or address from the command) and the command's JSON text, each
/// character at six bytes, and the cluster and network it names (each at most [`MAX_SCOPE`]
/// under the rules of version 3), plus the signature and the number; and, for a role, the role
/// kept beside it under its PeerId.
const MARK_WORST: usize =
    6 * (2 * MAX_SIGNED_COMMAND + 32 + 2 * MAX_SCOPE) + 256 + 6 * PEER_KEY_LIMIT + 16;

const _: () = assert!(
    (MAX_MEMBERS * MEMBER_WORST
        + (MAX_DENIED + MAX_RESERVATIONS + MAX_REMEMBERED + MAX_TRUSTED) * ENTRY_WORST
        + 6 * MAX_TOMBSTONE_BYTES
        + MAX_MARKS * MARK_WORST
        + SHARED_DATA_LIMIT
        + REST_WORST) as u64
        * 5
        / 4
        < MAX_SNAPSHOT,
    "the whole state, filled to every bound, encodes to less than the largest snapshot"
);

/// Whether `peer` can be a PeerId's text at all.
pub(super) fn plausible_peer(peer: &str) -> bool {
    peer.len() <= PEER_KEY_LIMIT
}

/// Cuts `text` to at most `limit` bytes, on a character boundary.
pub(super) fn truncate(text: &mut String, limit: usize) {
    if text.len() > limit {
        let mut end = limit;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
}

/// The hostname a member record keeps.
pub(super) fn hostname(given: &str) -> String {
    let mut hostname = given.to_string();
    truncate(&mut hostname, HOSTNAME_LIMIT);
    hostname
}

/// The endpoints a member record keeps: the first few of a plausible length.
pub(super) fn endpoints(given: &[String]) -> Vec<String> {
    given
        .iter()
        .filter(|e| e.len() <= ENDPOINT_LIMIT)
        .take(ENDPOINTS_LIMIT)
        .cloned()
        .collect()
}

impl LedgerState {
    /// Makes room for a new member record when the ledger holds [`MAX_MEMBERS`]: drops the
    /// record of the member expired longest ago whose role does not bind it (its address stays
    /// remembered, as a removed member's does). False when every record is live or bound.
    pub(super) fn room_for_member(&mut self, peer: &PeerKey) -> bool {
        if self.members.contains_key(peer) || self.members.len() < MAX_MEMBERS {
            return true;
        }
        let oldest = self
            .members
            .iter()
            .filter(|(_, m)| m.lease == LeaseState::Expired && !m.is_bound())
            .min_by_key(|(key, m)| (m.renewed_at, *key))
            .map(|(key, _)| key.clone());
        match oldest {
            Some(oldest) => {
                self.release(&oldest);
                self.members.remove(&oldest);
                true
            }
            None => false,
        }
    }

    /// Keeps the remembered addresses within [`MAX_REMEMBERED`], dropping those of PeerIds that
    /// are no member (the first in key order, so every replica drops the same).
    pub(super) fn forget_remembered(&mut self) {
        while self.previous.len() > MAX_REMEMBERED {
            let gone = self
                .previous
                .keys()
                .find(|key| !self.members.contains_key(*key))
                .cloned();
            match gone {
                Some(gone) => self.previous.remove(&gone),
                None => break,
            };
        }
    }

    /// Whether the deny list has room for `peer`.
    pub(super) fn room_to_deny(&self, peer: &PeerKey) -> bool {
        self.deny.contains(peer) || self.deny.len() < MAX_DENIED
    }

    /// Whether the reservations have room for one of `address`.
    pub(super) fn room_to_reserve(&self, address: &std::net::Ipv4Addr) -> bool {
        self.reservations.contains_key(address) || self.reservations.len() < MAX_RESERVATIONS
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{join, pool, run};
    use super::super::{Command, Member, Outcome};
    use super::*;

    /// A state holding `count` live members `p00000`, `p00001`, … renewed at 100, 101, …,
    /// filled directly: joining thousands through commands takes half a minute in a debug build.
    fn crowded(count: usize) -> LedgerState {
        let mut state = LedgerState::new("10.0.0.0/8".parse().unwrap());
        run(&mut state, &[join("model", 0)]);
        state.release(&"model".to_string());
        let mut model = state.members.remove("model").unwrap();
        state.previous.clear();
        model.role = None;
        for i in 0..count {
            model.renewed_at = 100 + i as u64;
            state.members.insert(format!("p{i:05}"), model.clone());
        }
        state
    }

    #[test]
    fn at_the_cap_a_new_member_takes_the_place_of_the_one_expired_longest_ago() {
        let mut state = crowded(MAX_MEMBERS);
        assert_eq!(run(&mut state, &[join("new", 1)]), [Outcome::MembersFull]);
        assert!(!state.members().contains_key("new"));
        run(
            &mut state,
            &[
                Command::Expire {
                    peer: "p00007".into(),
                },
                Command::Expire {
                    peer: "p00003".into(),
                },
            ],
        );
        assert!(matches!(
            run(&mut state, &[join("new", 1)])[..],
            [Outcome::Joined { .. }]
        ));
        assert_eq!(state.members().len(), MAX_MEMBERS);
        assert!(
            !state.members().contains_key("p00003"),
            "p00003 renewed before p00007 and goes first"
        );
        assert!(state.members().contains_key("p00007"));
        assert!(
            matches!(
                run(&mut state, &[join("p00007", 5)])[..],
                [Outcome::Joined { .. }]
            ),
            "a member already recorded rejoins at the cap"
        );
        state.check_addresses().unwrap();
    }

    #[test]
    fn a_member_record_keeps_a_bounded_hostname_and_endpoints() {
        let mut state = LedgerState::new(pool());
        let mut big = join("p", 1);
        let Command::Join {
            hostname,
            endpoints,
            ..
        } = &mut big
        else {
            unreachable!("join makes a Join")
        };
        *hostname = "é".repeat(HOSTNAME_LIMIT);
        *endpoints = vec!["x".repeat(ENDPOINT_LIMIT + 1)];
        endpoints.extend((0..20).map(|i| format!("10.0.0.{i}:51820")));
        run(&mut state, &[big]);
        let member: &Member = &state.members()["p"];
        assert!(member.hostname.len() <= HOSTNAME_LIMIT);
        assert!(member.hostname.chars().all(|c| c == 'é'));
        assert_eq!(member.endpoints.len(), ENDPOINTS_LIMIT);
        assert_eq!(member.endpoints[0], "10.0.0.0:51820");
    }

    #[test]
    fn the_deny_list_reservations_and_remembered_addresses_are_bounded() {
        let mut state = LedgerState::new("10.0.0.0/8".parse().unwrap());
        let denies: Vec<Command> = (0..=MAX_DENIED)
            .map(|i| Command::Deny {
                peer: format!("d{i}"),
            })
            .collect();
        let outcomes = run(&mut state, &denies);
        assert_eq!(outcomes[MAX_DENIED], Outcome::ListFull);
        assert_eq!(state.denied().len(), MAX_DENIED);
        let long = Command::Deny {
            peer: "x".repeat(PEER_KEY_LIMIT + 1),
        };
        assert_eq!(run(&mut state, &[long]), [Outcome::UnknownMember]);

        let reservations: Vec<Command> = (0..=MAX_RESERVATIONS as u32)
            .map(|i| Command::Reserve {
                peer: "r".into(),
                address: std::net::Ipv4Addr::from(
                    u32::from(std::net::Ipv4Addr::new(10, 1, 0, 1)) + i,
                ),
            })
            .collect();
        let outcomes = run(&mut state, &reservations);
        assert_eq!(outcomes[MAX_RESERVATIONS], Outcome::ListFull);
        assert_eq!(state.reservations().len(), MAX_RESERVATIONS);

        let mut state = crowded(3);
        for i in 0..MAX_REMEMBERED {
            state
                .previous
                .insert(format!("gone{i:05}"), std::net::Ipv4Addr::new(10, 9, 0, 1));
        }
        run(
            &mut state,
            &[
                join("newcomer", 1),
                Command::Leave {
                    peer: "newcomer".into(),
                },
                join("p00001", 2),
            ],
        );
        assert!(state.previous.len() <= MAX_REMEMBERED);
        assert!(
            state.previous.contains_key("p00001"),
            "a member's own address is not forgotten"
        );
        state.check_addresses().unwrap();
    }
}
