//! The bootstrapper's figures on `/metrics`, under `weft_bootstrap_`: the phase it is in (one
//! series per phase, 1 for the current one, so alerts can match `phase="failed"`) and its
//! failed attempts since the last success, read from its status at each scrape.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric as _};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use super::BootstrapHandle;
use crate::ledger::state::Phase;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PhaseLabel {
    phase: &'static str,
}

impl BootstrapHandle {
    /// Registers the bootstrapper's metrics in `registry`.
    pub fn register_metrics(&self, registry: &mut Registry) {
        registry
            .sub_registry_with_prefix("weft_bootstrap")
            .register_collector(Box::new(BootstrapCollector {
                handle: self.clone(),
            }));
    }
}

#[derive(Debug)]
struct BootstrapCollector {
    handle: BootstrapHandle,
}

impl Collector for BootstrapCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let status = self.handle.status();
        let phases = Family::<PhaseLabel, Gauge>::default();
        for phase in [
            Phase::Waiting,
            Phase::Installing,
            Phase::Starting,
            Phase::Deployed,
            Phase::Failed,
        ] {
            phases
                .get_or_create(&PhaseLabel {
                    phase: phase.as_str(),
                })
                .set(i64::from(phase == status.phase));
        }
        phases.encode(encoder.encode_descriptor(
            "phase",
            "The bootstrapper's phase: 1 for the current one",
            None,
            phases.metric_type(),
        )?)?;
        let failures = Gauge::<i64>::default();
        failures.set(status.failures.into());
        failures.encode(encoder.encode_descriptor(
            "failures",
            "Failed attempts since the last success",
            None,
            failures.metric_type(),
        )?)
    }
}
