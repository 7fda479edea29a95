//! The ledger's figures on `/metrics`, under `weft_raft_` and `weft_ledger_`: proposals and how
//! long they take to commit, raft's RPCs by the path they took, appends cut short on a slow
//! link, and the lease renewal entries a leader committed by their form, counted as they
//! happen; and raft's term, leader and indexes and the members' leases, read from the ledger at
//! each scrape. openraft 0.9 reports no commit index, so the last log index and the applied
//! index bound it from both sides.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric as _};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};

use super::Ledger;
use super::raft::network::RaftRpc;
use super::state::LeaseState;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabel {
    result: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RpcLabel {
    rpc: &'static str,
    path: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FormLabel {
    form: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LeaseLabel {
    lease: &'static str,
}

/// How one proposal attempt ended, as counted.
#[derive(Debug, Clone, Copy)]
pub(super) enum ProposalResult {
    Committed,
    /// No leader was reachable; nothing was sent.
    NotSent,
    /// Sent, but not known to have committed.
    Failed,
}

impl ProposalResult {
    fn as_str(self) -> &'static str {
        match self {
            ProposalResult::Committed => "committed",
            ProposalResult::NotSent => "not_sent",
            ProposalResult::Failed => "failed",
        }
    }
}

/// Proposal counters; the ledger's clones share them.
#[derive(Debug, Clone)]
pub(super) struct ProposalMetrics {
    results: Family<ResultLabel, Counter>,
    latency: Histogram,
}

impl Default for ProposalMetrics {
    fn default() -> Self {
        ProposalMetrics {
            results: Family::default(),
            // 1 ms to about 16 s, doubling.
            latency: Histogram::new(exponential_buckets(0.001, 2.0, 15)),
        }
    }
}

impl ProposalMetrics {
    /// Counts one attempt that ended as `result` after `elapsed`; the latency of committed
    /// ones only.
    pub(super) fn record(&self, result: ProposalResult, elapsed: std::time::Duration) {
        self.results
            .get_or_create(&ResultLabel {
                result: result.as_str(),
            })
            .inc();
        if matches!(result, ProposalResult::Committed) {
            self.latency.observe(elapsed.as_secs_f64());
        }
    }
}

/// Raft RPCs this node sent, by kind and by the path they took; shared by every raft
/// connection of every engine this ledger runs, so a reset keeps the counts.
#[derive(Debug, Clone, Default)]
pub(crate) struct RaftRpcMetrics {
    sent: Family<RpcLabel, Counter>,
    shrunk: Counter,
}

impl RaftRpcMetrics {
    /// Counts one `rpc` sent on the callee's raft stream (`streamed`) or as a request.
    pub(crate) fn record(&self, rpc: &RaftRpc, streamed: bool) {
        let rpc = match rpc {
            RaftRpc::Append(_) => "append",
            RaftRpc::Vote(_) => "vote",
            RaftRpc::Snapshot(_) => "snapshot",
        };
        let path = if streamed { "stream" } else { "request" };
        self.sent.get_or_create(&RpcLabel { rpc, path }).inc();
    }

    /// Counts one append of several entries cut short for taking too long, to be sent again
    /// as fewer ([`super::raft::network`]).
    pub(crate) fn record_shrunk(&self) {
        self.shrunk.inc();
    }
}

/// The form a committed renewals entry took ([`crate::ledger::state::Command::Renewals`]).
#[derive(Debug, Clone, Copy)]
pub(super) enum RenewalForm {
    /// A set of the member table that renewed its members.
    Set,
    /// A set that met a changed member table and renewed nobody.
    VoidedSet,
    /// Members named by PeerId.
    Peers,
}

/// Renewal entries this node committed as leader, by form; the ledger's clones share them.
#[derive(Debug, Clone, Default)]
pub(super) struct RenewalMetrics {
    committed: Family<FormLabel, Counter>,
}

impl RenewalMetrics {
    pub(super) fn record(&self, form: RenewalForm) {
        let form = match form {
            RenewalForm::Set => "set",
            RenewalForm::VoidedSet => "voided_set",
            RenewalForm::Peers => "peers",
        };
        self.committed.get_or_create(&FormLabel { form }).inc();
    }
}

/// The kind of a feed message ([`crate::ledger::feed`]).
#[derive(Debug, Clone, Copy)]
pub(crate) enum FeedKind {
    /// Entries, or a heartbeat, naming the voters.
    Feed,
    /// A routine message (a heartbeat, lease renewals) with the voters as a digest.
    Beat,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabel {
    kind: &'static str,
}

/// Feed messages this node published as leader, and those it took from its leader as a
/// follower without fetching the state for them, by kind; the ledger's clones share them.
#[derive(Debug, Clone, Default)]
pub(crate) struct FeedMetrics {
    published: Family<KindLabel, Counter>,
    taken: Family<KindLabel, Counter>,
}

impl FeedKind {
    fn label(self) -> KindLabel {
        let kind = match self {
            FeedKind::Feed => "feed",
            FeedKind::Beat => "beat",
        };
        KindLabel { kind }
    }
}

impl FeedMetrics {
    pub(crate) fn published(&self, kind: FeedKind) {
        self.published.get_or_create(&kind.label()).inc();
    }

    pub(crate) fn taken(&self, kind: FeedKind) {
        self.taken.get_or_create(&kind.label()).inc();
    }
}

impl Ledger {
    /// Registers the ledger's metrics in `registry`.
    pub fn register_metrics(&self, registry: &mut Registry) {
        let weft = registry.sub_registry_with_prefix("weft");
        weft.register(
            "ledger_proposals",
            "Proposals this node sent toward the leader, by how they ended",
            self.proposals.results.clone(),
        );
        weft.register_with_unit(
            "ledger_proposal_duration",
            "Time from proposing to commit, of committed proposals",
            Unit::Seconds,
            self.proposals.latency.clone(),
        );
        weft.register(
            "raft_rpcs_sent",
            "Raft RPCs this node sent, by kind and by path: on the callee's raft stream, or as a request",
            self.raft_rpcs.sent.clone(),
        );
        weft.register(
            "raft_appends_shrunk",
            "Appends of several entries cut short at three quarters of the heartbeat interval, to be sent again as half as many: a link too slow for a full batch",
            self.raft_rpcs.shrunk.clone(),
        );
        weft.register(
            "ledger_renewal_entries",
            "Lease renewal entries this node committed as leader, by form: a set of the member table, a set that met a changed table and renewed nobody, or PeerIds",
            self.renewal_entries.committed.clone(),
        );
        weft.register(
            "ledger_feed_published",
            "Feed messages this node published as leader, by kind: naming the voters (feed), or a routine message digesting them (beat)",
            self.feed_messages.published.clone(),
        );
        weft.register(
            "ledger_feed_taken",
            "Feed messages this node took from its leader as a follower without fetching the state for them, by kind",
            self.feed_messages.taken.clone(),
        );
        weft.register_collector(Box::new(RaftCollector {
            ledger: self.clone(),
        }));
    }
}

/// Reads raft's and the ledger's state at each scrape.
#[derive(Debug)]
struct RaftCollector {
    ledger: Ledger,
}

fn gauge(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    value: i64,
) -> Result<(), std::fmt::Error> {
    let metric = Gauge::<i64>::default();
    metric.set(value);
    metric.encode(encoder.encode_descriptor(name, help, None, metric.metric_type())?)
}

impl Collector for RaftCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let metrics = self.ledger.raft().metrics().borrow().clone();
        let status = self.ledger.status();
        let me = self.ledger.p2p.peer_key().to_string();
        let as_i64 = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
        gauge(
            &mut encoder,
            "raft_term",
            "The raft term this node is in",
            as_i64(metrics.current_term),
        )?;
        gauge(
            &mut encoder,
            "raft_leader",
            "1 when a leader is known to this node, else 0",
            i64::from(status.leader.is_some()),
        )?;
        gauge(
            &mut encoder,
            "raft_is_leader",
            "1 when this node is the leader",
            i64::from(status.leader.as_deref() == Some(me.as_str())),
        )?;
        gauge(
            &mut encoder,
            "raft_voters",
            "Voters of the cluster as this node knows them",
            status.voters.len() as i64,
        )?;
        gauge(
            &mut encoder,
            "raft_last_log_index",
            "Index of the last entry in this node's raft log (0 on a feed follower)",
            as_i64(metrics.last_log_index.unwrap_or(0)),
        )?;
        gauge(
            &mut encoder,
            "raft_applied_index",
            "Index of the last entry this node applied (raft's, or the feed's on a follower)",
            as_i64(status.applied_index),
        )?;
        let members = Family::<LeaseLabel, Gauge>::default();
        for lease in ["live", "expired"] {
            members.get_or_create(&LeaseLabel { lease }).set(0);
        }
        for member in self.ledger.state().members().values() {
            let lease = match member.lease {
                LeaseState::Live => "live",
                LeaseState::Expired => "expired",
            };
            members.get_or_create(&LeaseLabel { lease }).inc();
        }
        members.encode(encoder.encode_descriptor(
            "ledger_members",
            "Members in the ledger, by lease",
            None,
            members.metric_type(),
        )?)
    }
}
