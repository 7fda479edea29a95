//! Followers: members that are not raft members still hold the whole ledger. The leader
//! publishes every committed entry, with its raft index, on the sealed gossip topic (a
//! [`Feed`]); a follower applies them in index order, holds back entries that arrive early, and
//! when it stays behind the leader's index (a lost message, a gap after a leader change) fetches
//! the whole state from a voter (a [`Catchup`]) and goes on from there. So the leader replicates
//! to a handful of voters, whatever the size of the mesh.
//!
//! Any member can publish on the topic, and any member may be hostile, so a feed is taken only
//! from the leader it names (the gossip author, whose signature gossipsub checked), and only when
//! that leader is a voter the follower knows from a voter's catch-up or an earlier accepted feed.
//! A feed from a leader the follower does not know yet (an election among new voters) is not
//! applied: the follower asks a voter it knows for the state instead, which names the leader.
//!
//! [`Replica`] is the follower's copy and the pure rules above; [`crate::ledger::feed`] moves
//! the messages.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::raft::LedgerNode;
use super::state::{ClusterId, Command, LedgerState};

/// How long a follower waits for missing entries before it fetches the state from a voter.
pub const GAP_GRACE: Duration = Duration::from_secs(1);
/// Entries held back waiting for an earlier one, at most.
const MAX_PENDING: usize = 4096;
/// How long a follower names a leader it has not heard from. An idle leader's feed says where
/// it stands at least every 30 s ([`super::feed`]), so this is two such heartbeats lost and
/// more: past it the follower knows no leader, and its autopilot looks for a working cluster
/// (a leader killed with its quorum, a recovery elsewhere).
pub const LEADER_SILENCE: Duration = Duration::from_secs(75);
/// How long a follower hears nothing from its leader before it asks the leader directly
/// whether it still leads: gossip may lose heartbeats while the leader is well, and a leader
/// that answers is heard from ([`Replica::confirmed`]).
pub const PROBE_AFTER: Duration = Duration::from_secs(45);
/// How long a follower takes beats whose digest of the voters differs from the voters it
/// holds before it fetches the state for them. The leader digests its newest membership, which
/// may not have committed yet; a follower learns it from the feed carrying its entry once
/// applied (a feed names the voters), or by fetching the state after a gap.
pub const VOTERS_DOUBT: Duration = Duration::from_secs(60);

/// The leader of a cluster: raft node id and how to reach it.
pub type Leader = (u64, LedgerNode);

/// What the leader publishes: committed entries and where the log stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Feed {
    pub cluster: ClusterId,
    pub leader: Leader,
    /// PeerIds of the voters.
    pub voters: Vec<String>,
    /// Consecutive committed entries by raft index; `None` for raft's own entries (blank,
    /// membership), which change no ledger state but take an index.
    pub entries: Vec<(u64, Option<Command>)>,
    /// The last index the leader has applied.
    pub last: u64,
}

/// A [`Feed`] less what a follower already holds, once every live member reads it
/// ([`BEAT_FORM`](super::state::BEAT_FORM)): the leader sends one for each message of its
/// routine, a heartbeat of its idle log or the lease renewals it commits every window
/// ([`super::feed`]). The leader is named by its raft id, its PeerId being the message's
/// author (a feed's leader must be its author anyway), and the voters by a digest. Every node
/// passes each message to its gossip mesh peers; with three voters an idle feed's JSON is
/// about 350 bytes (about 590 on the wire) and a beat's about 125.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Beat {
    pub cluster: ClusterId,
    /// The leader's raft node id.
    pub leader: u64,
    /// The digest of the voters' PeerIds, sorted ([`voters_digest`]).
    pub voters: u64,
    /// Consecutive committed entries by raft index, as in a [`Feed`].
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub entries: Vec<(u64, Option<Command>)>,
    /// The last index the leader has applied.
    pub last: u64,
}

impl Beat {
    /// `feed` with its voters digested and its leader named by raft id.
    pub fn of(feed: Feed) -> Beat {
        Beat {
            cluster: feed.cluster,
            leader: feed.leader.0,
            voters: voters_digest(&feed.voters),
            entries: feed.entries,
            last: feed.last,
        }
    }
}

/// The digest of a voter list, whatever its order.
pub fn voters_digest(voters: &[String]) -> u64 {
    let mut sorted: Vec<&String> = voters.iter().collect();
    sorted.sort();
    super::state::keys_digest(sorted)
}

/// A voter's whole state, for a follower that fell behind or starts following.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Catchup {
    pub cluster: ClusterId,
    pub leader: Option<Leader>,
    pub voters: Vec<String>,
    /// The raft index the state is at.
    pub position: u64,
    pub state: Arc<LedgerState>,
}

/// What a follower should do after a feed message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Nothing more: the entries are applied or held back for a moment.
    UpToDate,
    /// Fetch the state from a voter of this cluster: entries are missing.
    CatchUp,
    /// Its leader is no voter this node knows: fetch the state from a voter it knows, which
    /// says who leads.
    Verify,
    /// The message belongs to another cluster (meeting one is the merge's business), is not
    /// written by the leader it names, or this node follows nothing.
    Ignored,
}

/// The follower's copy of the ledger.
#[derive(Debug, Default)]
pub struct Replica {
    following: Option<Following>,
    /// The oldest cluster whose leader's feed this node has heard while following none: where
    /// a node outside any cluster goes to join.
    heard: Option<(ClusterId, Leader)>,
}

#[derive(Debug)]
struct Following {
    state: Arc<LedgerState>,
    position: u64,
    leader: Option<Leader>,
    /// When the leader last spoke: its feed, or a voter's catch-up naming it.
    leader_heard: Instant,
    voters: Vec<String>,
    pending: BTreeMap<u64, Option<Command>>,
    behind_since: Option<Instant>,
    /// Since when beats have digested other voters than these.
    doubt: Option<Instant>,
}

impl Replica {
    /// Starts (or restarts) following from a voter's state; a catch-up older than what this
    /// replica already holds of the same cluster is ignored, and one as far along only renews
    /// who leads and votes.
    pub fn install(&mut self, catchup: Catchup, now: Instant) {
        if let Some(f) = &mut self.following
            && f.state.cluster() == Some(catchup.cluster)
            && f.position >= catchup.position
        {
            // As far along: the voter's word on who leads and votes is what this node asked.
            if f.position == catchup.position {
                if catchup.leader.is_some() {
                    f.leader_heard = now;
                }
                f.leader = catchup.leader;
                f.voters = catchup.voters;
                f.doubt = None;
            }
            return;
        }
        let pending = match self.following.take() {
            Some(f) if f.state.cluster() == Some(catchup.cluster) => f.pending,
            _ => BTreeMap::new(),
        };
        let mut state = catchup.state;
        // The state carries its cluster once the genesis is applied; a catch-up names it anyway.
        if state.cluster().is_none() {
            let index = state.applied() + 1;
            Arc::make_mut(&mut state).apply(index, &Command::Genesis(catchup.cluster));
        }
        let mut following = Following {
            state,
            position: catchup.position,
            leader: catchup.leader,
            leader_heard: now,
            voters: catchup.voters,
            pending,
            behind_since: None,
            doubt: None,
        };
        following.drain();
        self.following = Some(following);
    }

    /// Takes one feed message written by `author` (a PeerId).
    pub fn on_feed(&mut self, feed: Feed, author: &str, now: Instant) -> Verdict {
        if feed.leader.1.peer_id != author {
            return Verdict::Ignored;
        }
        let Some(f) = &mut self.following else {
            if self.heard.as_ref().is_none_or(|(c, _)| feed.cluster <= *c) {
                self.heard = Some((feed.cluster, feed.leader));
            }
            return Verdict::Ignored;
        };
        if f.state.cluster() != Some(feed.cluster) {
            return Verdict::Ignored;
        }
        if !f.voters.iter().any(|voter| voter == author) {
            return Verdict::Verify;
        }
        f.leader = Some(feed.leader);
        f.leader_heard = now;
        if f.voters != feed.voters {
            f.voters = feed.voters;
            f.doubt = None;
        }
        for (index, command) in feed.entries {
            if index > f.position && f.pending.len() < MAX_PENDING {
                f.pending.insert(index, command);
            }
        }
        f.drain();
        if feed.last <= f.position {
            f.behind_since = None;
            return Verdict::UpToDate;
        }
        let since = *f.behind_since.get_or_insert(now);
        if now.duration_since(since) >= GAP_GRACE {
            f.behind_since = None;
            Verdict::CatchUp
        } else {
            Verdict::UpToDate
        }
    }

    /// Takes one [`Beat`] written by `author`: as the feed it stands for, with the voters this
    /// node holds when it follows the beat's cluster. A beat digesting other voters is taken
    /// only from a voter this node knows (else a voter it knows is asked who leads, as for a
    /// feed from an unknown leader); once beats have digested other voters for
    /// [`VOTERS_DOUBT`], the follower fetches the state, and again after as long.
    pub fn on_beat(&mut self, beat: Beat, author: &str, now: Instant) -> Verdict {
        let mut doubted = false;
        let voters = match &mut self.following {
            Some(f) if f.state.cluster() == Some(beat.cluster) => {
                if voters_digest(&f.voters) == beat.voters {
                    f.doubt = None;
                } else if !f.voters.iter().any(|voter| voter == author) {
                    return Verdict::Verify;
                } else {
                    let since = *f.doubt.get_or_insert(now);
                    if now.saturating_duration_since(since) >= VOTERS_DOUBT {
                        f.doubt = Some(now);
                        doubted = true;
                    }
                }
                f.voters.clone()
            }
            _ => Vec::new(),
        };
        let feed = Feed {
            cluster: beat.cluster,
            leader: (
                beat.leader,
                LedgerNode {
                    peer_id: author.to_string(),
                },
            ),
            voters,
            entries: beat.entries,
            last: beat.last,
        };
        match self.on_feed(feed, author, now) {
            Verdict::UpToDate if doubted => Verdict::CatchUp,
            verdict => verdict,
        }
    }

    /// Stops following (the node left the cluster or became a raft member).
    pub fn reset(&mut self) {
        self.following = None;
        self.heard = None;
    }

    /// The leader of the oldest cluster heard of while following none.
    pub fn heard(&self) -> Option<&Leader> {
        self.heard.as_ref().map(|(_, leader)| leader)
    }

    /// Whether this replica follows a cluster.
    pub fn is_following(&self) -> bool {
        self.following.is_some()
    }

    /// The followed state.
    pub fn state(&self) -> Option<&Arc<LedgerState>> {
        self.following.as_ref().map(|f| &f.state)
    }

    /// The raft index the followed state is at.
    pub fn position(&self) -> u64 {
        self.following.as_ref().map_or(0, |f| f.position)
    }

    /// The leader of the followed cluster, as last heard, unless it has been silent for
    /// [`LEADER_SILENCE`] at `now`.
    pub fn leader(&self, now: Instant) -> Option<&Leader> {
        let f = self.following.as_ref()?;
        if now.saturating_duration_since(f.leader_heard) > LEADER_SILENCE {
            return None;
        }
        f.leader.as_ref()
    }

    /// The leader last heard, when it has been silent for [`PROBE_AFTER`] at `now`: the one to
    /// ask whether it still leads.
    pub fn quiet_leader(&self, now: Instant) -> Option<&Leader> {
        let f = self.following.as_ref()?;
        (now.saturating_duration_since(f.leader_heard) > PROBE_AFTER)
            .then_some(f.leader.as_ref())
            .flatten()
    }

    /// `leader`, asked directly, said it still leads the followed cluster: it is heard from.
    pub fn confirmed(&mut self, leader: &Leader, now: Instant) {
        if let Some(f) = &mut self.following
            && f.leader.as_ref() == Some(leader)
        {
            f.leader_heard = now;
        }
    }

    /// The voters of the followed cluster, as last heard.
    pub fn voters(&self) -> &[String] {
        self.following.as_ref().map_or(&[], |f| f.voters.as_slice())
    }
}

impl Following {
    /// Applies held-back entries while they continue the log.
    fn drain(&mut self) {
        self.pending = self.pending.split_off(&(self.position + 1));
        while let Some(command) = self.pending.remove(&(self.position + 1)) {
            self.position += 1;
            if let Some(command) = command {
                Arc::make_mut(&mut self.state).apply(self.position, &command);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CLUSTER: ClusterId = ClusterId {
        created_at: 100,
        id: 7,
    };

    fn put(key: &str) -> Option<Command> {
        Some(Command::KvPut {
            bucket: "b".into(),
            key: key.into(),
            value: "v".into(),
        })
    }

    fn feed(entries: Vec<(u64, Option<Command>)>, last: u64) -> Feed {
        Feed {
            cluster: CLUSTER,
            leader: (
                1,
                LedgerNode {
                    peer_id: "L".into(),
                },
            ),
            voters: vec!["L".into()],
            entries,
            last,
        }
    }

    fn following() -> Replica {
        let mut state = LedgerState::new("10.1.0.0/24".parse().unwrap());
        state.apply(1, &Command::Genesis(CLUSTER));
        let mut replica = Replica::default();
        replica.install(
            Catchup {
                cluster: CLUSTER,
                leader: None,
                voters: vec!["L".into()],
                position: 2,
                state: Arc::new(state),
            },
            Instant::now(),
        );
        replica
    }

    /// [`Replica::on_feed`] of a feed its leader wrote.
    fn take(replica: &mut Replica, feed: Feed, now: Instant) -> Verdict {
        let author = feed.leader.1.peer_id.clone();
        replica.on_feed(feed, &author, now)
    }

    fn keys(replica: &Replica) -> Vec<String> {
        replica
            .state()
            .and_then(|s| s.bucket("b"))
            .map(|b| b.keys().cloned().collect())
            .unwrap_or_default()
    }

    #[test]
    fn a_leader_silent_for_longer_than_the_silence_is_named_no_more_until_it_speaks() {
        let mut replica = following();
        let t0 = Instant::now();
        assert_eq!(take(&mut replica, feed(vec![], 2), t0), Verdict::UpToDate);
        assert!(replica.leader(t0 + LEADER_SILENCE).is_some());
        assert!(
            replica
                .leader(t0 + LEADER_SILENCE + Duration::from_secs(1))
                .is_none()
        );
        let t1 = t0 + LEADER_SILENCE * 2;
        take(&mut replica, feed(vec![], 2), t1);
        assert!(replica.leader(t1 + LEADER_SILENCE).is_some());
    }

    #[test]
    fn a_quiet_leader_is_asked_and_its_answer_counts_as_hearing_from_it() {
        let mut replica = following();
        let t0 = Instant::now();
        take(&mut replica, feed(vec![], 2), t0);
        assert!(replica.quiet_leader(t0 + PROBE_AFTER).is_none());
        let later = t0 + PROBE_AFTER + Duration::from_secs(1);
        let leader = replica.quiet_leader(later).cloned().expect("quiet");
        let stranger = (
            9,
            LedgerNode {
                peer_id: "X".into(),
            },
        );
        replica.confirmed(&stranger, later);
        assert!(
            replica.quiet_leader(later).is_some(),
            "only its own leader counts"
        );
        replica.confirmed(&leader, later);
        assert!(replica.quiet_leader(later).is_none());
        assert!(replica.leader(later + LEADER_SILENCE).is_some());
    }

    #[test]
    fn entries_apply_in_order_even_when_they_arrive_out_of_order() {
        let mut replica = following();
        let now = Instant::now();
        assert_eq!(
            take(&mut replica, feed(vec![(4, put("b"))], 4), now),
            Verdict::UpToDate,
            "a gap gets a grace period"
        );
        assert!(keys(&replica).is_empty(), "4 waits for 3");
        take(&mut replica, feed(vec![(3, None)], 4), now);
        assert_eq!(keys(&replica), vec!["b"]);
        assert_eq!(replica.position(), 4);
        take(
            &mut replica,
            feed(vec![(3, put("x")), (4, put("y"))], 4),
            now,
        );
        assert_eq!(
            keys(&replica),
            vec!["b"],
            "re-delivered entries change nothing"
        );
    }

    #[test]
    fn a_gap_that_persists_asks_for_a_catch_up_and_the_catch_up_fills_it() {
        let mut replica = following();
        let start = Instant::now();
        take(&mut replica, feed(vec![(5, put("late"))], 5), start);
        assert_eq!(
            take(&mut replica, feed(vec![], 5), start + GAP_GRACE),
            Verdict::CatchUp
        );
        let mut state = replica.state().unwrap().clone();
        Arc::make_mut(&mut state).apply(3, &put("three").unwrap());
        replica.install(
            Catchup {
                cluster: CLUSTER,
                leader: None,
                voters: vec!["L".into()],
                position: 4,
                state,
            },
            Instant::now(),
        );
        assert_eq!(
            keys(&replica),
            vec!["late", "three"],
            "held-back 5 applies after 4"
        );
        assert_eq!(replica.position(), 5);
    }

    #[test]
    fn an_older_catch_up_does_not_roll_the_replica_back() {
        let mut replica = following();
        take(&mut replica, feed(vec![(3, put("a"))], 3), Instant::now());
        let stale = replica.state().unwrap().clone();
        replica.install(
            Catchup {
                cluster: CLUSTER,
                leader: None,
                voters: vec![],
                position: 2,
                state: Arc::new(LedgerState::new("10.1.0.0/24".parse().unwrap())),
            },
            Instant::now(),
        );
        assert_eq!(replica.state(), Some(&stale));
    }

    /// The beat of an idle feed at `last` from leader `L`, which is raft node 1.
    fn beat(last: u64) -> Beat {
        Beat::of(feed(vec![], last))
    }

    #[test]
    fn a_beat_stands_for_the_feed_it_was_made_from() {
        let mut replica = following();
        let t0 = Instant::now();
        assert_eq!(replica.on_beat(beat(2), "L", t0), Verdict::UpToDate);
        let leader = replica.leader(t0 + LEADER_SILENCE).cloned();
        assert_eq!(
            leader,
            Some(feed(vec![], 2).leader),
            "named by id and author"
        );
        assert_eq!(replica.voters(), ["L"]);
        assert_eq!(
            replica.on_beat(beat(4), "L", t0),
            Verdict::UpToDate,
            "a gap gets a grace period"
        );
        assert_eq!(
            replica.on_beat(beat(4), "L", t0 + GAP_GRACE),
            Verdict::CatchUp
        );
        let carrying = Beat::of(feed(vec![(4, put("y")), (3, put("x"))], 4));
        assert_eq!(replica.on_beat(carrying, "L", t0), Verdict::UpToDate);
        assert_eq!(keys(&replica), vec!["x", "y"], "its entries apply in order");
        assert_eq!(replica.position(), 4);
    }

    #[test]
    fn a_beat_naming_other_voters_is_taken_from_a_known_voter_and_doubted_after_a_while() {
        let t0 = Instant::now();
        let mut replica = following();
        let other_voters = voters_digest(&["L".into(), "M".into()]);
        let mut changed = Beat::of(feed(vec![(3, put("x"))], 3));
        changed.voters = other_voters;
        assert_eq!(
            replica.on_beat(changed, "L", t0),
            Verdict::UpToDate,
            "a membership the leader appended and the feed has not brought yet"
        );
        assert_eq!(keys(&replica), vec!["x"]);
        assert_eq!(
            replica.voters(),
            ["L"],
            "voters come from feeds and catch-ups"
        );
        assert!(replica.leader(t0).is_some());
        let mut still = beat(3);
        still.voters = other_voters;
        let later = t0 + VOTERS_DOUBT - Duration::from_secs(1);
        assert_eq!(
            replica.on_beat(still.clone(), "L", later),
            Verdict::UpToDate
        );
        assert_eq!(
            replica.on_beat(still.clone(), "L", t0 + VOTERS_DOUBT),
            Verdict::CatchUp,
            "a doubt that lasts fetches the state"
        );
        assert_eq!(
            replica.on_beat(
                still.clone(),
                "L",
                t0 + VOTERS_DOUBT + Duration::from_secs(1)
            ),
            Verdict::UpToDate,
            "and not at every beat after"
        );
        assert_eq!(
            replica.on_beat(beat(3), "L", t0 + VOTERS_DOUBT * 2),
            Verdict::UpToDate,
            "the voters agree again: the doubt ends"
        );
        assert_eq!(
            replica.on_beat(still, "L", t0 + VOTERS_DOUBT * 2 + Duration::from_secs(1)),
            Verdict::UpToDate
        );
    }

    #[test]
    fn a_beat_written_by_a_stranger_moves_nothing() {
        let t0 = Instant::now();
        let mut replica = following();
        let mut changed = Beat::of(feed(vec![(3, put("x"))], 3));
        changed.voters = voters_digest(&["X".into()]);
        assert_eq!(
            replica.on_beat(changed.clone(), "X", t0),
            Verdict::Verify,
            "X is no voter this node knows"
        );
        assert_eq!(
            replica.on_beat(Beat::of(feed(vec![(3, put("x"))], 3)), "X", t0),
            Verdict::Verify,
            "nor with the voters' digest this node holds"
        );
        assert!(keys(&replica).is_empty());
        assert!(replica.leader(t0).is_none());
        let mut other = beat(3);
        other.cluster = ClusterId {
            created_at: 50,
            id: 9,
        };
        assert_eq!(replica.on_beat(other, "L", t0), Verdict::Ignored);
    }

    #[test]
    fn the_voters_digest_does_not_depend_on_their_order() {
        let ab = voters_digest(&["a".into(), "b".into()]);
        assert_eq!(ab, voters_digest(&["b".into(), "a".into()]));
        assert_ne!(ab, voters_digest(&["a".into()]));
        assert_ne!(ab, voters_digest(&["a".into(), "b".into(), "c".into()]));
    }

    #[test]
    fn a_beat_heard_while_following_none_names_its_author_as_the_leader() {
        let mut replica = Replica::default();
        assert_eq!(
            replica.on_beat(beat(1), "L", Instant::now()),
            Verdict::Ignored
        );
        assert_eq!(replica.heard(), Some(&feed(vec![], 1).leader));
    }

    #[test]
    fn another_clusters_feed_is_ignored() {
        let mut replica = following();
        let mut other = feed(vec![(3, put("z"))], 3);
        other.cluster = ClusterId {
            created_at: 50,
            id: 9,
        };
        assert_eq!(take(&mut replica, other, Instant::now()), Verdict::Ignored);
        assert!(keys(&replica).is_empty());
    }

    #[test]
    fn nothing_is_followed_before_a_first_catch_up_but_the_oldest_leader_heard_is_kept() {
        let mut replica = Replica::default();
        assert_eq!(
            take(&mut replica, feed(vec![(1, put("a"))], 1), Instant::now()),
            Verdict::Ignored
        );
        assert!(!replica.is_following());
        let mut younger = feed(vec![], 1);
        younger.cluster.created_at += 1;
        younger.leader.1.peer_id = "Y".into();
        take(&mut replica, younger, Instant::now());
        assert_eq!(replica.heard().map(|(_, n)| n.peer_id.as_str()), Some("L"));
    }

    #[test]
    fn a_feed_is_taken_only_from_the_leader_it_names_and_only_a_known_voter() {
        let mut replica = following();
        let now = Instant::now();
        // A member passing off a feed as the leader's.
        assert_eq!(
            replica.on_feed(feed(vec![(3, put("forged"))], 3), "M", now),
            Verdict::Ignored
        );
        // A member naming itself leader of the cluster is not believed; a voter's catch-up
        // then says who leads.
        let mut usurper = feed(vec![(3, put("forged"))], 3);
        usurper.leader.1.peer_id = "M".into();
        usurper.voters = vec!["M".into()];
        assert_eq!(take(&mut replica, usurper, now), Verdict::Verify);
        assert!(keys(&replica).is_empty());
        assert_eq!(replica.voters(), ["L".to_string()]);
        let current = replica.state().unwrap().clone();
        let mut elected = feed(vec![], 3).leader;
        elected.1.peer_id = "N".into();
        replica.install(
            Catchup {
                cluster: CLUSTER,
                leader: Some(elected),
                voters: vec!["L".into(), "N".into()],
                position: 2,
                state: current,
            },
            Instant::now(),
        );
        assert_eq!(
            replica.leader(Instant::now()).map(|l| l.1.peer_id.as_str()),
            Some("N")
        );
        // The known leader's feed applies.
        take(&mut replica, feed(vec![(3, put("real"))], 3), now);
        assert_eq!(keys(&replica), vec!["real"]);
        // Nor does a forged feed count as heard by a node that follows nothing.
        let mut lone = Replica::default();
        lone.on_feed(feed(vec![], 1), "M", now);
        assert!(lone.heard().is_none());
    }
}
