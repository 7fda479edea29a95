//! The DNS server's counters, registered under `weft_dns_`: answers by where they came from,
//! so an operator sees how much the mesh answers itself, how well the cache does, and how often
//! upstream fails, and how long answers take by the same sources.

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};

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
    /// REFUSED: forwarding is off, the class is not IN, or the client may not ask.
    Refused,
    /// REFUSED: the client asked faster than its budget allows.
    Limited,
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
            Source::Limited => "limited",
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

/// Answer latency buckets: 50 µs to about 1.6 s, doubling.
fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.000_05, 2.0, 16))
}

/// The DNS counters; clones share them.
#[derive(Debug, Clone)]
pub struct DnsMetrics {
    answers: Family<SourceLabel, Counter>,
    latency: Family<SourceLabel, Histogram, fn() -> Histogram>,
}

impl Default for DnsMetrics {
    fn default() -> Self {
        DnsMetrics {
            answers: Family::default(),
            latency: Family::new_with_constructor(latency_histogram),
        }
    }
}

impl DnsMetrics {
    /// Counters registered in `registry`.
    pub fn new(registry: &mut Registry) -> DnsMetrics {
        let metrics = DnsMetrics::default();
        let dns = registry.sub_registry_with_prefix("weft_dns");
        dns.register(
            "answers",
            "DNS answers sent, by where they came from",
            metrics.answers.clone(),
        );
        dns.register_with_unit(
            "answer_duration",
            "Time from a query's arrival to its answer, by where the answer came from",
            Unit::Seconds,
            metrics.latency.clone(),
        );
        metrics
    }

    /// Counts one answer, made in `elapsed`.
    pub fn answered(&self, source: Source, elapsed: std::time::Duration) {
        let label = SourceLabel { source };
        self.answers.get_or_create(&label).inc();
        self.latency
            .get_or_create(&label)
            .observe(elapsed.as_secs_f64());
    }
}
