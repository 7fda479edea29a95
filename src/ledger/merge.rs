//! Merging clusters that formed apart (a partition at formation, two sites brought up before
//! their link): when a member sees more admitted peers answering from another cluster (with a
//! leader) than it counts in its own ([`own_count`]: itself, its live members and the peers
//! answering from it), or as many from an older one, it leaves its cluster for that one
//! ([`better_cluster`]). Members that see the same peers make the same choice: those of the
//! smaller cluster move, those of the larger stay, and the mesh ends with one cluster. The
//! count is of peers seen, not claimed, and the clock that stamped a cluster id only breaks
//! ties, so neither a forged hello nor a node whose clock is wrong takes a cluster over.
//!
//! Identities are cheap for a token holder, so counts can be forged by one with many. In a mesh
//! with an operator key, a cluster whose leader shows the operator's signed trust of itself
//! with a raft seat ([`crate::ledger::state::LedgerState::trust_of`]) ranks above every cluster
//! whose leader does not, whatever the counts ([`better_trusted`]): no number of identities
//! draws a cluster a trusted machine leads into one it does not.
//!
//! Nothing written on the losing side is lost: before leaving, the member saves its applied
//! state (the carried state, on disk, so a restart mid-merge keeps it); once it is a member of
//! the winning cluster it rejoins asking for its previous address and re-proposes what the
//! winner lacks: key-value entries, DNS records, reservations, the deny list, sealed secrets,
//! its own fixed role and the role it deployed (a deployed role stays bound to its member, so
//! it wins over a seat the winner only assigned). A key-value entry both sides hold keeps the
//! winner's value, a deletion on either side holds, and every value displaced so is kept under
//! `merged/<cluster>/<bucket>` ([`merged_bucket`]); each entry is decided when its command
//! applies ([`Command::CarryKv`]).

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::path::Path;
use std::time::Duration;

use super::pending::PendingFile;
use super::raft::network::Hello;
use super::state::{
    BootstrapReport, Carried, ClusterId, Command, LeaseState, LedgerState, Phase, TRUSTED_SEATS,
    merged_bucket, operator,
};
use super::{Ledger, service};

/// The carried state, in the raft directory, while a merge is in flight.
const CARRIED: PendingFile = PendingFile::new("carried.json", "carried state");

/// How long after hearing another cluster's feed a merge check asks every peer: two of an idle
/// leader's heartbeats ([`super::feed`]), so it goes on while that cluster has a leader.
pub(crate) const RIVAL_RECENT: Duration = Duration::from_secs(60);

/// A cluster this node should leave its own for, if any: the one the most admitted peers answer
/// from, with a leader, when it beats this node's cluster ([`better_cluster`]). While this node's
/// cluster has a leader, only peers that are not live members of its ledger are asked (the others
/// are members of this cluster); without one, once it is abandoned, or while another cluster's
/// leader publishes on the gossip topic, every peer is: members may have left already, and those
/// answering from another cluster are not counted ([`own_count`]). A cluster `abandoned`
/// (leaderless for longer than an election: its quorum is gone) counts no members, so its survivors
/// join any cluster with a leader, such as the one `weft ledger recover` made from one of them.
/// Members recorded live but `silent` (this node has not seen them renew for longer than their
/// lease timeout allows) are asked, and count for the cluster they answer from: they may have left
/// for another cluster while this one's leader, still reaching them, kept their leases. What the
/// check found is recorded for the founder's bootstrapper ([`super::settle`]).
pub async fn better_cluster_reachable(
    ledger: &Ledger,
    abandoned: bool,
    silent: &[String],
) -> Option<ClusterId> {
    let state = ledger.state();
    let ours = state.cluster()?;
    let our_leader = ledger.status().leader;
    let leaderless = abandoned || our_leader.is_none();
    let key = ledger.operator().cloned();
    // A trusted machine leads this cluster, by the check the others make of the trust it shows.
    let ours_trusted = !abandoned
        && key
            .as_ref()
            .zip(our_leader.as_ref())
            .is_some_and(|(key, leader)| {
                state
                    .trust_of(leader)
                    .is_some_and(|signed| trust_holds(key, leader, signed))
            });
    // A rival cluster's leader publishing on the topic: members recorded here may be in it.
    let everyone = leaderless || ledger.rival_heard(crate::clock::now());
    let me = ledger.p2p().peer_id();
    let counted: BTreeSet<String> = if abandoned {
        BTreeSet::new()
    } else {
        state
            .members()
            .iter()
            .filter(|(peer, m)| m.lease == LeaseState::Live && !silent.contains(peer))
            .map(|(peer, _)| peer.clone())
            .chain([me.to_string()])
            .collect()
    };
    let strangers: Vec<libp2p::PeerId> = ledger
        .p2p()
        .peers()
        .iter()
        .filter(|view| is_asked(everyone, &counted, &view.peer_id))
        .filter_map(|view| view.peer_id.parse().ok())
        .filter(|peer| !ledger.p2p().is_behind(peer))
        .collect();
    drop(state);
    let asked = strangers.len();
    let answers = service::ask_each(ledger, strangers).await;
    // A cluster counts only while its leader, asked itself, says it leads: its members keep
    // naming a leader that lost its voters for good (they left and wiped their raft state).
    let unasked: BTreeSet<libp2p::PeerId> = answers
        .iter()
        .filter_map(|(_, hello)| hello.leader.as_ref()?.1.peer_id.parse().ok())
        .filter(|leader| *leader != me && !answers.iter().any(|(peer, _)| peer == leader))
        .filter(|leader| !ledger.p2p().is_behind(leader))
        .collect();
    let leaders = service::ask_each(ledger, unasked).await;
    let own = own_count(ours, abandoned, &counted, &answers);
    let shows = |peer: &libp2p::PeerId, hello: &Hello| {
        key.as_ref()
            .is_some_and(|key| shows_trust(key, peer, hello))
    };
    let target = merge_target(ours, own, ours_trusted, &answers, &leaders, shows);
    let check = settle_check(
        ours,
        target.is_none() && !leaderless,
        own,
        asked,
        &answers,
        ledger.p2p().heard().unresolved,
    );
    ledger.merge_checked(check);
    target
}

/// What a merge check found, for the founder's bootstrapper ([`super::settle`]): whether this
/// node `stays` in `ours`, counted as `own` members, and of the `asked` peers those answering
/// from other clusters (rivals, and how many from the largest) and those that answered from
/// none or not at all, with the peers heard of and still `unresolved` (unsettled). Pure.
fn settle_check(
    ours: ClusterId,
    stays: bool,
    own: usize,
    asked: usize,
    answers: &[(libp2p::PeerId, Hello)],
    unresolved: usize,
) -> super::settle::Check {
    let mut rivals: BTreeMap<ClusterId, usize> = BTreeMap::new();
    for cluster in answers.iter().filter_map(|(_, hello)| hello.cluster) {
        if cluster != ours {
            *rivals.entry(cluster).or_default() += 1;
        }
    }
    let outside = answers.iter().filter(|(_, h)| h.cluster.is_none()).count();
    super::settle::Check {
        cluster: ours,
        stays,
        own,
        rivals: rivals.values().sum(),
        largest_rival: rivals.values().copied().max().unwrap_or(0),
        unsettled: outside + asked.saturating_sub(answers.len()) + unresolved,
    }
}

/// Whether a merge check asks `peer` which cluster it is in: `everyone` while this node's
/// cluster names no working leader or another cluster's leader was heard of lately
/// ([`Ledger::rival_heard`]), else those not `counted` as its live members. Asking only the
/// strangers keeps an idle mesh of one cluster quiet.
fn is_asked(everyone: bool, counted: &BTreeSet<String>, peer: &str) -> bool {
    everyone || !counted.contains(peer)
}

/// The cluster to leave `ours`, counted as `own` members ([`own_count`]) and led by a machine
/// the operator trusts when `ours_trusted`, for, given the `answers` of the peers this node
/// asked and those of the `leaders` they named, each leader's trust checked by `shows`
/// ([`shows_trust`]): pure, the decision of [`better_cluster_reachable`].
fn merge_target(
    ours: ClusterId,
    own: usize,
    ours_trusted: bool,
    answers: &[(libp2p::PeerId, Hello)],
    leaders: &[(libp2p::PeerId, Hello)],
    shows: impl Fn(&libp2p::PeerId, &Hello) -> bool,
) -> Option<ClusterId> {
    let trusted = trusted_led(answers, leaders, shows);
    better_trusted(
        ours,
        own,
        ours_trusted,
        &led_clusters(answers, leaders),
        &trusted,
    )
}

/// Whether `hello`, the answer of `peer`, shows the operator's signed trust of `peer` with a
/// raft seat ([`trust_holds`]).
pub(crate) fn shows_trust(
    key: &crate::operator::OperatorKey,
    peer: &libp2p::PeerId,
    hello: &Hello,
) -> bool {
    hello
        .trust
        .as_ref()
        .is_some_and(|signed| trust_holds(key, &peer.to_string(), signed))
}

/// Whether `signed` is the operator's trust of `peer` with a raft seat: signed with `key` and
/// naming `peer`. The same check for a node's own leader (the trust its ledger holds) and for
/// another cluster's (the one it shows), and it reads nothing a node holds alone (which
/// networks it knows, which later commands it applied), so that both sides of two clusters
/// rank them alike: a check one side passes and the other fails would leave each staying where
/// it is, and the two would never merge. So a machine the operator took off the list still
/// shows its last trust to others, and one signed for another mesh run with the same key
/// counts here too (`docs/security.md`).
pub(crate) fn trust_holds(
    key: &crate::operator::OperatorKey,
    peer: &str,
    signed: &crate::operator::Signed,
) -> bool {
    let trust = Command::Trust {
        peer: peer.to_string(),
    };
    let scope = [&signed.cluster, &signed.network];
    signed.command.len() <= operator::MAX_SIGNED_COMMAND
        && signed.signature.len() <= MAX_SIGNATURE_TEXT
        && scope
            .into_iter()
            .flatten()
            .all(|s| s.len() <= operator::MAX_SCOPE)
        && signed.verify(key).is_ok()
        && signed.command().is_ok_and(|command| command == trust)
}

/// The longest signature text a trust shown in a hello may have: an ed25519 signature is 64
/// bytes, 88 characters of base64. Any peer sends a hello, so nothing longer is decoded.
const MAX_SIGNATURE_TEXT: usize = 128;

/// The clusters a machine the operator trusts leads: each named by a peer of `answers` or
/// `leaders` whose own answer names itself leader of it and that `shows` that trust.
pub(crate) fn trusted_led(
    answers: &[(libp2p::PeerId, Hello)],
    leaders: &[(libp2p::PeerId, Hello)],
    shows: impl Fn(&libp2p::PeerId, &Hello) -> bool,
) -> BTreeSet<ClusterId> {
    answers
        .iter()
        .chain(leaders)
        .filter(|(peer, said)| {
            said.leader
                .as_ref()
                .is_some_and(|(node, l)| *node == said.node_id && l.peer_id == peer.to_string())
        })
        .filter(|(peer, said)| shows(peer, said))
        .filter_map(|(_, said)| said.cluster)
        .collect()
}

/// [`better_cluster`], where clusters a machine the operator trusts leads (`trusted`) rank
/// first: from `ours`, led by one when `ours_trusted`, only such a cluster can win, by count;
/// from a cluster no trusted machine leads, the largest such cluster wins whatever the counts;
/// with none in sight, the counts decide as they always did.
pub fn better_trusted(
    ours: ClusterId,
    own: usize,
    ours_trusted: bool,
    answers: &[ClusterId],
    trusted: &BTreeSet<ClusterId>,
) -> Option<ClusterId> {
    let led_by_trusted: Vec<ClusterId> = answers
        .iter()
        .filter(|c| trusted.contains(c))
        .copied()
        .collect();
    if ours_trusted || trusted.contains(&ours) {
        better_cluster(ours, own, &led_by_trusted)
    } else if led_by_trusted.iter().any(|c| *c != ours) {
        better_cluster(ours, 0, &led_by_trusted)
    } else {
        better_cluster(ours, own, answers)
    }
}

/// How many members this node counts its own cluster `ours` as having: itself and its live
/// members as its ledger records them (`counted`), and every other peer that answered from
/// `ours` (a silent member that still does, or one whose lease expired). A member whose join
/// this node has not applied yet (a follower's ledger lags its leader's, and a leader's lags
/// the joins in flight) answers from `ours` all the same: left out, it made each side of two
/// clusters count the other larger while members were joining, and members crossed in both
/// directions at once. Counted so, a node counts its own cluster at least as large as the
/// peers it sees answering from it, as it counts the others, so two members of clusters with a
/// working leader that see the same peers never choose each other's cluster. A recorded
/// member that answers from another cluster is not counted: it left this one (it lost its
/// quorum here, formed or joined a cluster elsewhere), and its record stays live until its
/// lease expires, ten minutes by default, which kept two clusters apart that long after a
/// partition healed (the ledger simulation with the daemon's timeouts). A cluster `abandoned`
/// (its quorum lost) counts nobody. The answers are taken on the word of the peers that give
/// them, as the other clusters' are, and each speaks only for itself (see
/// `docs/security.md`).
fn own_count(
    ours: ClusterId,
    abandoned: bool,
    counted: &BTreeSet<String>,
    answers: &[(libp2p::PeerId, Hello)],
) -> usize {
    if abandoned {
        return 0;
    }
    let (mut recorded_elsewhere, mut unrecorded) = (0, 0);
    for (peer, hello) in answers {
        let recorded = counted.contains(&peer.to_string());
        match hello.cluster {
            Some(cluster) if cluster == ours && !recorded => unrecorded += 1,
            Some(cluster) if cluster != ours && recorded => recorded_elsewhere += 1,
            _ => {}
        }
    }
    counted.len().saturating_sub(recorded_elsewhere) + unrecorded
}

/// The cluster of each of `answers` that names a leader whose own answer (among `answers` or
/// `leaders`) confirms it: from that leader's PeerId, in that cluster, naming itself under the
/// same raft id. A leader that gave no answer (unreachable, or this node itself) confirms
/// nothing, nor one that now leads another cluster under a new raft id.
fn led_clusters(
    answers: &[(libp2p::PeerId, Hello)],
    leaders: &[(libp2p::PeerId, Hello)],
) -> Vec<ClusterId> {
    let confirms = |cluster: ClusterId, (node, leader): &(u64, super::raft::LedgerNode)| {
        answers.iter().chain(leaders).any(|(peer, said)| {
            peer.to_string() == leader.peer_id
                && said.node_id == *node
                && said.cluster == Some(cluster)
                && said.leader.as_ref() == Some(&(*node, leader.clone()))
        })
    };
    answers
        .iter()
        .filter_map(|(_, hello)| Some((hello.cluster?, hello.leader.as_ref()?)))
        .filter(|(cluster, leader)| confirms(*cluster, leader))
        .map(|(cluster, _)| cluster)
        .collect()
}

/// The cluster to merge into, given this node's cluster `ours` counted as `own` members (0 when
/// it lost its quorum, [`own_count`]) and the clusters admitted peers answered from (one entry
/// per peer). A cluster is counted by the peers this node sees answering from it, never by what
/// one of them claims, and it wins with more of them than `ours` counts; on a tie the older
/// cluster id wins, as it always did. So a lone node, whatever its clock says (a 1970 clock makes the oldest id there is),
/// joins a cluster of several rather than taking it over, and a single stranger's hello never
/// moves a cluster of two or more.
pub fn better_cluster(ours: ClusterId, own: usize, answers: &[ClusterId]) -> Option<ClusterId> {
    let mut seen: std::collections::BTreeMap<ClusterId, usize> = Default::default();
    for cluster in answers.iter().filter(|c| **c != ours) {
        *seen.entry(*cluster).or_default() += 1;
    }
    let rank = |cluster: ClusterId, count: usize| (count, std::cmp::Reverse(cluster));
    seen.into_iter()
        .max_by_key(|(cluster, count)| rank(*cluster, *count))
        .filter(|(cluster, count)| rank(*cluster, *count) > rank(ours, own))
        .map(|(cluster, _)| cluster)
}

/// Of the clusters and leaders `named` for a node outside any cluster to join
/// ([`cluster_to_join`]), those of clusters a machine the operator trusts leads (`trusted`,
/// [`trusted_led`]) when any is named, so that no number of identities answering from a
/// cluster of their own draws a newcomer away from one; all of them otherwise.
pub fn trusted_first(
    mut named: Vec<(Option<ClusterId>, super::follower::Leader)>,
    trusted: &BTreeSet<ClusterId>,
) -> Vec<(Option<ClusterId>, super::follower::Leader)> {
    let led = |cluster: &Option<ClusterId>| cluster.is_some_and(|c| trusted.contains(&c));
    if named.iter().any(|(cluster, _)| led(cluster)) {
        named.retain(|(cluster, _)| led(cluster));
    }
    named
}

/// The leader to ask for a join, for a node outside any cluster, from what admitted peers
/// answered (their cluster, if named yet, and the leader they name): the cluster the most of
/// them answer from, the older on a tie, as [`better_cluster`] ranks them, and its leader as
/// most of them name it. A cluster still writing its genesis has no id yet: it ranks after
/// every named one.
pub fn cluster_to_join(
    answers: impl IntoIterator<Item = (Option<ClusterId>, super::follower::Leader)>,
) -> Option<super::follower::Leader> {
    type Tally = std::collections::BTreeMap<(u64, String), (super::follower::Leader, usize)>;
    let mut clusters: std::collections::BTreeMap<Option<ClusterId>, (usize, Tally)> =
        Default::default();
    for (cluster, leader) in answers {
        let (count, leaders) = clusters.entry(cluster).or_default();
        *count += 1;
        leaders
            .entry((leader.0, leader.1.peer_id.clone()))
            .or_insert((leader, 0))
            .1 += 1;
    }
    let rank = |cluster: &Option<ClusterId>, count: usize| {
        (cluster.is_some(), count, std::cmp::Reverse(*cluster))
    };
    let (_, (_, leaders)) = clusters
        .into_iter()
        .max_by_key(|(cluster, (count, _))| rank(cluster, *count))?;
    leaders
        .into_values()
        .max_by_key(|(_, votes)| *votes)
        .map(|(leader, _)| leader)
}

/// The leader of this node's own cluster, when that leader's raft membership no longer holds this
/// node: a voter replaced while it was away, a node restored from a backup older than its removal,
/// or a raft node whose seat never committed. Such a node hears no leader (none sends it appends,
/// and members refuse its votes), so the autopilot asks this only of a voter whose cluster has had
/// no leader for longer than an election, of a node its own membership has not registered, with its
/// log standing still, for as long, of a raft member whose leader has sent it nothing for 45 s
/// ([`super::contact`]), and of one whose record froze. Only the members this node's own raft
/// membership registers are asked who leads (by the PeerId registered for them: a token holder that
/// was never a voter here has no say), the leader more than half of those answering from this
/// cluster name is asked in turn (an answer naming no leader counts against it: one registered node
/// cannot decide while the others know no leader), and only its own answer decides: it must name
/// itself as leader of this cluster, with a settled membership (applied, not changing) that leaves
/// this node out. Peers behind the rotation are not asked.
pub async fn removed(ledger: &Ledger) -> Option<super::follower::Leader> {
    let ours = ledger.state().cluster()?;
    let me = ledger.node_id();
    // Each PeerId once: a node registered under two raft ids (it joined again) has one say.
    let registered: std::collections::BTreeSet<libp2p::PeerId> = {
        let metrics = ledger.raft().metrics().borrow().clone();
        metrics
            .membership_config
            .membership()
            .nodes()
            .filter(|(id, _)| **id != me)
            .filter_map(|(_, node)| node.peer_id.parse().ok())
            .collect()
    };
    let p2p = ledger.p2p();
    let asked = registered.into_iter().filter(|peer| !p2p.is_behind(peer));
    let answers = service::ask(ledger, asked).await;
    let leader = named_by_most(&answers, ours)?;
    let peer: libp2p::PeerId = leader.1.peer_id.parse().ok()?;
    if p2p.is_behind(&peer) {
        return None;
    }
    let said = service::ask(ledger, [peer]).await.pop()?;
    left_out(&said, &leader, ours, me).then_some(leader)
}

/// The leader that more than half of the `answers` from cluster `ours` name, an answer naming
/// no leader counted as one against.
fn named_by_most(
    answers: &[super::raft::network::Hello],
    ours: ClusterId,
) -> Option<super::follower::Leader> {
    let ours: Vec<&super::raft::network::Hello> = answers
        .iter()
        .filter(|hello| hello.cluster == Some(ours))
        .collect();
    let leader = cluster_to_join(
        ours.iter()
            .filter_map(|hello| Some((hello.cluster, hello.leader.clone()?))),
    )?;
    let naming = ours
        .iter()
        .filter(|hello| {
            hello
                .leader
                .as_ref()
                .is_some_and(|(id, node)| *id == leader.0 && node.peer_id == leader.1.peer_id)
        })
        .count();
    (2 * naming > ours.len()).then_some(leader)
}

/// Whether `said`, the answer of `leader` itself, shows it leading cluster `ours` without
/// node `me` in its membership.
fn left_out(
    said: &super::raft::network::Hello,
    leader: &super::follower::Leader,
    ours: ClusterId,
    me: u64,
) -> bool {
    said.node_id == leader.0
        && said.cluster == Some(ours)
        && said.leader.as_ref().map(|(id, _)| *id) == Some(said.node_id)
        && !said.members.is_empty()
        && !said.members.contains(&me)
}

/// Adds the applied state to the states carried over, then leaves the current cluster; returns
/// every state carried, oldest first. A node that leaves again before it re-proposed what it
/// carried (clusters merging back and forth across a flapping partition) keeps carrying the
/// earlier states too: the one it leaves may never have received them.
pub async fn leave(ledger: &Ledger) -> Result<Vec<LedgerState>, super::LedgerError> {
    let mut carried = load_carried(ledger.dir());
    let state = ledger.state();
    // A raft member that never applied its cluster's genesis holds nothing of it.
    if state.cluster().is_some() {
        carried.push(std::sync::Arc::unwrap_or_clone(state));
    }
    if carried.len() > MAX_CARRIED {
        let dropped = carried.len() - MAX_CARRIED;
        tracing::warn!(
            dropped,
            "this node left clusters {MAX_CARRIED} times without re-proposing what it carried; \
             the oldest carried states are dropped"
        );
        carried.drain(..dropped);
    }
    save_carried(ledger.dir(), &carried).map_err(|e| super::LedgerError::Storage {
        path: CARRIED.path(ledger.dir()).display().to_string(),
        reason: e.to_string(),
    })?;
    ledger.reset().await?;
    Ok(carried)
}

/// The most states a node carries at once (each is at most a whole ledger).
const MAX_CARRIED: usize = 8;

fn save_carried(dir: &Path, states: &[LedgerState]) -> io::Result<()> {
    CARRIED.save(dir, &states)
}

/// What `carried.json` holds: the states carried, or the one state a node carried before it
/// kept several.
#[derive(serde::Deserialize)]
#[serde(untagged)]
enum CarriedFile {
    Many(Vec<LedgerState>),
    One(Box<LedgerState>),
}

/// The carried states of an unfinished merge, oldest first; none when there is none. An
/// unreadable file is reported and dropped: the merge then only loses what the winner lacks
/// from this node's old clusters.
pub fn load_carried(dir: &Path) -> Vec<LedgerState> {
    match CARRIED.load(dir) {
        Some(CarriedFile::Many(states)) => states,
        Some(CarriedFile::One(state)) => vec![*state],
        None => Vec::new(),
    }
}

/// Forgets the carried state once everything in it was re-proposed.
pub fn clear_carried(dir: &Path) {
    CARRIED.clear(dir)
}

/// The key-value commands that bring `carried` (the losing cluster's state) into `current`
/// (the winner's): one [`Command::CarryKv`] for each entry and each recent deletion the winner
/// does not already reflect. Each is decided when it applies ([`LedgerState::carry`]'s rules),
/// so a write made meanwhile, or a differing copy carried by another member of the same
/// cluster, is never overwritten without being kept.
fn key_values(carried: &LedgerState, current: &LedgerState) -> Vec<Command> {
    let Some(from) = carried.cluster() else {
        return Vec::new();
    };
    let held = |bucket: &str, key: &str| current.bucket(bucket).and_then(|b| b.get(key));
    let mut commands = Vec::new();
    for (bucket, entries) in carried.buckets() {
        for (key, value) in entries {
            let done = held(bucket, key) == Some(value)
                || held(&merged_bucket(Some(from), bucket), key) == Some(value);
            if !done {
                commands.push(Command::CarryKv {
                    from,
                    bucket: bucket.clone(),
                    key: key.clone(),
                    carried: Carried::Value(value.clone()),
                });
            }
        }
    }
    for deleted in carried.deleted().iter() {
        let done = held(&deleted.bucket, &deleted.key).is_none()
            && current.deleted().contains(&deleted.bucket, &deleted.key);
        if !done {
            commands.push(Command::CarryKv {
                from,
                bucket: deleted.bucket.clone(),
                key: deleted.key.clone(),
                carried: Carried::Deleted,
            });
        }
    }
    commands
}

/// Whether the effect of the operator's `command` shows in `state`: a denial while the PeerId
/// is denied, a trust while the PeerId is trusted, a reservation while it stands, a role or
/// policy while it is the one set.
fn still_holds(state: &LedgerState, command: &Command) -> bool {
    match command {
        Command::Deny { peer } => state.is_denied(peer),
        Command::Allow { peer } => !state.is_denied(peer),
        Command::Trust { peer } => state.trusted().contains(peer),
        Command::Untrust { peer } => !state.trusted().contains(peer),
        Command::Reserve { peer, address } => state.reservations().get(address) == Some(peer),
        Command::Unreserve { address } => !state.reservations().contains_key(address),
        Command::SetRolePolicy(policy) => state.policy_is_set() && state.policy() == *policy,
        Command::SetFixedRole { peer, role, .. } => match state.members().get(peer) {
            Some(m) => m.fixed_role == *role,
            // A role signed for a member to come stands for it there: carried as well.
            None => state.signed_role(peer) == Some(*role),
        },
        _ => false,
    }
}

/// The commands that put back into `current` what `carried` holds and `current` lacks, for the
/// member `me`; key-value entries as [`key_values`] says.
pub fn readoption(carried: &LedgerState, current: &LedgerState, me: &str) -> Vec<Command> {
    let mut commands = key_values(carried, current);
    for (name, sets) in carried.dns() {
        for (rtype, records) in sets {
            let held = current.dns().get(name).and_then(|s| s.get(rtype));
            for record in records {
                if held.is_none_or(|values| !values.iter().any(|r| r.value == record.value)) {
                    commands.push(Command::PutDns {
                        name: name.clone(),
                        rtype: *rtype,
                        record: record.clone(),
                    });
                }
            }
        }
    }
    for (pattern, records) in carried.dns_patterns() {
        if !current.dns_patterns().contains_key(pattern) {
            commands.push(Command::PutDnsPattern {
                pattern: pattern.clone(),
                records: records.clone(),
                merge: false,
            });
        }
    }
    // The operator's last signed command per subject whose effect the left cluster still
    // shows (a removal is an act, signed for that cluster alone, and a rotation's grant was
    // used there, so neither is carried), where the winner holds none as late; the later of the two
    // clusters' applies. A reservation or denial the operator signed is never carried
    // unsigned (a mesh with an operator key refuses that, and the signed one decides).
    let signed: BTreeMap<&String, &crate::operator::Signed> = carried
        .operator_marks()
        .last()
        .iter()
        .filter(|(subject, last)| {
            let later = current
                .operator_marks()
                .last()
                .get(*subject)
                .is_none_or(|theirs| theirs.seq < last.seq);
            // A trust applies only under the rules of version 4: carried into a winner that
            // has not adopted them, it would be lost there and use up nothing.
            let ruled = |c: &Command| current.rules() >= TRUSTED_SEATS || !c.changes_trust();
            later
                && last
                    .command()
                    .is_ok_and(|c| still_holds(carried, &c) && ruled(&c))
        })
        .collect();
    for last in signed.values() {
        commands.push(Command::Operator(Box::new((*last).clone())));
    }
    let unsigned = |command: &Command| {
        operator::subject(command)
            .is_none_or(|subject| !carried.operator_marks().last().contains_key(&subject))
    };
    for (address, peer) in carried.reservations() {
        let reserve = Command::Reserve {
            peer: peer.clone(),
            address: *address,
        };
        if !current.reservations().contains_key(address) && unsigned(&reserve) {
            commands.push(reserve);
        }
    }
    for peer in carried.denied() {
        let deny = Command::Deny { peer: peer.clone() };
        if !current.is_denied(peer) && unsigned(&deny) {
            commands.push(deny);
        }
    }
    for (name, sealed) in carried.secrets() {
        if current.secret(name).is_none() {
            commands.push(Command::PutSecret {
                name: name.clone(),
                sealed: sealed.clone(),
            });
        }
    }
    let mine = carried.members().get(me);
    let now = current.members().get(me);
    let fixed = mine.and_then(|m| m.fixed_role);
    if fixed.is_some() && now.and_then(|m| m.fixed_role).is_none() {
        commands.push(Command::SetFixedRole {
            peer: me.to_string(),
            role: fixed,
            force: false,
        });
    }
    // A role this member deployed stays bound to it in the winner (Kubernetes runs it).
    if let Some(role) = mine.and_then(|m| m.deployed)
        && now.and_then(|m| m.deployed) != Some(role)
    {
        let report = mine
            .and_then(|m| m.bootstrap.clone())
            .filter(|r| r.phase == Phase::Deployed && r.role == Some(role))
            .unwrap_or(BootstrapReport {
                role: Some(role),
                phase: Phase::Deployed,
                detail: String::new(),
                at: 0,
            });
        commands.push(Command::ReportBootstrap {
            peer: me.to_string(),
            report,
            restored: true,
        });
    }
    commands
}

#[cfg(test)]
mod tests {
    use proptest::strategy::Strategy as _;

    use super::*;
    use crate::ledger::state::{
        BootstrapReport, DnsRecord, FixedRole, Phase, RecordType, Role, join_command,
    };

    fn cluster(created_at: u64, id: u64) -> ClusterId {
        ClusterId { created_at, id }
    }

    #[test]
    fn a_cluster_counts_only_while_its_leader_confirms_it_leads_it() {
        let theirs = cluster(10, 1);
        let elsewhere = cluster(20, 2);
        let (leader, member, other) = (
            libp2p::PeerId::random(),
            libp2p::PeerId::random(),
            libp2p::PeerId::random(),
        );
        let node = |p: &libp2p::PeerId| crate::ledger::raft::LedgerNode {
            peer_id: p.to_string(),
        };
        let hello =
            |node_id: u64, cluster: ClusterId, leads: Option<(u64, &libp2p::PeerId)>| Hello {
                node_id,
                in_cluster: true,
                cluster: Some(cluster),
                leader: leads.map(|(id, p)| (id, node(p))),
                members: Vec::new(),
                operator: None,
                lowest_admitted: None,
                trust: None,
            };
        // Two members name raft node 7 at `leader` as the leader.
        let answers = [
            (member, hello(1, theirs, Some((7, &leader)))),
            (other, hello(2, theirs, Some((7, &leader)))),
        ];
        // Unheard, the leader confirms nothing.
        assert!(led_clusters(&answers, &[]).is_empty());
        // Asked itself, it says it leads that cluster as node 7: both count.
        let confirms = [(leader, hello(7, theirs, Some((7, &leader))))];
        assert_eq!(led_clusters(&answers, &confirms), vec![theirs, theirs]);
        // Among the strangers' answers, the same.
        let mut with_leader = answers.to_vec();
        with_leader.push((leader, hello(7, theirs, Some((7, &leader)))));
        assert_eq!(led_clusters(&with_leader, &[]).len(), 3);
        // It leads nobody (cut off from voters gone for good): none counts.
        let disowns = [(leader, hello(7, theirs, None))];
        assert!(led_clusters(&answers, &disowns).is_empty());
        // It wiped its raft state and leads another cluster under a new raft id: the members
        // left behind name a leader that is gone.
        let moved = [(leader, hello(9, elsewhere, Some((9, &leader))))];
        assert!(led_clusters(&answers, &moved).is_empty());
        // An answer naming no leader never counts.
        assert!(led_clusters(&[(member, hello(1, theirs, None))], &confirms).is_empty());
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(1000))]

        /// Two or three clusters on one LAN, each member's ledger recording a random part of its
        /// own cluster's members (joins not yet applied there) and, as live members too, some nodes
        /// now in other clusters (`stale`: they were members before a partition, left, and their
        /// leases have not expired), some nodes answering nobody (`mute`, the same for every
        /// asker), with and without a leader known, and each member having heard another cluster's
        /// feed or not (`rival`): no two members choose each other's cluster. When every node
        /// answers and every member that holds a stale record asks everyone (no leader, or a rival
        /// heard), every member outside the largest cluster (the oldest of those as large) chooses
        /// it and no member of it moves. Members ignoring the answers of their own cluster's
        /// unrecorded members made both sides move at once (50 nodes started together, two clusters
        /// formed 2 s apart); members counting stale records kept two clusters apart until those
        /// leases expired (the ledger simulation with the daemon's timeouts).
        #[test]
        fn members_seeing_the_same_peers_never_choose_each_others_cluster(
            sizes in proptest::collection::vec(1usize..12, 2..=3),
            recorded in proptest::collection::vec(
                proptest::collection::vec(proptest::bool::ANY, 36),
                36,
            ),
            stale in proptest::option::of(proptest::collection::vec(
                proptest::collection::vec(proptest::bool::weighted(0.3), 36),
                36,
            )),
            mute in proptest::option::of(proptest::collection::vec(proptest::bool::weighted(0.2), 36)),
            leaderless in proptest::bool::ANY,
            rival in proptest::collection::vec(proptest::bool::ANY, 36),
        ) {
            let clusters: Vec<ClusterId> =
                (0..sizes.len()).map(|c| cluster(100 * c as u64, c as u64)).collect();
            // Node i: its PeerId, its cluster, and its cluster's leader (the cluster's first).
            let mut nodes = Vec::new();
            for (c, size) in sizes.iter().enumerate() {
                let first = nodes.len();
                for _ in 0..*size {
                    nodes.push((libp2p::PeerId::random(), c, first));
                }
            }
            let everyone_answers = mute.is_none();
            let mute = |i: usize| mute.as_ref().is_some_and(|m| m[i]);
            let hello = |i: usize| {
                let (_, c, leader) = nodes[i];
                let node = crate::ledger::raft::LedgerNode { peer_id: nodes[leader].0.to_string() };
                Hello {
                    node_id: i as u64,
                    in_cluster: true,
                    cluster: Some(clusters[c]),
                    leader: Some((leader as u64, node)),
                    members: Vec::new(),
                    operator: None,
                    lowest_admitted: None,
                    trust: None,
                }
            };
            let stale = |me: usize, i: usize| stale.as_ref().is_some_and(|s| s[me][i]);
            let mut chose = std::collections::BTreeMap::new();
            for (me, (peer, c, _)) in nodes.iter().enumerate() {
                let counted: BTreeSet<String> = (0..nodes.len())
                    .filter(|&i| {
                        i == me
                            || (nodes[i].1 == *c && recorded[me][i])
                            || (nodes[i].1 != *c && stale(me, i))
                    })
                    .map(|i| nodes[i].0.to_string())
                    .collect();
                let everyone = leaderless || rival[me];
                let answers: Vec<(libp2p::PeerId, Hello)> = (0..nodes.len())
                    .filter(|&i| i != me && !mute(i))
                    .filter(|&i| is_asked(everyone, &counted, &nodes[i].0.to_string()))
                    .map(|i| (nodes[i].0, hello(i)))
                    .collect();
                let leaders: Vec<(libp2p::PeerId, Hello)> = (0..nodes.len())
                    .filter(|&i| nodes[i].2 == i && nodes[i].0 != *peer && !mute(i))
                    .filter(|&i| !answers.iter().any(|(p, _)| *p == nodes[i].0))
                    .map(|i| (nodes[i].0, hello(i)))
                    .collect();
                let own = own_count(clusters[*c], false, &counted, &answers);
                let target =
                    merge_target(clusters[*c], own, false, &answers, &leaders, |_, _| false);
                let to = target.map(|w| clusters.iter().position(|x| *x == w).unwrap());
                chose.insert(me, (*c, to));
            }
            for (from, to) in chose.values() {
                if let Some(to) = to {
                    proptest::prop_assert!(
                        !chose.values().any(|(f, t)| f == to && *t == Some(*from)),
                        "members of clusters {} and {} chose each other's (sizes {:?})",
                        from, to, sizes
                    );
                }
            }
            // A member holding stale records that asks only strangers may stay.
            let blind = (0..nodes.len()).any(|me| {
                !rival[me] && (0..nodes.len()).any(|i| nodes[i].1 != nodes[me].1 && stale(me, i))
            });
            if everyone_answers && (leaderless || !blind) {
                let top = (0..sizes.len())
                    .max_by_key(|&c| (sizes[c], std::cmp::Reverse(clusters[c])))
                    .unwrap();
                for (from, to) in chose.values() {
                    let expected = (*from != top).then_some(top);
                    proptest::prop_assert_eq!(*to, expected, "sizes {:?}", sizes);
                }
            }
        }
    }

    /// One member's merge check of cluster 0, among rival clusters and nodes outside any, some
    /// of them not answering (`mute`, as on a starved machine), peers heard of and not yet
    /// admitted (`unresolved`), and its ledger recording a random part of its own cluster:
    /// whenever the check settles the cluster, at once or past the settle limit
    /// ([`super::super::settle`]), the cluster keeps every member however the rest of the mesh
    /// ends, even all of it (every rival and every unsettled peer, the unresolved ones
    /// included) merged into one cluster older than cluster 0, as its members count it once
    /// their ledgers agree. The test fails when either way to settle ran fewer than 50 times,
    /// so that it cannot pass by settling nothing. A rule that counted a peer that did not
    /// answer as nothing settled clusters a hidden rival then outgrew. Past the rivals' limit a
    /// cluster settles on what it saw alone, which peers silent for that long can still outgrow:
    /// that is a fallback for liveness, not covered here. Peers this node never heard of are
    /// not modelled: no rule of one node's can count them.
    #[test]
    fn a_cluster_found_settled_is_left_by_none_of_its_members_however_the_rest_ends() {
        use super::super::settle::{SETTLE_LIMIT, Settling};
        use proptest::prelude::*;
        let strategy = (
            proptest::collection::vec(1usize..12, 1..=4),
            prop_oneof![Just(0usize), 0usize..6],
            prop_oneof![Just(0.0f64), 0.0f64..0.5],
            proptest::collection::vec(0.0f64..1.0, 54),
            proptest::collection::vec(proptest::bool::ANY, 12),
            prop_oneof![Just(0usize), 0usize..4],
        );
        let hits = std::cell::Cell::new([0usize; 2]);
        let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig::with_cases(3000));
        runner
            .run(
                &strategy,
                |(sizes, outside, mute_rate, draws, recorded, unresolved)| {
                    let clusters: Vec<ClusterId> = (0..sizes.len())
                        .map(|c| cluster(100 + c as u64, c as u64))
                        .collect();
                    // Node i: its PeerId, its cluster (none for the outsiders), its cluster's leader.
                    let mut nodes: Vec<(libp2p::PeerId, Option<usize>, usize)> = Vec::new();
                    for (c, size) in sizes.iter().enumerate() {
                        let first = nodes.len();
                        for _ in 0..*size {
                            nodes.push((libp2p::PeerId::random(), Some(c), first));
                        }
                    }
                    for _ in 0..outside {
                        let i = nodes.len();
                        nodes.push((libp2p::PeerId::random(), None, i));
                    }
                    let hello = |i: usize| {
                        let (_, c, leader) = nodes[i];
                        let node = crate::ledger::raft::LedgerNode {
                            peer_id: nodes[leader].0.to_string(),
                        };
                        Hello {
                            node_id: i as u64,
                            in_cluster: c.is_some(),
                            cluster: c.map(|c| clusters[c]),
                            leader: c.map(|_| (leader as u64, node)),
                            members: Vec::new(),
                            operator: None,
                            lowest_admitted: None,
                            trust: None,
                        }
                    };
                    // Node 0 checks, with a working leader: it asks every peer its ledger does not
                    // record as a live member of cluster 0.
                    let counted: BTreeSet<String> = (0..sizes[0])
                        .filter(|&i| i == 0 || recorded[i])
                        .map(|i| nodes[i].0.to_string())
                        .collect();
                    let asked: Vec<usize> = (1..nodes.len())
                        .filter(|&i| is_asked(false, &counted, &nodes[i].0.to_string()))
                        .collect();
                    let answers: Vec<(libp2p::PeerId, Hello)> = asked
                        .iter()
                        .filter(|&&i| draws[i] >= mute_rate)
                        .map(|&i| (nodes[i].0, hello(i)))
                        .collect();
                    let own = own_count(clusters[0], false, &counted, &answers);
                    let stays = merge_target(clusters[0], own, false, &answers, &[], |_, _| false)
                        .is_none();
                    let check =
                        settle_check(clusters[0], stays, own, asked.len(), &answers, unresolved);
                    let now = std::time::Instant::now();
                    let mut settling = Settling::default();
                    settling.checked(check, now);
                    let rest = nodes.len() - sizes[0] + unresolved;
                    for (way, at) in [now, now + SETTLE_LIMIT].into_iter().enumerate() {
                        if !settling.settled(Some(clusters[0]), at) {
                            continue;
                        }
                        let mut counts = hits.get();
                        counts[way] += 1;
                        hits.set(counts);
                        let one_older = vec![cluster(1, 99); rest];
                        prop_assert_eq!(
                            better_cluster(clusters[0], sizes[0], &one_older),
                            None,
                            "way {}: sizes {:?}, {} outside, {} unresolved, check {:?}",
                            way,
                            sizes,
                            outside,
                            unresolved,
                            check
                        );
                        break;
                    }
                    Ok(())
                },
            )
            .unwrap();
        let [at_once, past_settle] = hits.get();
        assert!(
            at_once >= 50 && past_settle >= 50,
            "settled at once {at_once} and past the settle limit {past_settle} times: each must \
             run at least 50 times"
        );
    }

    #[test]
    fn a_returning_node_asks_the_leader_only_more_than_half_of_its_registered_peers_name() {
        let ours = cluster(10, 1);
        let node = |peer: &str| crate::ledger::raft::LedgerNode {
            peer_id: peer.into(),
        };
        let hello =
            |cluster: ClusterId, leader: Option<(u64, &str)>| crate::ledger::raft::network::Hello {
                node_id: 9,
                in_cluster: true,
                cluster: Some(cluster),
                leader: leader.map(|(id, peer)| (id, node(peer))),
                members: vec![],
                operator: None,
                lowest_admitted: None,
                trust: None,
            };
        let l = Some((1, "L"));
        let named = |answers: &[crate::ledger::raft::network::Hello]| {
            named_by_most(answers, ours).map(|(id, node)| (id, node.peer_id))
        };
        let leader_l = Some((1, "L".to_string()));
        assert_eq!(named(&[hello(ours, l)]), leader_l);
        assert_eq!(
            named(&[hello(ours, l), hello(ours, l), hello(ours, None)]),
            leader_l
        );
        assert_eq!(
            named(&[hello(ours, l), hello(ours, None), hello(ours, None)]),
            None,
            "one alone while the others know no leader"
        );
        assert_eq!(named(&[hello(ours, l), hello(ours, Some((2, "M")))]), None);
        assert_eq!(
            named(&[hello(ours, l), hello(ours, Some((2, "L")))]),
            None,
            "the same PeerId under another raft id is another leader"
        );
        assert_eq!(
            named(&[hello(ours, l), hello(cluster(20, 2), Some((2, "M")))]),
            leader_l,
            "answers from another cluster do not count"
        );
        assert_eq!(named(&[hello(ours, None)]), None);
        assert_eq!(named(&[]), None);
    }

    #[test]
    fn a_node_is_left_out_only_on_the_word_of_the_leader_of_its_own_cluster() {
        let ours = cluster(10, 1);
        let (me, leader_id) = (7, 1);
        let leader = (
            leader_id,
            crate::ledger::raft::LedgerNode {
                peer_id: "L".into(),
            },
        );
        let said = |node_id: u64, cluster: ClusterId, leads: u64, members: Vec<u64>| {
            crate::ledger::raft::network::Hello {
                node_id,
                in_cluster: true,
                cluster: Some(cluster),
                leader: Some((leads, leader.1.clone())),
                members,
                operator: None,
                lowest_admitted: None,
                trust: None,
            }
        };
        assert!(left_out(
            &said(1, ours, 1, vec![1, 2, 3]),
            &leader,
            ours,
            me
        ));
        // Still a member: nothing to reset.
        assert!(!left_out(
            &said(1, ours, 1, vec![1, 2, 7]),
            &leader,
            ours,
            me
        ));
        // Not the leader's own word, another cluster, or no membership known.
        assert!(!left_out(
            &said(2, ours, 1, vec![1, 2, 3]),
            &leader,
            ours,
            me
        ));
        assert!(!left_out(
            &said(1, ours, 2, vec![1, 2, 3]),
            &leader,
            ours,
            me
        ));
        assert!(!left_out(
            &said(1, cluster(9, 1), 1, vec![1, 2, 3]),
            &leader,
            ours,
            me
        ));
        assert!(!left_out(&said(1, ours, 1, vec![]), &leader, ours, me));
    }

    /// A leader drawn from a small pool: three PeerIds under two raft ids each, so that one
    /// PeerId under another raft id is another leader.
    fn pooled_leader(n: u8) -> crate::ledger::follower::Leader {
        (
            u64::from(n % 2),
            crate::ledger::raft::LedgerNode {
                peer_id: ["a", "b", "c"][usize::from(n / 2) % 3].into(),
            },
        )
    }

    /// A cluster drawn from a small pool: none yet (a cluster writing its genesis), or one of
    /// four ids whose ages differ from their order, two of them formed in the same second.
    fn pooled_cluster(n: u8) -> Option<ClusterId> {
        [
            None,
            Some(cluster(30, 1)),
            Some(cluster(10, 4)),
            Some(cluster(20, 3)),
            Some(cluster(10, 2)),
        ][usize::from(n) % 5]
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(2000))]

        /// A newcomer's choice depends on what was answered, not on the order the answers
        /// came in; it goes to the cluster the most peers answer from (a named one before one
        /// still forming, the oldest of those as large), through a leader at least as many of
        /// that cluster's answers name as any other. Worked out here by counting, apart from
        /// the code's ranking.
        #[test]
        fn a_newcomer_joins_the_largest_cluster_through_its_most_named_leader_in_any_order(
            (answers, shuffled) in proptest::collection::vec((0u8..5, 0u8..6), 0..14)
                .prop_flat_map(|answers| {
                    let shuffled = proptest::strategy::Just(answers.clone()).prop_shuffle();
                    (proptest::strategy::Just(answers), shuffled)
                }),
        ) {
            let drawn = |raw: &[(u8, u8)]| -> Vec<_> {
                raw.iter().map(|(c, l)| (pooled_cluster(*c), pooled_leader(*l))).collect()
            };
            let answers = drawn(&answers);
            let chosen = cluster_to_join(answers.clone());
            proptest::prop_assert_eq!(&chosen, &cluster_to_join(drawn(&shuffled)));
            let Some(chosen) = chosen else {
                proptest::prop_assert!(answers.is_empty());
                return Ok(());
            };
            let count = |c: Option<ClusterId>| answers.iter().filter(|(x, _)| *x == c).count();
            let named = answers.iter().filter_map(|(c, _)| *c).collect::<BTreeSet<_>>();
            let winner = match named.iter().map(|c| count(Some(*c))).max() {
                // The oldest of the largest named clusters, the lower id of two as old.
                Some(most) => named
                    .iter()
                    .copied()
                    .filter(|c| count(Some(*c)) == most)
                    .min_by_key(|c| (c.created_at, c.id)),
                None => None,
            };
            let naming = |l: &crate::ledger::follower::Leader| {
                answers.iter().filter(|(c, x)| *c == winner && x == l).count()
            };
            proptest::prop_assert!(naming(&chosen) > 0, "{chosen:?} is not named in {winner:?}");
            for (c, other) in &answers {
                if *c == winner {
                    proptest::prop_assert!(naming(other) <= naming(&chosen));
                }
            }
        }

        /// A voter asking whether it was removed follows a leader only when more than half of
        /// the answers from its own cluster name that leader (under the same raft id), in any
        /// order, and whatever peers of other clusters answer: one registered node's word
        /// decides nothing while another answer from the cluster names no leader or another.
        #[test]
        fn a_returning_node_follows_only_a_leader_most_of_its_own_cluster_name_in_any_order(
            (answers, shuffled) in proptest::collection::vec(
                (proptest::bool::weighted(0.7), proptest::option::of(0u8..6)),
                0..10,
            )
            .prop_flat_map(|answers| {
                let shuffled = proptest::strategy::Just(answers.clone()).prop_shuffle();
                (proptest::strategy::Just(answers), shuffled)
            }),
        ) {
            let ours = cluster(10, 1);
            let hellos = |raw: &[(bool, Option<u8>)]| -> Vec<Hello> {
                raw.iter()
                    .map(|(own, named)| Hello {
                        node_id: 9,
                        in_cluster: true,
                        cluster: Some(if *own { ours } else { cluster(20, 2) }),
                        leader: named.map(pooled_leader),
                        members: vec![],
                        operator: None,
                        lowest_admitted: None,
                        trust: None,
                    })
                    .collect()
            };
            let answers = hellos(&answers);
            let decided = named_by_most(&answers, ours);
            proptest::prop_assert_eq!(&decided, &named_by_most(&hellos(&shuffled), ours));
            let own: Vec<&Hello> = answers.iter().filter(|h| h.cluster == Some(ours)).collect();
            let only_own: Vec<Hello> = own.iter().map(|h| (*h).clone()).collect();
            proptest::prop_assert_eq!(&decided, &named_by_most(&only_own, ours));
            let naming = |l: &crate::ledger::follower::Leader| {
                own.iter().filter(|h| h.leader.as_ref() == Some(l)).count()
            };
            match &decided {
                Some(l) => proptest::prop_assert!(2 * naming(l) > own.len()),
                None => {
                    for h in &own {
                        if let Some(l) = &h.leader {
                            proptest::prop_assert!(2 * naming(l) <= own.len());
                        }
                    }
                }
            }
        }
    }

    fn leader(peer: &str) -> crate::ledger::follower::Leader {
        (
            1,
            crate::ledger::raft::LedgerNode {
                peer_id: peer.into(),
            },
        )
    }

    #[test]
    fn a_newcomer_joins_the_cluster_most_peers_answer_from_through_the_leader_most_name() {
        let forged = Some(cluster(0, 0));
        let real = Some(cluster(1_700_000_000, 5));
        let answers = vec![
            (forged, leader("mallory")),
            (real, leader("l")),
            (real, leader("l")),
            (real, leader("stale")),
            (None, leader("forming")),
        ];
        let chosen = cluster_to_join(answers).unwrap();
        assert_eq!(chosen.1.peer_id, "l");
        // A named cluster comes before one still writing its genesis; alone, that one serves.
        assert_eq!(
            cluster_to_join(vec![(None, leader("forming")), (forged, leader("m"))])
                .unwrap()
                .1
                .peer_id,
            "m"
        );
        assert_eq!(
            cluster_to_join(vec![(None, leader("forming"))])
                .unwrap()
                .1
                .peer_id,
            "forming"
        );
        assert!(cluster_to_join(vec![]).is_none());
    }

    #[test]
    fn a_cluster_is_left_only_for_one_seen_larger_or_as_large_and_older() {
        let ours = cluster(1_700_000_000, 5);
        let ancient = cluster(0, 0);
        let younger = cluster(1_800_000_000, 9);
        // One stranger answering from the oldest id there is moves no cluster of two or more.
        assert_eq!(better_cluster(ours, 3, &[ancient]), None);
        assert_eq!(better_cluster(ours, 2, &[ancient]), None);
        // A lone node meets a cluster of three: it joins, whatever the clocks say.
        assert_eq!(
            better_cluster(ancient, 1, &[younger, younger, younger]),
            Some(younger)
        );
        // As many on both sides: the older wins, from both points of view.
        assert_eq!(better_cluster(younger, 2, &[ours, ours]), Some(ours));
        assert_eq!(better_cluster(ours, 2, &[younger, younger]), None);
        // Two lone nodes: the older cluster wins.
        assert_eq!(better_cluster(younger, 1, &[ancient]), Some(ancient));
        // A cluster that lost its quorum joins any cluster with a leader.
        assert_eq!(better_cluster(ours, 0, &[younger]), Some(younger));
        // The largest of several is chosen; peers of this node's own cluster do not count.
        assert_eq!(
            better_cluster(ours, 1, &[ours, ancient, younger, younger]),
            Some(younger)
        );
    }

    #[test]
    fn a_cluster_a_trusted_machine_leads_is_never_left_for_one_no_trusted_machine_leads() {
        let ours = cluster(1_700_000_000, 5);
        let forged = cluster(0, 0);
        let other = cluster(1_800_000_000, 9);
        let trusted = |clusters: &[ClusterId]| clusters.iter().copied().collect::<BTreeSet<_>>();
        // Identities answering from a forged cluster, however many, draw in no cluster a
        // trusted machine leads.
        let many = [forged; 10];
        assert_eq!(better_trusted(ours, 2, true, &many, &trusted(&[])), None);
        assert_eq!(
            better_cluster(ours, 2, &many),
            Some(forged),
            "by counts alone"
        );
        // Two clusters trusted machines lead: the counts decide, from both sides.
        let both = trusted(&[ours, other]);
        assert_eq!(
            better_trusted(ours, 2, true, &[other, other, other], &both),
            Some(other)
        );
        assert_eq!(better_trusted(other, 3, true, &[ours, ours], &both), None);
        // From a cluster no trusted machine leads, the trusted one wins whatever the counts,
        // and from it the other is never joined: the two agree.
        let theirs = trusted(&[other]);
        assert_eq!(
            better_trusted(ours, 9, false, &[other, forged, forged], &theirs),
            Some(other)
        );
        assert_eq!(better_trusted(other, 1, true, &[ours; 9], &theirs), None);
        // With no trusted leader in sight, counts alone, as before.
        assert_eq!(
            better_trusted(ours, 1, false, &[forged, forged], &trusted(&[])),
            Some(forged)
        );
    }

    #[test]
    fn a_newcomer_joins_only_a_cluster_a_trusted_machine_leads_when_it_sees_one() {
        let leader = |peer: &str| {
            (
                1,
                crate::ledger::raft::LedgerNode {
                    peer_id: peer.into(),
                },
            )
        };
        let (real, forged) = (cluster(10, 1), cluster(0, 0));
        let mut named = vec![(Some(real), leader("trusted"))];
        named.extend((0..5).map(|_| (Some(forged), leader("mallory"))));
        let chosen = |trusted: &[ClusterId]| {
            let trusted = trusted.iter().copied().collect();
            cluster_to_join(trusted_first(named.clone(), &trusted)).map(|(_, l)| l.peer_id)
        };
        assert_eq!(chosen(&[]).as_deref(), Some("mallory"), "by counts alone");
        assert_eq!(chosen(&[real]).as_deref(), Some("trusted"));
    }

    #[test]
    fn a_leader_shows_trust_only_with_the_operators_signature_for_itself() {
        let secret = crate::operator::OperatorSecret::generate();
        let key = secret.public();
        let (leader, other) = (libp2p::PeerId::random(), libp2p::PeerId::random());
        let said = |trust: Option<crate::operator::Signed>, peer: &libp2p::PeerId| Hello {
            node_id: 7,
            in_cluster: true,
            cluster: Some(cluster(10, 1)),
            leader: Some((
                7,
                crate::ledger::raft::LedgerNode {
                    peer_id: peer.to_string(),
                },
            )),
            members: Vec::new(),
            operator: None,
            lowest_admitted: None,
            trust: trust.map(Box::new),
        };
        let trust = |peer: &libp2p::PeerId| Command::Trust {
            peer: peer.to_string(),
        };
        let scope = || crate::operator::Scope {
            cluster: None,
            network: Some("home".into()),
        };
        let shows = |signed: Option<crate::operator::Signed>| {
            shows_trust(&key, &leader, &said(signed, &leader))
        };
        let own = secret.sign_in(5, &trust(&leader), scope());
        assert!(shows(Some(own.clone())));
        // Another machine's trust, a forged signature, another command, or none: no.
        assert!(!shows(Some(secret.sign_in(5, &trust(&other), scope()))));
        let forger = crate::operator::OperatorSecret::generate();
        assert!(!shows(Some(forger.sign_in(5, &trust(&leader), scope()))));
        let deny = Command::Deny {
            peer: leader.to_string(),
        };
        assert!(!shows(Some(secret.sign_in(5, &deny, scope()))));
        assert!(!shows(None));
        // The check reads no network a node knows, so that both sides of two clusters rank
        // them alike: a trust signed for another mesh run with the same key, or for none,
        // holds too (`docs/security.md`).
        let elsewhere = crate::operator::Scope {
            cluster: None,
            network: Some("another mesh".into()),
        };
        assert!(shows(Some(secret.sign_in(5, &trust(&leader), elsewhere))));
        assert!(shows(Some(secret.sign(5, &trust(&leader)))));
        // Nor a scope longer than the state keeps, signed or not.
        let long = crate::operator::Scope {
            cluster: None,
            network: Some("n".repeat(operator::MAX_SCOPE + 1)),
        };
        assert!(!shows(Some(secret.sign_in(5, &trust(&leader), long))));
        // Only an answer naming itself leader makes its cluster one a trusted machine leads.
        let member = (other, said(Some(own.clone()), &leader));
        let check = |peer: &libp2p::PeerId, hello: &Hello| shows_trust(&key, peer, hello);
        assert!(trusted_led(std::slice::from_ref(&member), &[], check).is_empty());
        let confirmed = [(leader, said(Some(own), &leader))];
        assert_eq!(
            trusted_led(&[member], &confirmed, check),
            [cluster(10, 1)].into_iter().collect()
        );
    }

    fn pool() -> ipnet::Ipv4Net {
        "10.1.0.0/24".parse().unwrap()
    }

    fn apply(state: &mut LedgerState, commands: &[Command]) {
        for command in commands {
            let index = state.applied() + 1;
            state.apply(index, command);
        }
    }

    fn put(bucket: &str, key: &str, value: &str) -> Command {
        Command::KvPut {
            bucket: bucket.into(),
            key: key.into(),
            value: value.into(),
        }
    }

    #[test]
    fn what_the_winner_lacks_is_put_back_and_the_winner_keeps_its_values() {
        let mut loser = LedgerState::new(pool());
        apply(
            &mut loser,
            &[
                Command::Genesis(cluster(200, 2)),
                join_command("me"),
                put("b", "only-loser", "1"),
                put("b", "both", "loser"),
                Command::PutDns {
                    name: "svc.example".into(),
                    rtype: RecordType::A,
                    record: DnsRecord {
                        value: "10.9.0.1".into(),
                        ttl: 60,
                    },
                },
                Command::PutDnsPattern {
                    pattern: "foo".into(),
                    records: [(
                        RecordType::A,
                        DnsRecord {
                            value: "10.9.0.2".into(),
                            ttl: 60,
                        },
                    )]
                    .into(),
                    merge: false,
                },
                Command::Deny {
                    peer: "evil".into(),
                },
                Command::PutSecret {
                    name: "s".into(),
                    sealed: vec![1, 2],
                },
                Command::SetFixedRole {
                    peer: "me".into(),
                    role: Some(FixedRole::Worker),
                    force: false,
                },
            ],
        );
        let mut winner = LedgerState::new(pool());
        apply(
            &mut winner,
            &[
                Command::Genesis(cluster(100, 1)),
                join_command("other"),
                put("b", "both", "winner"),
                join_command("me"),
            ],
        );
        let commands = readoption(&loser, &winner, "me");
        apply(&mut winner, &commands);
        let bucket = winner.bucket("b").unwrap();
        assert_eq!(bucket.get("only-loser").map(String::as_str), Some("1"));
        assert_eq!(bucket.get("both").map(String::as_str), Some("winner"));
        assert_eq!(
            winner.bucket(&merged_bucket(loser.cluster(), "b")).unwrap()["both"],
            "loser",
            "the loser's value of a conflict is kept"
        );
        assert!(winner.dns().contains_key("svc.example"));
        assert!(winner.dns_patterns().contains_key("foo"));
        assert!(winner.is_denied("evil"));
        assert_eq!(winner.secret("s"), Some(&[1u8, 2][..]));
        assert_eq!(winner.members()["me"].fixed_role, Some(FixedRole::Worker));
        assert!(
            readoption(&loser, &winner, "me").is_empty(),
            "a second pass has nothing left to put back"
        );
    }

    #[test]
    fn the_operators_signed_commands_carry_signed_and_the_later_per_subject_wins() {
        let secret = crate::operator::OperatorSecret::generate();
        let signed = |seq, command| Command::Operator(Box::new(secret.sign(seq, &command)));
        let deny = |peer: &str| Command::Deny { peer: peer.into() };
        let allow = |peer: &str| Command::Allow { peer: peer.into() };
        let mut loser = LedgerState::new(pool());
        apply(
            &mut loser,
            &[
                Command::Genesis(cluster(200, 2)),
                signed(10, deny("x")),
                signed(30, deny("y")),
                join_command("z"),
                signed(40, Command::Leave { peer: "z".into() }),
                join_command("z"),
                signed(50, deny("w")),
                signed(60, Command::Leave { peer: "w".into() }),
            ],
        );
        let mut winner = LedgerState::new(pool());
        apply(
            &mut winner,
            &[
                Command::Genesis(cluster(100, 1)),
                signed(20, allow("x")),
                signed(5, allow("y")),
                join_command("z"),
            ],
        );
        let commands = readoption(&loser, &winner, "me");
        assert!(
            commands.iter().all(|c| matches!(c, Command::Operator(_))),
            "no unsigned denial is carried beside the signed ones: {commands:?}"
        );
        assert_eq!(
            commands.len(),
            2,
            "y's and w's denials are later than the winner's and still hold (w's removal after \
             its denial does not hide it); z's and w's removals are acts, never carried (z \
             rejoined)"
        );
        apply(&mut winner, &commands);
        assert!(!winner.is_denied("x"), "the winner's later allowance holds");
        assert!(winner.is_denied("y"), "the loser's later denial holds");
        assert!(winner.is_denied("w"));
        assert!(winner.members().contains_key("z"));
        assert!(readoption(&loser, &winner, "me").is_empty());
    }

    #[test]
    fn a_trust_still_held_is_carried_and_a_withdrawn_one_is_not() {
        use crate::ledger::state::TRUSTED_SEATS;
        let secret = crate::operator::OperatorSecret::generate();
        let signed = |seq, command| Command::Operator(Box::new(secret.sign(seq, &command)));
        let trust = |peer: &str| Command::Trust { peer: peer.into() };
        let adopt = Command::AdoptRules {
            version: TRUSTED_SEATS,
        };
        let mut loser = LedgerState::new(pool());
        apply(
            &mut loser,
            &[
                Command::Genesis(cluster(200, 2)),
                adopt.clone(),
                signed(10, trust("a")),
                signed(20, trust("b")),
                signed(30, Command::Untrust { peer: "b".into() }),
            ],
        );
        // A winner below the rules of the trust list gets none of it: there it would apply
        // as nothing, and its number would be lost to a later carry.
        let mut older = LedgerState::new(pool());
        apply(&mut older, &[Command::Genesis(cluster(100, 1))]);
        let commands = readoption(&loser, &older, "me");
        assert!(
            commands.iter().all(|c| !matches!(c, Command::Operator(_))),
            "{commands:?}"
        );
        let mut winner = LedgerState::new(pool());
        apply(&mut winner, &[Command::Genesis(cluster(100, 1)), adopt]);
        let commands = readoption(&loser, &winner, "me");
        apply(&mut winner, &commands);
        assert_eq!(winner.trusted().iter().collect::<Vec<_>>(), ["a"]);
        assert!(!winner.may_hold_seat("b"));
        assert!(readoption(&loser, &winner, "me").is_empty());
    }

    #[test]
    fn a_role_signed_ahead_of_its_member_is_carried_and_stands_once_it_joins_the_winner() {
        use crate::ledger::state::{FixedRole, RULES};
        let secret = crate::operator::OperatorSecret::generate();
        let adopt = Command::AdoptRules { version: RULES };
        let ahead = Command::Operator(Box::new(secret.sign(
            10,
            &Command::SetFixedRole {
                peer: "late".into(),
                role: Some(FixedRole::Worker),
                force: false,
            },
        )));
        let mut loser = LedgerState::new(pool());
        apply(
            &mut loser,
            &[Command::Genesis(cluster(200, 2)), adopt.clone(), ahead],
        );
        let mut winner = LedgerState::new(pool());
        apply(&mut winner, &[Command::Genesis(cluster(100, 1)), adopt]);
        let commands = readoption(&loser, &winner, "me");
        assert_eq!(commands.len(), 1, "{commands:?}");
        apply(&mut winner, &commands);
        apply(&mut winner, &[join_command("late")]);
        assert_eq!(winner.members()["late"].fixed_role, Some(FixedRole::Worker));
        assert!(readoption(&loser, &winner, "me").is_empty());
    }

    fn value(state: &LedgerState, bucket: &str, key: &str) -> Option<String> {
        state.bucket(bucket)?.get(key).cloned()
    }

    #[test]
    fn deletions_on_either_side_hold_and_the_values_they_displace_are_kept() {
        let mut loser = LedgerState::new(pool());
        apply(
            &mut loser,
            &[
                Command::Genesis(cluster(200, 2)),
                put("b", "loser-deleted", "loser"),
                Command::KvDelete {
                    bucket: "b".into(),
                    key: Some("loser-deleted".into()),
                },
                put("b", "winner-deleted", "loser"),
                put("gone", "k", "loser"),
                Command::KvDelete {
                    bucket: "gone".into(),
                    key: None,
                },
                put("b", "deleted-then-written", "again"),
                Command::KvDelete {
                    bucket: "b".into(),
                    key: Some("deleted-then-written".into()),
                },
                put("b", "deleted-then-written", "again"),
            ],
        );
        let mut winner = LedgerState::new(pool());
        apply(
            &mut winner,
            &[
                Command::Genesis(cluster(100, 1)),
                put("b", "loser-deleted", "winner"),
                put("gone", "k", "winner"),
                put("b", "winner-deleted", "winner"),
                Command::KvDelete {
                    bucket: "b".into(),
                    key: Some("winner-deleted".into()),
                },
            ],
        );
        let commands = readoption(&loser, &winner, "me");
        apply(&mut winner, &commands);
        let (lost, won) = (
            merged_bucket(loser.cluster(), "b"),
            merged_bucket(winner.cluster(), "b"),
        );
        assert_eq!(lost, "merged/0000000000000002/b");
        // The loser's deletions are carried; the winner's values they displace are kept.
        assert_eq!(value(&winner, "b", "loser-deleted"), None);
        assert_eq!(value(&winner, "gone", "k"), None);
        assert_eq!(
            value(&winner, &won, "loser-deleted").as_deref(),
            Some("winner")
        );
        let gone = merged_bucket(winner.cluster(), "gone");
        assert_eq!(value(&winner, &gone, "k").as_deref(), Some("winner"));
        // The winner's deletion holds; the loser's value is kept.
        assert_eq!(value(&winner, "b", "winner-deleted"), None);
        assert_eq!(
            value(&winner, &lost, "winner-deleted").as_deref(),
            Some("loser")
        );
        // A key written again after its deletion is a write like any other.
        assert_eq!(
            value(&winner, "b", "deleted-then-written").as_deref(),
            Some("again")
        );
        assert!(
            readoption(&loser, &winner, "me").is_empty(),
            "a second pass has nothing left to do"
        );
    }

    #[test]
    fn a_deployed_master_keeps_its_role_in_the_winner() {
        let mut loser = LedgerState::new(pool());
        apply(
            &mut loser,
            &[
                join_command("me"),
                Command::ReportBootstrap {
                    peer: "me".into(),
                    report: BootstrapReport {
                        role: Some(Role::Master),
                        phase: Phase::Deployed,
                        detail: String::new(),
                        at: 7,
                    },
                    restored: false,
                },
            ],
        );
        let mut winner = LedgerState::new(pool());
        apply(&mut winner, &[join_command("other"), join_command("me")]);
        assert_eq!(winner.members()["other"].role, Some(Role::Master));
        let commands = readoption(&loser, &winner, "me");
        apply(&mut winner, &commands);
        assert_eq!(winner.members()["me"].role, Some(Role::Master));
        assert_eq!(winner.members()["me"].deployed, Some(Role::Master));
        assert_eq!(winner.members()["other"].role, Some(Role::Worker));
    }

    #[test]
    fn the_carried_states_survive_a_restart_until_cleared() {
        let dir = tempfile::tempdir().unwrap();
        let mut first = LedgerState::new(pool());
        apply(&mut first, &[put("b", "k", "v")]);
        let mut second = LedgerState::new(pool());
        apply(&mut second, &[put("b", "j", "w")]);
        let states = vec![first.clone(), second];
        save_carried(dir.path(), &states).unwrap();
        assert_eq!(load_carried(dir.path()), states);
        clear_carried(dir.path());
        assert_eq!(load_carried(dir.path()), Vec::new());
        // A file from before nodes carried several states reads as one.
        CARRIED.save(dir.path(), &first).unwrap();
        assert_eq!(load_carried(dir.path()), vec![first]);
    }

    #[test]
    fn every_carried_state_is_readopted_and_no_value_is_lost() {
        let mut older = LedgerState::new(pool());
        apply(
            &mut older,
            &[
                Command::Genesis(cluster(300, 3)),
                put("b", "k", "old"),
                put("b", "lost", "x"),
            ],
        );
        let mut newer = LedgerState::new(pool());
        apply(
            &mut newer,
            &[Command::Genesis(cluster(200, 2)), put("b", "k", "new")],
        );
        let mut winner = LedgerState::new(pool());
        apply(
            &mut winner,
            &[Command::Genesis(cluster(100, 1)), join_command("me")],
        );
        for carried in [&older, &newer] {
            let commands = readoption(carried, &winner, "me");
            apply(&mut winner, &commands);
        }
        let bucket = winner.bucket("b").unwrap();
        assert_eq!(bucket.get("lost").map(String::as_str), Some("x"));
        // Both values of a key the two left clusters wrote are kept: the first carried in
        // place, the other beside it as any displaced value is.
        assert_eq!(bucket.get("k").map(String::as_str), Some("old"));
        let displaced = winner
            .bucket(&merged_bucket(Some(cluster(200, 2)), "b"))
            .and_then(|b| b.get("k"));
        assert_eq!(displaced.map(String::as_str), Some("new"));
    }
}
