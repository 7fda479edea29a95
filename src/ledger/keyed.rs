//! Which raft nodes run without this mesh's operator key, as the leader last heard from them.
//! A node restarted without `--operator-key` (or with another) keeps the raft seat it held, and
//! were it to lead it would take operator commands unchecked. So a leader that has a key asks
//! each raft node for its `Hello`, which names the key it runs with, once each time the node is
//! admitted again (a restart) and once at the start of its leadership; one that names another
//! key, or
//! none, may not hold a seat ([`super::seats`], unfit nodes) until it answers otherwise. Asked
//! once per connection, the check adds nothing to an idle mesh's traffic. A node that does not
//! answer counts as keyed, as before the check: a liar can name the key anyway, so this catches
//! a node restarted without the key by mistake, not a hostile one.

use std::collections::{BTreeMap, BTreeSet};

/// The raft nodes asked since they were last admitted, and those of them found keyless.
#[derive(Debug, Default)]
pub struct Keyed {
    /// Each node asked, with the admission it was asked in.
    asked: BTreeMap<String, u64>,
    keyless: BTreeSet<String>,
}

impl Keyed {
    /// The raft nodes of `reachable` (each PeerId with when it was admitted) to ask now: those
    /// not asked since that admission, counted as asked from now on. Nodes no longer reachable
    /// are forgotten, so that they are asked again once they are: a restart in between may have
    /// changed their key. (A restart within the second of the admission before it, while the
    /// leader saw no gap, goes unnoticed until the next one.)
    pub fn due(&mut self, reachable: &[(String, u64)]) -> Vec<String> {
        let admitted = |peer: &String| reachable.iter().find(|(p, _)| p == peer).map(|(_, a)| *a);
        self.asked
            .retain(|peer, asked| admitted(peer) == Some(*asked));
        self.keyless.retain(|peer| self.asked.contains_key(peer));
        let fresh: Vec<(String, u64)> = reachable
            .iter()
            .filter(|(peer, _)| !self.asked.contains_key(peer))
            .cloned()
            .collect();
        self.asked.extend(fresh.iter().cloned());
        fresh.into_iter().map(|(peer, _)| peer).collect()
    }

    /// `peer` answered: with another operator key than this leader's, or none, when `differs`.
    pub fn answered(&mut self, peer: &str, differs: bool) {
        if differs {
            self.keyless.insert(peer.to_string());
        } else {
            self.keyless.remove(peer);
        }
    }

    /// Whether `peer` last answered without this leader's operator key.
    pub fn keyless(&self, peer: &str) -> bool {
        self.keyless.contains(peer)
    }

    /// Forgets everything: a new leadership asks every raft node again.
    pub fn clear(&mut self) {
        self.asked.clear();
        self.keyless.clear();
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
    fn a_raft_node_is_asked_once_per_admission_and_keyless_until_it_answers_otherwise() {
        let mut keyed = Keyed::default();
        assert_eq!(keyed.due(&admitted(&["a", "b"], 1)), peers(&["a", "b"]));
        assert!(
            keyed.due(&admitted(&["a", "b"], 1)).is_empty(),
            "asked once"
        );
        keyed.answered("a", true);
        keyed.answered("b", false);
        assert!(keyed.keyless("a"));
        assert!(!keyed.keyless("b"));
        // "a" goes away (a restart): forgotten, asked again once back.
        assert!(keyed.due(&admitted(&["b"], 1)).is_empty());
        assert!(!keyed.keyless("a"), "unknown while away");
        assert_eq!(keyed.due(&admitted(&["a", "b"], 5)), peers(&["a"]));
        keyed.answered("a", false);
        assert!(!keyed.keyless("a"));
        // Admitted again with no gap seen (a quick restart): asked again, unknown meanwhile.
        keyed.answered("a", true);
        assert_eq!(keyed.due(&admitted(&["a", "b"], 9)), peers(&["a"]));
        assert!(!keyed.keyless("a"));
        // A node that does not answer counts as keyed, and is not asked again while admitted.
        assert_eq!(keyed.due(&admitted(&["a", "b", "c"], 9)), peers(&["c"]));
        assert!(!keyed.keyless("c"));
        assert!(keyed.due(&admitted(&["a", "b", "c"], 9)).is_empty());
        keyed.answered("c", true);
        keyed.clear();
        assert!(!keyed.keyless("c"));
        assert_eq!(keyed.due(&admitted(&["c"], 1)), peers(&["c"]));
    }
}
