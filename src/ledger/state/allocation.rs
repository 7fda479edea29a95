//! Overlay address allocation from the pool: the lowest free host address, static reservations
//! honoured, a member's previous address offered back when it returns, and exhaustion an
//! explicit outcome. An address stays with the member that held it last while the pool has
//! others to give. No address is ever held by two members: `holders` is the one map from
//! address to holder, and every change goes through [`LedgerState::hold`] and
//! [`LedgerState::release`].

use std::collections::{HashMap, HashSet};
use std::net::Ipv4Addr;

use super::{LeaseState, LedgerState, Outcome, PeerKey};

impl LedgerState {
    /// The address a (re)joining member gets: the one it asked for, else its reservation, else
    /// its previous one, else the lowest free one. An address another member held last is
    /// never granted on request and goes to a newcomer only when no free address is left that
    /// nobody held: so a member cannot take another's address by having it removed and
    /// asking for it, and traffic still addressed to a departed member does not reach a
    /// stranger while the pool has room. `None` when the pool is exhausted.
    pub(super) fn choose_address(
        &self,
        peer: &PeerKey,
        requested: Option<Ipv4Addr>,
    ) -> Option<Ipv4Addr> {
        let others_last: HashSet<Ipv4Addr> = self
            .previous
            .iter()
            .filter(|(holder, _)| *holder != peer)
            .map(|(_, address)| *address)
            .collect();
        let reserved = self
            .reservations
            .iter()
            .find(|(_, owner)| *owner == peer)
            .map(|(address, _)| *address);
        let requested = requested.filter(|address| !others_last.contains(address));
        [requested, reserved, self.previous.get(peer).copied()]
            .into_iter()
            .flatten()
            .find(|address| self.is_free_for(*address, peer))
            .or_else(|| {
                self.pool
                    .hosts()
                    .find(|a| !others_last.contains(a) && self.is_free_for(*a, peer))
            })
            .or_else(|| self.pool.hosts().find(|a| self.is_free_for(*a, peer)))
    }

    fn is_free_for(&self, address: Ipv4Addr, peer: &PeerKey) -> bool {
        self.is_usable(address)
            && !self.holders.contains_key(&address)
            && self
                .reservations
                .get(&address)
                .is_none_or(|owner| owner == peer)
    }

    /// Whether `address` is a host address of the pool (network and broadcast excluded for
    /// pools of /30 and wider).
    fn is_usable(&self, address: Ipv4Addr) -> bool {
        self.pool.contains(&address)
            && (self.pool.prefix_len() >= 31
                || (address != self.pool.network() && address != self.pool.broadcast()))
    }

    /// Records `peer` as the holder of `address` (remembered for a later rejoin).
    pub(super) fn hold(&mut self, peer: &PeerKey, address: Ipv4Addr) {
        self.holders.insert(address, peer.clone());
        self.previous.insert(peer.clone(), address);
    }

    pub(super) fn reserve(&mut self, peer: &PeerKey, address: Ipv4Addr) -> Outcome {
        if !super::bounds::plausible_peer(peer) {
            return Outcome::UnknownMember;
        }
        if !self.is_usable(address) {
            return Outcome::OutsidePool;
        }
        let held_by_other = self.holders.get(&address).is_some_and(|h| h != peer);
        let reserved_by_other = self.reservations.get(&address).is_some_and(|o| o != peer);
        if held_by_other || reserved_by_other {
            return Outcome::AddressTaken;
        }
        if !self.room_to_reserve(&address) {
            return Outcome::ListFull;
        }
        self.reservations.insert(address, peer.clone());
        Outcome::Done
    }

    /// Frees the member's address (remembering it for a rejoin).
    pub(super) fn release(&mut self, peer: &PeerKey) {
        if let Some(address) = self.members.get_mut(peer).and_then(|m| m.address.take()) {
            self.holders.remove(&address);
            self.previous.insert(peer.clone(), address);
        }
    }

    /// Checks what allocation promises, whatever commands were applied: every address held is
    /// a usable host of the pool, no two members hold one, a reserved address is held only by
    /// the member it is reserved for, and a member whose lease expired keeps no address unless
    /// a deployed role binds it, and the index of holders agrees. The property tests and the fuzz targets ([`crate::fuzz`]) run
    /// it after every command; the error names the broken promise.
    pub fn check_addresses(&self) -> Result<(), String> {
        let pool = self.pool;
        let mut holders: HashMap<Ipv4Addr, &str> = HashMap::new();
        for (peer, member) in &self.members {
            if member.lease == LeaseState::Expired && !member.is_bound() && member.address.is_some()
            {
                return Err(format!(
                    "{peer} keeps an address after its lease expired without a bound role"
                ));
            }
            let Some(address) = member.address else {
                continue;
            };
            if !self.is_usable(address) {
                return Err(format!("{peer} holds {address}, no usable host of {pool}"));
            }
            if let Some(other) = holders.insert(address, peer) {
                return Err(format!("{address} is held by both {other} and {peer}"));
            }
        }
        if holders.len() != self.holders.len()
            || self
                .holders
                .iter()
                .any(|(a, p)| holders.get(a) != Some(&p.as_str()))
        {
            return Err("the address index disagrees with the members' addresses".into());
        }
        for (address, owner) in &self.reservations {
            if let Some(holder) = holders.get(address).filter(|h| **h != owner.as_str()) {
                return Err(format!(
                    "{address} is reserved for {owner} but held by {holder}"
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::Command;
    use super::super::tests::{address, join, pool, run};
    use super::*;

    fn requesting(peer: &str, wanted: Ipv4Addr) -> Command {
        let mut command = join(peer, 1);
        if let Command::Join { requested, .. } = &mut command {
            *requested = Some(wanted);
        }
        command
    }

    #[test]
    fn members_get_the_lowest_free_addresses_in_order() {
        let mut state = LedgerState::new(pool());
        run(&mut state, &[join("a", 1), join("b", 1)]);
        assert_eq!(address(&state, "a"), Some(Ipv4Addr::new(10, 1, 0, 1)));
        assert_eq!(address(&state, "b"), Some(Ipv4Addr::new(10, 1, 0, 2)));
    }

    #[test]
    fn an_exhausted_pool_is_an_explicit_outcome_never_a_duplicate() {
        let mut state = LedgerState::new("10.1.0.0/30".parse().unwrap());
        let outcomes = run(&mut state, &[join("a", 1), join("b", 1), join("c", 1)]);
        assert_eq!(outcomes[2], Outcome::PoolExhausted);
        assert_eq!(address(&state, "c"), None);
    }

    #[test]
    fn a_freed_address_goes_to_a_newcomer_only_when_no_other_is_free() {
        let mut state = LedgerState::new(pool());
        run(
            &mut state,
            &[
                join("a", 1),
                join("b", 1),
                Command::Leave { peer: "a".into() },
                join("c", 2),
            ],
        );
        assert_eq!(address(&state, "c"), Some(Ipv4Addr::new(10, 1, 0, 3)));
        run(
            &mut state,
            &[join("d", 2), join("e", 2), join("f", 2), join("g", 2)],
        );
        assert_eq!(address(&state, "f"), Some(Ipv4Addr::new(10, 1, 0, 6)));
        assert_eq!(address(&state, "g"), Some(Ipv4Addr::new(10, 1, 0, 1)));
    }

    #[test]
    fn a_member_cannot_take_a_removed_members_address_by_asking_for_it() {
        let mut state = LedgerState::new(pool());
        let first = Ipv4Addr::new(10, 1, 0, 1);
        run(
            &mut state,
            &[
                join("master", 1),
                join("thief", 1),
                Command::Leave {
                    peer: "master".into(),
                },
                Command::Leave {
                    peer: "thief".into(),
                },
                requesting("thief", first),
            ],
        );
        assert_ne!(address(&state, "thief"), Some(first));
        run(&mut state, &[join("master", 2)]);
        assert_eq!(address(&state, "master"), Some(first));
    }

    #[test]
    fn a_requested_address_nobody_held_is_granted() {
        let mut state = LedgerState::new(pool());
        let wanted = Ipv4Addr::new(10, 1, 0, 5);
        run(&mut state, &[requesting("a", wanted)]);
        assert_eq!(address(&state, "a"), Some(wanted));
    }

    #[test]
    fn reservations_are_honoured_and_kept_from_others() {
        let mut state = LedgerState::new(pool());
        let reserved = Ipv4Addr::new(10, 1, 0, 1);
        let outcomes = run(
            &mut state,
            &[
                Command::Reserve {
                    peer: "b".into(),
                    address: reserved,
                },
                join("a", 1),
                join("b", 1),
            ],
        );
        assert_eq!(outcomes[0], Outcome::Done);
        assert_eq!(address(&state, "a"), Some(Ipv4Addr::new(10, 1, 0, 2)));
        assert_eq!(address(&state, "b"), Some(reserved));
        let outside = run(
            &mut state,
            &[Command::Reserve {
                peer: "c".into(),
                address: Ipv4Addr::new(10, 2, 0, 1),
            }],
        );
        assert_eq!(outside[0], Outcome::OutsidePool);
    }
}
