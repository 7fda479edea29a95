//! The peers this node has heard of since it started: found by mDNS or connected to, admitted
//! or not yet. A node outside any cluster waits until no new one turns up and forms a cluster
//! only when it is the lowest of them ([`crate::ledger::formation`]): on a busy machine
//! admission lags discovery by seconds, and a node that counted only its admitted peers would
//! form a cluster beside one a lower peer is forming. Anyone on the LAN can announce PeerIds,
//! so at most [`MAX_HEARD`] are remembered; past that every announcement counts as new (the
//! node then listens the whole formation wait) and the lowest is still kept. A peer refused
//! admission on evidence (another network's token, no weft) is no member and never the lowest:
//! it would hold formation back to no purpose. The peers heard of that are neither admitted nor
//! refused yet are counted too: while there are any, the mesh is still finding itself, and a
//! founder holds its control plane back ([`crate::ledger::settle`]). Pure.

use std::collections::HashSet;

use libp2p::PeerId;

/// Peers remembered at most.
pub const MAX_HEARD: usize = 1024;

/// What the autopilot reads: how many peers were heard of, the lowest PeerId among them (in
/// its text form, the order formation compares by), and how many of them are still unresolved:
/// neither admitted nor refused (the mesh is still finding itself, [`crate::ledger::settle`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Heard {
    pub count: usize,
    pub lowest: Option<String>,
    pub unresolved: usize,
}

/// The peers heard of.
#[derive(Debug, Default)]
pub struct HeardOf {
    peers: HashSet<PeerId>,
    /// Peers refused admission on evidence, at most [`MAX_HEARD`].
    refused: HashSet<PeerId>,
    /// Peers admitted, at most [`MAX_HEARD`].
    admitted: HashSet<PeerId>,
    summary: Heard,
}

impl HeardOf {
    /// `peer` was found or connected; true when that changes the summary.
    pub fn note(&mut self, peer: PeerId) -> bool {
        if self.peers.len() < MAX_HEARD {
            if !self.peers.insert(peer) {
                return false;
            }
            self.summary.count = self.peers.len();
        } else {
            // Full: whether it was heard before is not known, so it is news.
            self.summary.count = self.summary.count.saturating_add(1);
        }
        self.count_unresolved();
        if self.refused.contains(&peer) {
            return true;
        }
        let text = peer.to_string();
        if self.summary.lowest.as_ref().is_none_or(|low| text < *low) {
            self.summary.lowest = Some(text);
        }
        true
    }

    /// Counts the peers heard of that are neither admitted nor refused; true when that changed.
    fn count_unresolved(&mut self) -> bool {
        let unresolved = self
            .peers
            .iter()
            .filter(|p| !self.admitted.contains(p) && !self.refused.contains(p))
            .count();
        let changed = unresolved != self.summary.unresolved;
        self.summary.unresolved = unresolved;
        changed
    }

    /// `peer` was refused admission on evidence: it is no longer the lowest. True when that
    /// changes the summary. Past [`MAX_HEARD`] refusals it is not remembered, so it may become
    /// the lowest again when heard of again.
    pub fn refused(&mut self, peer: PeerId) -> bool {
        if self.refused.len() < MAX_HEARD && !self.refused.insert(peer) {
            return false;
        }
        self.admitted.remove(&peer);
        let unresolved = self.count_unresolved();
        let text = peer.to_string();
        if self.summary.lowest.as_ref() != Some(&text) {
            return unresolved;
        }
        self.summary.lowest = self
            .peers
            .iter()
            .filter(|p| **p != peer && !self.refused.contains(p))
            .map(ToString::to_string)
            .min();
        true
    }

    /// `peer` was admitted after all (a refusal is not for ever: a member refused during a
    /// token rotation may come back): it may be the lowest again. True when that changes the
    /// summary.
    pub fn admitted(&mut self, peer: PeerId) -> bool {
        if self.admitted.len() < MAX_HEARD {
            self.admitted.insert(peer);
        }
        let was_refused = self.refused.remove(&peer);
        let unresolved = self.count_unresolved();
        if !was_refused || !self.peers.contains(&peer) {
            return unresolved;
        }
        let text = peer.to_string();
        if self.summary.lowest.as_ref().is_none_or(|low| text < *low) {
            self.summary.lowest = Some(text);
            return true;
        }
        unresolved
    }

    pub fn summary(&self) -> &Heard {
        &self.summary
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_each_peer_once_and_keeps_the_lowest() {
        let mut heard = HeardOf::default();
        let peers: Vec<PeerId> = (0..5).map(|_| PeerId::random()).collect();
        for peer in peers.iter().chain(&peers) {
            heard.note(*peer);
        }
        let lowest = peers.iter().map(|p| p.to_string()).min();
        assert_eq!(
            heard.summary(),
            &Heard {
                count: 5,
                lowest: lowest.clone(),
                unresolved: 5,
            }
        );
        assert!(!heard.note(peers[0]), "heard again: no change");
    }

    #[test]
    fn a_peer_refused_admission_is_never_the_lowest() {
        let mut heard = HeardOf::default();
        let mut peers: Vec<PeerId> = (0..4).map(|_| PeerId::random()).collect();
        peers.sort_by_key(ToString::to_string);
        for peer in &peers[1..] {
            heard.note(*peer);
        }
        heard.refused(peers[3]);
        assert_eq!(
            heard.summary().lowest,
            Some(peers[1].to_string()),
            "not the lowest: the lowest stays"
        );
        assert!(heard.refused(peers[1]));
        assert_eq!(heard.summary().lowest, Some(peers[2].to_string()));
        assert!(heard.note(peers[0]));
        assert_eq!(heard.summary().lowest, Some(peers[0].to_string()));
        heard.refused(peers[0]);
        heard.refused(peers[2]);
        assert_eq!(
            heard.summary().lowest,
            None,
            "every peer heard of was refused"
        );
        heard.note(peers[1]);
        assert_eq!(heard.summary().lowest, None, "heard again, still refused");
        assert_eq!(heard.summary().count, 4);
        assert!(heard.admitted(peers[2]), "admitted after all");
        assert_eq!(heard.summary().lowest, Some(peers[2].to_string()));
        assert!(!heard.admitted(peers[3]), "higher: no change");
        assert!(heard.admitted(peers[0]));
        assert_eq!(heard.summary().lowest, Some(peers[0].to_string()));
    }

    #[test]
    fn a_peer_is_unresolved_until_admitted_or_refused() {
        let mut heard = HeardOf::default();
        let peers: Vec<PeerId> = (0..3).map(|_| PeerId::random()).collect();
        for peer in &peers {
            heard.note(*peer);
        }
        assert_eq!(heard.summary().unresolved, 3);
        assert!(heard.admitted(peers[0]));
        assert!(heard.refused(peers[1]));
        assert_eq!(heard.summary().unresolved, 1);
        assert!(!heard.admitted(peers[0]), "admitted again: no change");
        // Admitted before it was heard of (an inbound connection noted after): resolved at once.
        let early = PeerId::random();
        heard.admitted(early);
        heard.note(early);
        assert_eq!(heard.summary().unresolved, 1);
        assert!(heard.admitted(peers[2]));
        assert_eq!(heard.summary().unresolved, 0);
    }

    #[test]
    fn what_the_lan_can_make_it_remember_is_bounded_and_a_full_set_still_hears() {
        let mut heard = HeardOf::default();
        for _ in 0..MAX_HEARD {
            heard.note(PeerId::random());
        }
        assert_eq!(heard.peers.len(), MAX_HEARD);
        // Past the bound nothing more is remembered, but each announcement still moves the
        // count (formation keeps listening) and a lower PeerId still becomes the lowest.
        let before = heard.summary().lowest.clone().unwrap();
        let low = (0..64)
            .map(|_| PeerId::random())
            .min_by_key(|p| p.to_string())
            .unwrap();
        assert!(heard.note(low));
        assert!(heard.note(low));
        assert_eq!(heard.peers.len(), MAX_HEARD);
        assert_eq!(heard.summary().count, MAX_HEARD + 2);
        assert_eq!(
            heard.summary().lowest,
            Some(before.min(low.to_string())),
            "a lower PeerId heard past the bound is still the lowest"
        );
    }
}
