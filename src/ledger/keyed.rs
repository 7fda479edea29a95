//! Which raft nodes run without this mesh's operator key, as the leader last heard from them. A
//! node restarted without `--operator-key` (or with another) keeps the raft seat it held, and were
//! it to lead it would take operator commands unchecked. So the leader asks each raft node for
//! its `Hello`, which names the key it runs with: at the start of its leadership,
//! whenever the node is admitted anew, every [`RECHECK`] (a restart shows as a new admission,
//! since the new process challenges the leader afresh,
//! `crate::p2p::peers::PeerTable::admitted_again`; the recheck is for what that misses), and every
//! [`RETRY`] while it does not answer (a node still opening its ledger answers nothing). A direct
//! join names the key as a `Hello` would, and counts as the answer for its admission
//! ([`Keyed::declared`]), so a joiner with the key is promoted once caught up. One that names
//! another key, or none, may not hold a seat ([`super::seats`], unfit nodes); one not known to run
//! with the key since its admission keeps a voter's seat, and as a learner is not promoted and
//! loses its seat after the stale-learner timeout. A leader started without a key asks too, and
//! checks operator commands against the key more than half of its voters answered with in this
//! leadership ([`Keyed::key_of_most`]), which it then holds the others to as its own. Pure and
//! time-injected; the autopilot asks and reports the answers.
//!
//! A liar can name the key anyway: this catches a node restarted without the key by mistake,
//! not a hostile one. The cost is one `Hello` per raft node every [`RECHECK`] on the leader,
//! and one per new admission: a node can make those at most once a second, and a leader behind
//! a token rotation sees one every 5 s from each raft node ahead of it (their re-checks). What
//! it keeps is bounded by the raft membership: the keys answered are kept only for nodes it
//! holds ([`Keyed::keep_keys_of`]), each at most [`MAX_KEY_TEXT`] characters.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

/// How often the leader asks a raft node again that answered.
pub const RECHECK: Duration = Duration::from_secs(300);
/// How soon the leader asks again a raft node that did not answer.
pub const RETRY: Duration = Duration::from_secs(10);
/// The longest key text kept from an answer: an operator key is 44 characters of base64, so a
/// longer one (a peer's word, up to a message's size) names no key.
pub const MAX_KEY_TEXT: usize = 64;

/// One raft node the leader asked.
#[derive(Debug)]
struct Asked {
    /// The admission it was asked in.
    admitted: u64,
    /// When it is to be asked again.
    due: Instant,
    /// The last question put to it: only its answer counts.
    question: u64,
}

/// The raft nodes asked since they were admitted, and what they answered.
#[derive(Debug, Default)]
pub struct Keyed {
    asked: BTreeMap<String, Asked>,
    keyless: BTreeSet<String>,
    keyed: BTreeSet<String>,
    /// The operator key each answered with (`None`: none), as it wrote it: kept for the whole
    /// leadership, replaced only by a later answer, so that a voter that restarts or drops
    /// out for a moment does not turn a keyless leader's check off ([`Keyed::key_of_most`]).
    keys: BTreeMap<String, Option<String>>,
    /// The key [`Keyed::key_of_most`] gave when last told ([`Keyed::adopted`]).
    adopted: Option<String>,
    /// The number of the next question, never reused (not even after [`Keyed::clear`]).
    questions: u64,
}

impl Keyed {
    /// The raft nodes of `reachable` (each PeerId with when it was admitted) to ask at `now`,
    /// each with the number of its question, then counted as asked until [`RETRY`] has passed
    /// without an answer. Nodes no longer reachable, or admitted anew, are forgotten, answers
    /// included.
    pub fn due(&mut self, now: Instant, reachable: &[(String, u64)]) -> Vec<(String, u64)> {
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
        due.into_iter()
            .map(|(peer, admitted)| {
                let question = self.ask(now, &peer, admitted);
                (peer, question)
            })
            .collect()
    }

    /// Puts a question to `peer`, admitted at `admitted`, at `now`: each node a round finds due,
    /// and a joiner whose join declared its key ([`Keyed::declared`]). Answers the question's
    /// number; only its answer counts from then on. Admitted anew since it last answered, its
    /// earlier answer is forgotten.
    pub fn ask(&mut self, now: Instant, peer: &str, admitted: u64) -> u64 {
        let question = self.questions;
        self.questions += 1;
        let asked = Asked {
            admitted,
            due: now + RETRY,
            question,
        };
        if let Some(earlier) = self.asked.insert(peer.to_string(), asked)
            && earlier.admitted != admitted
        {
            self.keyless.remove(peer);
            self.keyed.remove(peer);
        }
        question
    }

    /// `peer`, admitted at `admitted`, declared at `now` that it runs with operator key `key`:
    /// this leader's, or, when `differs`, another or none. In its join, which names the key as
    /// its `Hello` would. Counts as the answer to a question put then, so a joiner that runs
    /// with the key may be promoted at once.
    pub fn declared(
        &mut self,
        now: Instant,
        peer: &str,
        admitted: u64,
        differs: bool,
        key: Option<&str>,
    ) {
        let question = self.ask(now, peer, admitted);
        self.answered(now, peer, question, differs, key);
    }

    /// `peer` answered question `question` at `now` that it runs with operator key `key`: with
    /// another than this leader's, or none, when `differs`. An answer to any question but the
    /// last put to it (the node was admitted anew, or the leadership started again, since)
    /// counts for nothing.
    pub fn answered(
        &mut self,
        now: Instant,
        peer: &str,
        question: u64,
        differs: bool,
        key: Option<&str>,
    ) {
        let Some(asked) = self
            .asked
            .get_mut(peer)
            .filter(|asked| asked.question == question)
        else {
            return;
        };
        asked.due = now + RECHECK;
        let key = key.filter(|key| key.len() <= MAX_KEY_TEXT);
        self.keys.insert(peer.to_string(), key.map(str::to_string));
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

    /// The operator key more than half of a leader's `voters` (PeerIds, each once) run with,
    /// this leader (`me`) among them with its own key `own`, the others as they last answered
    /// in this leadership; `None` when no key has such a majority. A leader started without
    /// `--operator-key` checks operator commands against it ([`super::Ledger::authority`]).
    pub fn key_of_most<'a>(
        &'a self,
        voters: &[&str],
        me: &str,
        own: Option<&'a str>,
    ) -> Option<&'a str> {
        let key_of = |peer: &str| {
            if peer == me {
                own
            } else {
                self.keys.get(peer).and_then(|key| key.as_deref())
            }
        };
        let keys: Vec<&str> = voters.iter().filter_map(|peer| key_of(peer)).collect();
        keys.iter()
            .copied()
            .find(|key| keys.iter().filter(|k| *k == key).count() * 2 > voters.len())
    }

    /// Forgets the keys of nodes no longer in the raft membership (`seated`, PeerIds): what is
    /// kept stays as small as the membership, however many identities held a seat for a while.
    pub fn keep_keys_of(&mut self, seated: &[String]) {
        self.keys.retain(|peer, _| seated.contains(peer));
    }

    /// Tells the key the leader now checks against: true when it differs from the one told
    /// last, so the change is logged once.
    pub fn adopted(&mut self, key: Option<&str>) -> bool {
        if self.adopted.as_deref() == key {
            return false;
        }
        self.adopted = key.map(str::to_string);
        true
    }

    /// Forgets everything: a new leadership asks every raft node again.
    pub fn clear(&mut self) {
        self.asked.clear();
        self.keyless.clear();
        self.keyed.clear();
        self.keys.clear();
        self.adopted = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each of `names` admitted at second 1, or at `at` for the first.
    fn admitted(names: &[&str], at: u64) -> Vec<(String, u64)> {
        names
            .iter()
            .enumerate()
            .map(|(i, n)| (n.to_string(), if i == 0 { at } else { 1 }))
            .collect()
    }

    /// The PeerIds of questions.
    fn asked(questions: &[(String, u64)]) -> Vec<&str> {
        questions.iter().map(|(peer, _)| peer.as_str()).collect()
    }

    /// The number of the question put to `peer` among `questions`.
    fn number(questions: &[(String, u64)], peer: &str) -> u64 {
        questions.iter().find(|(p, _)| p == peer).unwrap().1
    }

    #[test]
    fn a_raft_node_is_asked_per_admission_and_interval_and_keyless_until_it_answers_otherwise() {
        let start = Instant::now();
        let at = |secs| start + Duration::from_secs(secs);
        let mut keyed = Keyed::default();
        let both = admitted(&["a", "b"], 1);
        let first = keyed.due(at(0), &both);
        assert_eq!(asked(&first), ["a", "b"]);
        assert!(keyed.due(at(1), &both).is_empty(), "awaiting answers");
        keyed.answered(at(1), "a", number(&first, "a"), true, None);
        keyed.answered(at(1), "b", number(&first, "b"), false, Some("k"));
        assert!(keyed.keyless("a") && !keyed.keyed("a"));
        assert!(!keyed.keyless("b") && keyed.keyed("b"));
        // Answered: asked again only after the recheck interval.
        assert!(keyed.due(at(30), &both).is_empty());
        let again = keyed.due(at(1) + RECHECK, &both);
        assert_eq!(asked(&again), ["a", "b"]);
        keyed.answered(at(302), "a", number(&again, "a"), false, Some("k"));
        keyed.answered(at(302), "b", number(&again, "b"), false, Some("k"));
        assert!(!keyed.keyless("a") && keyed.keyed("a"));
        // "a" goes away (a restart): forgotten, asked again once back.
        assert!(keyed.due(at(303), &admitted(&["b"], 1)).is_empty());
        assert!(
            !keyed.keyless("a") && !keyed.keyed("a"),
            "unknown while away"
        );
        let back = keyed.due(at(304), &admitted(&["a", "b"], 304));
        assert_eq!(asked(&back), ["a"]);
        // Admitted anew with no gap seen: asked again, unknown meanwhile, and the answer the
        // earlier process gives late counts for nothing.
        let anew = keyed.due(at(306), &admitted(&["a", "b"], 306));
        assert_eq!(asked(&anew), ["a"]);
        keyed.answered(at(306), "a", number(&back, "a"), false, Some("k"));
        assert!(!keyed.keyed("a") && !keyed.keyless("a"));
        // No answer: asked again after the retry interval, keeping its seat meanwhile.
        let still = admitted(&["a", "b"], 306);
        assert!(keyed.due(at(306) + RETRY / 2, &still).is_empty());
        let retried = keyed.due(at(306) + RETRY, &still);
        assert_eq!(asked(&retried), ["a"]);
        // After the leadership starts again, an answer to a question of before counts for
        // nothing, though the node is asked again at once.
        keyed.clear();
        let fresh = keyed.due(at(400), &admitted(&["a"], 306));
        keyed.answered(at(400), "a", number(&retried, "a"), true, None);
        assert!(!keyed.keyless("a"));
        keyed.answered(at(400), "a", number(&fresh, "a"), true, None);
        assert!(keyed.keyless("a"));
    }

    #[test]
    fn a_question_put_before_its_round_replaces_the_last_and_a_new_admission_forgets() {
        let start = Instant::now();
        let at = |secs| start + Duration::from_secs(secs);
        let mut keyed = Keyed::default();
        let round = keyed.due(at(0), &admitted(&["a"], 1));
        let now = keyed.ask(at(1), "a", 1);
        keyed.answered(at(1), "a", number(&round, "a"), false, Some("k"));
        assert!(!keyed.keyed("a"), "the round's question was replaced");
        keyed.answered(at(1), "a", now, false, Some("k"));
        assert!(keyed.keyed("a"));
        // Asked again in the same admission: its answer stands until the new one comes.
        let again = keyed.ask(at(2), "a", 1);
        assert!(keyed.keyed("a"));
        // Its round waits for the retry interval from the question.
        assert!(keyed.due(at(3), &admitted(&["a"], 1)).is_empty());
        keyed.answered(at(3), "a", again, true, None);
        assert!(keyed.keyless("a") && !keyed.keyed("a"));
        // Asked under a new admission: the earlier answer is forgotten.
        keyed.ask(at(4), "a", 4);
        assert!(!keyed.keyless("a") && !keyed.keyed("a"));
        // A join declares the key: answered, and not asked again before the recheck.
        keyed.declared(at(5), "a", 4, false, Some("k"));
        assert!(keyed.keyed("a"));
        assert!(keyed.due(at(5) + RETRY, &admitted(&["a"], 4)).is_empty());
        assert_eq!(
            asked(&keyed.due(at(5) + RECHECK, &admitted(&["a"], 4))),
            ["a"]
        );
    }

    #[test]
    fn the_key_of_most_voters_is_the_one_more_than_half_of_them_answered_with() {
        let start = Instant::now();
        let mut keyed = Keyed::default();
        let voters = ["me", "a", "b", "c", "d"];
        let asked = keyed.due(start, &admitted(&["a", "b", "c", "d"], 1));
        let answer = |keyed: &mut Keyed, peer: &str, key: Option<&str>| {
            keyed.answered(start, peer, number(&asked, peer), false, key);
        };
        assert_eq!(
            keyed.key_of_most(&voters, "me", None),
            None,
            "nobody answered"
        );
        answer(&mut keyed, "a", Some("k"));
        answer(&mut keyed, "b", Some("k"));
        assert_eq!(keyed.key_of_most(&voters, "me", None), None, "two of five");
        answer(&mut keyed, "c", Some("other"));
        assert_eq!(keyed.key_of_most(&voters, "me", None), None);
        assert_eq!(
            keyed.key_of_most(&voters, "me", Some("k")),
            Some("k"),
            "with its own"
        );
        answer(&mut keyed, "d", Some("k"));
        assert_eq!(
            keyed.key_of_most(&voters, "me", None),
            Some("k"),
            "three of five"
        );
        assert_eq!(
            keyed.key_of_most(&["me", "a"], "me", None),
            None,
            "one of two"
        );
        assert_eq!(keyed.key_of_most(&["me", "a", "b"], "me", None), Some("k"));
        // A voter admitted anew, or gone from the peers for a moment, keeps its answer until it
        // answers again.
        keyed.ask(start, "d", 2);
        assert!(keyed.due(start, &admitted(&["a", "b", "c"], 1)).is_empty());
        assert_eq!(keyed.key_of_most(&voters, "me", None), Some("k"));
        // Answering without a key, or forgotten with a new leadership, counts for none.
        let again = keyed.ask(start, "d", 2);
        keyed.answered(start, "d", again, false, None);
        assert_eq!(keyed.key_of_most(&voters, "me", None), None);
        assert!(keyed.adopted(Some("k")) && !keyed.adopted(Some("k")));
        assert!(keyed.adopted(None));
        // A key text too long to be one names none; a node out of the membership is forgotten.
        let long = "k".repeat(MAX_KEY_TEXT + 1);
        let again = keyed.ask(start, "d", 2);
        keyed.answered(start, "d", again, false, Some(&long));
        let again = keyed.ask(start, "c", 1);
        keyed.answered(start, "c", again, false, Some(&long));
        assert_eq!(keyed.key_of_most(&voters, "me", None), None);
        assert_eq!(keyed.key_of_most(&["me", "a", "b"], "me", None), Some("k"));
        keyed.keep_keys_of(&["a".to_string()]);
        assert_eq!(keyed.key_of_most(&["me", "a", "b"], "me", None), None);
        keyed.clear();
        assert_eq!(keyed.key_of_most(&["me", "a", "b"], "me", None), None);
    }
}
