//! The follower feed on the wire: the leader publishes committed entries (and where its log
//! stands, 2 s after its last entry and then ever more rarely while idle) on the sealed gossip
//! topic, its routine messages (heartbeats, lease renewals) as a smaller [`Beat`] once every
//! live member reads one; every node that follows rather than
//! votes applies them to its [`Replica`](super::follower::Replica) and fetches a catch-up from
//! the leader when it falls behind. A feed is applied only from the leader it names, when that
//! leader is a voter the follower knows ([`Verdict`]). A feed this node cannot open was sealed
//! under a token it does not hold, most likely after a rotation whose own feed message it
//! missed: it fetches the state from a voter, which holds that rotation.

use std::time::{Duration, Instant};

use rand::seq::SliceRandom as _;
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast::{self, error::RecvError};
use tokio_util::sync::CancellationToken;

use super::Ledger;
use super::catchup;
use super::follower::{Beat, Feed, Verdict};
use super::metrics::FeedKind;
use super::raft::network::{LedgerRpc, call};
use super::raft::store::Applied;
use super::state::{BEAT_FORM, Command};
use crate::p2p::GossipMessage;

/// How soon after its last entry a leader says where its log stands, so that a follower that
/// lost a message sees the gap within this. Lease renewals do not count: they come every
/// renewal window and change nothing a reader waits for; a follower that lost one fetches the
/// state after the next two idle heartbeats (within about a minute), well within a lease.
const HEARTBEAT: Duration = Duration::from_secs(2);
/// How often a leader whose log stays idle says where it stands: each idle heartbeat doubles
/// the gap to the next, up to this. An idle mesh then costs each node one small gossip message
/// per this interval, whatever its size.
const IDLE_HEARTBEAT: Duration = Duration::from_secs(30);
/// Entries per feed message, at most: as many as a raft append, so that a batch of the largest
/// commands fits one gossip message ([`super::limits`]).
const BATCH: usize = super::limits::APPEND_BATCH as usize;
/// How often a follower asks a voter about a leader it does not know, at most (so a member's
/// forged feeds cannot make followers flood the voters).
const VERIFY_INTERVAL: Duration = Duration::from_secs(2);
/// How often a follower fetches the state because feed messages do not open, at most: a
/// member's junk must not make it fetch a large ledger again and again.
const UNOPENED_INTERVAL: Duration = Duration::from_secs(30);

/// A message on the gossip topic. Tagged, so other kinds can share the topic; a weft that
/// does not know a kind drops the message, so the leader sends a kind only once every live
/// member reads it ([`BEAT_FORM`]).
#[derive(Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Gossip {
    LedgerFeed(Feed),
    LedgerBeat(Beat),
}

/// The feed message a gossip message's opened bytes hold, if they hold one.
pub(crate) fn decode(data: &[u8]) -> Option<Gossip> {
    serde_json::from_slice(data).ok()
}

impl Gossip {
    /// The cluster whose leader published it.
    fn cluster(&self) -> super::state::ClusterId {
        match self {
            Gossip::LedgerFeed(feed) => feed.cluster,
            Gossip::LedgerBeat(beat) => beat.cluster,
        }
    }
}

/// What the leader publishes for `feed`: a [`Beat`] when every live member reads beats
/// (`beats`) and the feed is routine (no entries, or lease renewals only), else the feed
/// itself. Other entries (a membership change among them, which changes the voters a beat
/// digests) go as feeds, which name the voters.
fn message(feed: Feed, beats: bool) -> Gossip {
    if beats
        && feed
            .entries
            .iter()
            .all(|(_, entry)| is_routine(entry.as_ref()))
    {
        Gossip::LedgerBeat(Beat::of(feed))
    } else {
        Gossip::LedgerFeed(feed)
    }
}

/// On every node: while this node leads, publishes what its state machine applies.
pub async fn publish(
    ledger: Ledger,
    mut applied: broadcast::Receiver<Applied>,
    shutdown: CancellationToken,
) {
    let mut gap = HEARTBEAT;
    let mut next = tokio::time::Instant::now() + gap;
    loop {
        let mut batch = Vec::new();
        tokio::select! {
            _ = shutdown.cancelled() => return,
            received = applied.recv() => match received {
                Ok(entry) => {
                    batch.push(unboxed(entry));
                    while batch.len() < BATCH {
                        match applied.try_recv() {
                            Ok(entry) => batch.push(unboxed(entry)),
                            Err(_) => break,
                        }
                    }
                }
                // Followers see the gap and catch up.
                Err(RecvError::Lagged(_)) => continue,
                Err(RecvError::Closed) => return,
            },
            _ = tokio::time::sleep_until(next) => {}
        }
        let idle = batch.is_empty();
        let routine = batch.iter().all(|(_, entry)| is_routine(entry.as_ref()));
        // A leader cut off from its quorum says nothing while idle: its followers are to notice
        // it leads nobody (entries it applied before it knew still go out).
        let feed = if idle && ledger.cut_off() {
            None
        } else {
            ledger.feed(batch)
        };
        gap = next_gap(gap, routine && feed.is_some());
        next = tokio::time::Instant::now() + gap;
        let Some(feed) = feed else {
            continue;
        };
        let message = message(feed, ledger.state().reads_form(BEAT_FORM));
        let kind = match message {
            Gossip::LedgerFeed(_) => FeedKind::Feed,
            Gossip::LedgerBeat(_) => FeedKind::Beat,
        };
        let data = match serde_json::to_vec(&message) {
            Ok(data) => data,
            Err(e) => {
                tracing::error!(error = %e, "cannot encode the ledger feed");
                continue;
            }
        };
        match ledger.p2p().publish(data).await {
            Ok(()) => ledger.feed_messages.published(kind),
            // No subscriber yet (a lone node) or the message is too large: followers catch up.
            Err(e) => tracing::debug!(error = %e, "ledger feed not published"),
        }
    }
}

/// An applied entry as a feed carries it.
fn unboxed((index, command): Applied) -> (u64, Option<Command>) {
    (index, command.map(|command| *command))
}

/// Whether an applied entry is routine: a lease renewal, which the leader commits every
/// renewal window whatever else happens, so that it must not bring back quick heartbeats.
fn is_routine(entry: Option<&Command>) -> bool {
    matches!(entry, Some(Command::Renewals { .. }))
}

/// The wait before the next heartbeat after a leader's message that was `routine` (a heartbeat
/// with no entries, or routine entries only) and had waited `gap`: twice as long, up to
/// [`IDLE_HEARTBEAT`]; after other entries, or while this node does not lead, [`HEARTBEAT`].
fn next_gap(gap: Duration, routine: bool) -> Duration {
    if routine {
        (gap * 2).min(IDLE_HEARTBEAT)
    } else {
        HEARTBEAT
    }
}

/// On every node: while this node is not a raft member, applies the feed to its replica. Any
/// node in a cluster notes a feed of another cluster ([`Ledger::heard_rival`]): two clusters
/// are in reach of each other, and its merge checks then ask its members too.
pub async fn follow(
    ledger: Ledger,
    mut gossip: broadcast::Receiver<GossipMessage>,
    shutdown: CancellationToken,
) {
    let mut last_verify: Option<Instant> = None;
    let mut last_unopened: Option<Instant> = None;
    loop {
        let message = tokio::select! {
            _ = shutdown.cancelled() => return,
            received = gossip.recv() => match received {
                Ok(message) => message,
                Err(RecvError::Lagged(_)) => continue,
                Err(RecvError::Closed) => return,
            },
        };
        let raft_member = ledger.is_raft_member();
        // A raft member reads another cluster's feed only: its own leader's is most of the
        // topic's traffic, and raft brings it the entries.
        if raft_member
            && ledger
                .leader()
                .is_some_and(|(_, leader)| leader.peer_id == message.author.to_string())
        {
            continue;
        }
        let opened = message.data.as_deref().and_then(decode);
        if let Some(theirs) = opened.as_ref().map(Gossip::cluster)
            && ledger.state().cluster().is_some_and(|ours| ours != theirs)
        {
            ledger.heard_rival(crate::clock::now());
        }
        if raft_member {
            continue;
        }
        let Some(opened) = opened else {
            if message.data.is_some() {
                continue;
            }
            // Sealed under a token this node does not hold: most likely a rotation it missed,
            // which a voter's state holds (and the copy sealed for this node with it).
            if last_unopened.is_none_or(|at| crate::clock::since(at) >= UNOPENED_INTERVAL)
                && let Some(voter) = known_voter(&ledger)
            {
                last_unopened = Some(crate::clock::now());
                tracing::info!(author = %message.author, "a feed this node cannot open; catching up from a voter");
                if let Err(e) = catch_up(&ledger, voter).await {
                    tracing::debug!(error = %e, "catch-up failed; retrying on a later message");
                }
            }
            continue;
        };
        let author = message.author.to_string();
        let now = crate::clock::now();
        let (kind, verdict) = match opened {
            Gossip::LedgerFeed(feed) => {
                (FeedKind::Feed, ledger.replica().on_feed(feed, &author, now))
            }
            Gossip::LedgerBeat(beat) => {
                (FeedKind::Beat, ledger.replica().on_beat(beat, &author, now))
            }
        };
        if verdict == Verdict::UpToDate {
            ledger.feed_messages.taken(kind);
        }
        ledger.changed();
        let source = match verdict {
            Verdict::CatchUp => Some(message.author),
            Verdict::Verify
                if last_verify.is_none_or(|at| crate::clock::since(at) >= VERIFY_INTERVAL) =>
            {
                last_verify = Some(crate::clock::now());
                tracing::debug!(%author, "a feed from a leader no known voter named; asking a voter");
                known_voter(&ledger)
            }
            Verdict::Verify | Verdict::UpToDate | Verdict::Ignored => None,
        };
        if let Some(source) = source
            && let Err(e) = catch_up(&ledger, source).await
        {
            tracing::debug!(error = %e, "catch-up failed; retrying on the next feed message");
        }
    }
}

/// A voter this node's replica knows, other than itself, to ask for the state.
fn known_voter(ledger: &Ledger) -> Option<libp2p::PeerId> {
    let me = ledger.p2p().peer_id();
    let voters: Vec<libp2p::PeerId> = ledger
        .replica()
        .voters()
        .iter()
        .filter_map(|voter| voter.parse().ok())
        .filter(|voter| *voter != me)
        .collect();
    voters.choose(&mut crate::chance::Chance).copied()
}

/// Fetches `peer`'s whole state into the replica, page by page (`peer` must be a raft member),
/// one past the index the replica holds: a follower that lost an entry needs a state that has
/// it, not the encoding the voter keeps for followers starting out.
pub async fn catch_up(ledger: &Ledger, peer: libp2p::PeerId) -> Result<(), String> {
    let after = ledger.replica().position();
    let answer = catchup::fetch(after, |position, offset| async move {
        tokio::time::timeout(
            catchup::PAGE_TIMEOUT,
            call::<Result<catchup::Page, String>>(
                ledger.p2p(),
                peer,
                &LedgerRpc::CatchupPage {
                    position,
                    offset,
                    after,
                },
            ),
        )
        .await
        .map_err(|_| format!("{peer} did not answer the catch-up in time"))?
        .map_err(|e| e.to_string())?
    })
    .await?;
    ledger.replica().install(answer, crate::clock::now());
    ledger.changed();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_idle_leader_heartbeats_ever_more_rarely_and_entries_bring_it_back() {
        let mut gap = HEARTBEAT;
        let mut gaps = Vec::new();
        for _ in 0..6 {
            gap = next_gap(gap, true);
            gaps.push(gap.as_secs());
        }
        assert_eq!(gaps, [4, 8, 16, 30, 30, 30]);
        assert_eq!(next_gap(gap, false), HEARTBEAT);
    }

    fn idle_feed(voters: usize) -> Feed {
        let peer = |i: usize| format!("12D3KooW{i:0>44}");
        Feed {
            cluster: super::super::state::ClusterId {
                created_at: 1_764_000_000_000,
                id: 4_242_424_242,
            },
            leader: (7, super::super::raft::LedgerNode { peer_id: peer(0) }),
            voters: (0..voters).map(peer).collect(),
            entries: Vec::new(),
            last: 123_456,
        }
    }

    #[test]
    fn a_routine_feed_goes_out_as_a_beat_only_when_every_member_reads_beats() {
        let idle = idle_feed(3);
        assert_eq!(
            message(idle.clone(), true),
            Gossip::LedgerBeat(Beat::of(idle.clone()))
        );
        assert_eq!(
            message(idle.clone(), false),
            Gossip::LedgerFeed(idle.clone())
        );
        let mut renewing = idle.clone();
        renewing.entries.push((
            123_457,
            Some(Command::Renewals {
                peers: Vec::new(),
                set: None,
                now: 9,
            }),
        ));
        assert_eq!(
            message(renewing.clone(), true),
            Gossip::LedgerBeat(Beat::of(renewing.clone()))
        );
        let mut voters_changing = renewing;
        voters_changing.entries.push((123_458, None));
        assert_eq!(
            message(voters_changing.clone(), true),
            Gossip::LedgerFeed(voters_changing),
            "raft's own entries may change the voters"
        );
    }

    #[test]
    fn a_beat_is_a_fraction_of_the_feed_it_stands_for_and_decodes_back() {
        let idle = idle_feed(5);
        let feed = serde_json::to_vec(&message(idle.clone(), false)).unwrap();
        let beat = serde_json::to_vec(&message(idle, true)).unwrap();
        assert!(
            beat.len() * 3 < feed.len(),
            "{} against {}",
            beat.len(),
            feed.len()
        );
        assert!(matches!(decode(&beat), Some(Gossip::LedgerBeat(_))));
        assert!(matches!(decode(&feed), Some(Gossip::LedgerFeed(_))));
        assert_eq!(decode(b"{\"LedgerBeat\":{}}"), None);
    }

    #[test]
    fn only_lease_renewals_are_routine() {
        let renewals = Command::Renewals {
            peers: vec!["12D3KooWRenewing".into()],
            set: None,
            now: 1,
        };
        let put = Command::KvPut {
            bucket: "b".into(),
            key: "k".into(),
            value: "v".into(),
        };
        assert!(is_routine(Some(&renewals)));
        assert!(!is_routine(Some(&put)));
        // Raft's own entries (a new leader's blank, a membership change) are news to followers.
        assert!(!is_routine(None));
    }
}
