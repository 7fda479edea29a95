//! Which raft nodes run without this mesh's operator key, as the leader last heard from them.
//! A node restarted without `--operator-key` (or with another) keeps the raft seat it held, and
//! were it to lead it would take operator commands unchecked. So a leader that has a key asks
//! each raft node for its `Hello`, which names the key it runs with: at the start of its
//! leadership, whenever the node is admitted anew, every [`RECHECK`] (a restart need not show
//! as a new admission: the leader may keep the old connection until it times out), and every
//! [`RETRY`] while it does not answer (a node still opening its ledger answers nothing). One
//! that names another key, or none, may not hold a seat ([`super::seats`], unfit nodes); one
//! not known to run with the key since its admission keeps its seat but is not promoted.
//! Pure and time-injected; the autopilot asks and reports the answers.
//!
//! A liar can name the key anyway: this catches a node restarted without the key by mistake,
//! not a hostile one. The cost is one `Hello` per raft node every [`RECHECK`] on the leader.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

/// How often the leader asks a raft node again that answered.
pub const RECHECK: Duration = Duration::from_secs(300);
/// How soon the leader asks again a raft node that did not answer.
pub const RETRY: Duration = Duration::from_secs(10);

/// One raft node the leader asked.
#[derive(Debug)]
struct Asked {
    /// The admission it was asked in.
    admitted: u64,
    /// When it is to be asked again.
    due: Instant,
}

/// The raft nodes asked since they were admitted, and what they answered.
#[derive(Debug, Default)]
pub struct Keyed {
    asked: BTreeMap<String, Asked>,
    keyless: BTreeSet<String>,
    keyed: BTreeSet<String>,
}

impl Keyed {
    /// The raft nodes of `reachable` (each PeerId with when it was admitted) to ask at `now`,
    /// each then counted as asked until [`RETRY`] has passed without an answer. Nodes no longer
    /// reachable, or admitted anew, are forgotten, answers included.
    pub fn due(&mut self, now: Instant, reachable: &[(String, u64)]) -> Vec<String> {
        let admitted = |peer: &String| reachable.iter().find(|(p, _)| p == peer).map(|(_, a)| *a);
        self.asked
            .retain(|peer, asked| admitted(peer) == Some(asked.admitted));
        self.keyless.retain(|peer| self.asked.contains_key(peer));
        self.keyed.retain(|peer| self.asked.contains_key(peer));
        let due: Vec<(String, u64)> = reachable
            .iter()
            .filter(|(peer, _)| self.asked.get(peer).is_none_or(|asked| now >= asked.due))
            .cloned()
            .collect();
        for (peer, admitted) in &due {
            let due = now + RETRY;
            self.asked.insert(
                peer.clone(),
                Asked {
                    admitted: *admitted,
                    due,
                },
            );
        }
        due.into_iter().map(|(peer, _)| peer).collect()
    }

    /// `peer` answered at `now`: with another operator key than this leader's, or none, when
    /// `differs`. An answer to a question this table no longer holds (the node was admitted
    /// anew, or the leadership started again) counts for nothing.
    pub fn answered(&mut self, now: Instant, peer: &str, differs: bool) {
        let Some(asked) = self.asked.get_mut(peer) else {
            return;
        };
        asked.due = now + RECHECK;
        if differs {
            self.keyless.insert(peer.to_string());
            self.keyed.remove(peer);
        } else {
            self.keyless.remove(peer);
            self.keyed.insert(peer.to_string());
        }
    }

    /// Whether `peer` last answered without this leader's operator key: unfit for a seat.
    pub fn keyless(&self, peer: &str) -> bool {
        self.keyless.contains(peer)
    }

    /// Whether `peer` answered with this leader's operator key since it was admitted: it may
    /// be promoted.
    pub fn keyed(&self, peer: &str) -> bool {
        self.keyed.contains(peer)
    }

    /// Forgets everything: a new leadership asks every raft node again.
    pub fn clear(&mut self) {
        self.asked.clear();
        self.keyless.clear();
        self.keyed.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peers(names: &[&str]) -> Vec<String> {
        names.iter().map(|n| n.to_string()).collect()
    }

    /// Each of `names` admitted at second 1, or at `at` for the first.
    fn admitted(names: &[&str], at: u64) -> Vec<(String, u64)> {
        names
            .iter()
            .enumerate()
            .map(|(i, n)| (n.to_string(), if i == 0 { at } else { 1 }))
            .collect()
    }

    #[test]
    fn a_raft_node_is_asked_per_admission_and_interval_and_keyless_until_it_answers_otherwise() {
        let start = Instant::now();
        let at = |secs| start + Duration::from_secs(secs);
        let mut keyed = Keyed::default();
        let both = admitted(&["a", "b"], 1);
        assert_eq!(keyed.due(at(0), &both), peers(&["a", "b"]));
        assert!(
            keyed.due(at(1), &both).is_empty(),
            "asked, awaiting answers"
        );
        keyed.answered(at(1), "a", true);
        keyed.answered(at(1), "b", false);
        assert!(keyed.keyless("a") && !keyed.keyed("a"));
        assert!(!keyed.keyless("b") && keyed.keyed("b"));
        // Answered: asked again only after the recheck interval.
        assert!(keyed.due(at(30), &both).is_empty());
        assert_eq!(keyed.due(at(1) + RECHECK, &both), peers(&["a", "b"]));
        keyed.answered(at(302), "a", false);
        assert!(!keyed.keyless("a") && keyed.keyed("a"));
        // "a" goes away (a restart): forgotten, asked again once back.
        assert_eq!(
            keyed.due(at(303), &admitted(&["b"], 1)),
            Vec::<String>::new()
        );
        assert!(
            !keyed.keyless("a") && !keyed.keyed("a"),
            "unknown while away"
        );
        assert_eq!(
            keyed.due(at(304), &admitted(&["a", "b"], 304)),
            peers(&["a"])
        );
        keyed.answered(at(304), "b", false);
        // Admitted anew with no gap seen: asked again, unknown meanwhile.
        keyed.answered(at(305), "a", true);
        assert_eq!(
            keyed.due(at(306), &admitted(&["a", "b"], 306)),
            peers(&["a"])
        );
        assert!(!keyed.keyless("a"));
        // No answer: asked again after the retry interval, keeping its seat meanwhile.
        assert!(
            keyed
                .due(at(306) + RETRY / 2, &admitted(&["a", "b"], 306))
                .is_empty()
        );
        assert_eq!(
            keyed.due(at(306) + RETRY, &admitted(&["a", "b"], 306)),
            peers(&["a"])
        );
        // An answer to a question asked before the leadership started again counts for nothing.
        keyed.clear();
        keyed.answered(at(400), "a", true);
        assert!(!keyed.keyless("a"));
        assert_eq!(keyed.due(at(400), &admitted(&["a"], 306)), peers(&["a"]));
    }
}
