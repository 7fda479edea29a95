//! The DNS server's counters, registered under `weft_dns_`: answers by where they came from,
//! so an operator sees how much the mesh answers itself, how well the cache does, and how often
//! upstream fails.

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

/// Where an answer came from.
#[derive(Debug, Clone, Copy, Default, Hash, PartialEq, Eq)]
pub enum Source {
    /// The mesh snapshot (members, user records), including its NXDOMAIN and NODATA.
    #[default]
    Mesh,
    /// The forwarding cache.
    Cache,
    /// An upstream resolver, passed on as it answered.
    Upstream,
    /// REFUSED: forwarding is off, or the class is not IN.
    Refused,
    /// SERVFAIL: no upstream answered.
    Failed,
    /// FORMERR or NOTIMP: not one standard query.
    Rejected,
}

impl Source {
    fn as_str(self) -> &'static str {
        match self {
            Source::Mesh => "mesh",
            Source::Cache => "cache",
            Source::Upstream => "upstream",
            Source::Refused => "refused",
            Source::Failed => "failed",
            Source::Rejected => "rejected",
        }
    }
}

impl EncodeLabelValue for Source {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        EncodeLabelValue::encode(&self.as_str(), encoder)
    }
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SourceLabel {
    source: Source,
}

/// The DNS counters; clones share them.
#[derive(Debug, Clone, Default)]
pub struct DnsMetrics {
    answers: Family<SourceLabel, Counter>,
}

impl DnsMetrics {
    /// Counters registered in `registry`.
    pub fn new(registry: &mut Registry) -> DnsMetrics {
        let metrics = DnsMetrics::default();
        registry.sub_registry_with_prefix("weft_dns").register(
            "answers",
            "DNS answers sent, by where they came from",
            metrics.answers.clone(),
        );
        metrics
    }

    /// Counts one answer.
    pub fn answered(&self, source: Source) {
        self.answers.get_or_create(&SourceLabel { source }).inc();
    }
}
