//! The data plane's figures on `/metrics`, under `weft_dataplane_`: per peer, bytes and packets
//! each way, drops by reason, sessions made and the path in use, read from the peers' atomic
//! counters at each scrape (the packet path never touches the registry).

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::{Registry, Unit};

use super::{Dataplane, DataplaneStats};

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PeerLabel {
    peer: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PeerReasonLabel {
    peer: String,
    reason: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabel {
    reason: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PathLabel {
    peer: String,
    path: &'static str,
}

impl Dataplane {
    /// Registers the data plane's metrics in `registry`.
    pub fn register_metrics(&self, registry: &mut Registry) {
        registry
            .sub_registry_with_prefix("weft_dataplane")
            .register_collector(Box::new(DataplaneCollector {
                dataplane: self.clone(),
            }));
    }
}

#[derive(Debug)]
struct DataplaneCollector {
    dataplane: Dataplane,
}

/// The kind of a path as `PeerStats::path` words it: `udp <addr>`, `libp2p stream`, `none`.
fn path_kind(path: &str) -> &'static str {
    if path.starts_with("udp") {
        "udp"
    } else if path.starts_with("libp2p") {
        "libp2p_stream"
    } else {
        "none"
    }
}

fn encode(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    unit: Option<&Unit>,
    metric: &impl EncodeMetric,
) -> Result<(), std::fmt::Error> {
    metric.encode(encoder.encode_descriptor(name, help, unit, metric.metric_type())?)
}

/// A family of counters, one per peer, set from `value`.
fn per_peer(
    stats: &DataplaneStats,
    value: impl Fn(&super::peer::PeerStats) -> u64,
) -> Family<PeerLabel, Counter> {
    let family = Family::<PeerLabel, Counter>::default();
    for peer in &stats.peers {
        family
            .get_or_create(&PeerLabel {
                peer: peer.peer_id.clone(),
            })
            .inc_by(value(peer));
    }
    family
}

impl Collector for DataplaneCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let stats = self.dataplane.stats();
        let bytes = Some(&Unit::Bytes);
        encode(
            &mut encoder,
            "sent",
            "Data-plane bytes sent to a peer, as framed (header, ciphertext, tag)",
            bytes,
            &per_peer(&stats, |p| p.tx_bytes),
        )?;
        encode(
            &mut encoder,
            "received",
            "Data-plane bytes received from a peer and authenticated, as framed",
            bytes,
            &per_peer(&stats, |p| p.rx_bytes),
        )?;
        encode(
            &mut encoder,
            "sent_packets",
            "Packets sent to a peer",
            None,
            &per_peer(&stats, |p| p.tx_packets),
        )?;
        encode(
            &mut encoder,
            "received_packets",
            "Packets received from a peer and authenticated",
            None,
            &per_peer(&stats, |p| p.rx_packets),
        )?;
        encode(
            &mut encoder,
            "handshakes",
            "Data-plane sessions made with a peer",
            None,
            &per_peer(&stats, |p| p.handshakes),
        )?;
        let drops = Family::<PeerReasonLabel, Counter>::default();
        for peer in &stats.peers {
            for (reason, n) in &peer.drops {
                drops
                    .get_or_create(&PeerReasonLabel {
                        peer: peer.peer_id.clone(),
                        reason: reason.clone(),
                    })
                    .inc_by(*n);
            }
        }
        encode(
            &mut encoder,
            "peer_drops",
            "Packets to or from a peer dropped, by reason",
            None,
            &drops,
        )?;
        let unattributed = Family::<ReasonLabel, Counter>::default();
        for (reason, n) in &stats.drops {
            unattributed
                .get_or_create(&ReasonLabel {
                    reason: reason.clone(),
                })
                .inc_by(*n);
        }
        encode(
            &mut encoder,
            "drops",
            "Packets dropped that belong to no known peer (malformed, unknown index, no route), \
             by reason",
            None,
            &unattributed,
        )?;
        let paths = Family::<PathLabel, Gauge>::default();
        for peer in &stats.peers {
            paths
                .get_or_create(&PathLabel {
                    peer: peer.peer_id.clone(),
                    path: path_kind(&peer.path),
                })
                .set(1);
        }
        encode(
            &mut encoder,
            "path",
            "The path packets to a peer take (udp, libp2p_stream or none): 1 for the one in use",
            None,
            &paths,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_kinds_are_label_safe_words() {
        assert_eq!(path_kind("udp 10.0.0.2:4000"), "udp");
        assert_eq!(path_kind("libp2p stream"), "libp2p_stream");
        assert_eq!(path_kind("none"), "none");
    }
}
