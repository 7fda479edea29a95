//! Carries out the planner's decisions: one step whenever the ledger changes and every few
//! seconds. A deploy first commits an `installing` report (which keeps this node's seat while it
//! works), then runs the bootstrapper; success writes the sentinel, reports `deployed` and,
//! on the founder, publishes the sealed cluster secret. Failures are retried with exponential
//! backoff and shown in the status and the ledger, so the bootstrapper never stalls silently.

use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::plan::{self, ClusterSecret, Decision, Job};
use super::sentinel::{self, Sentinel};
use super::{BootstrapConfig, BootstrapStatus, Bootstrapper, Published};
use crate::dataplane::Dataplane;
use crate::ledger::Ledger;
use crate::ledger::autopilot::unix_now;
use crate::ledger::sealed::{CLUSTER, Sealer};
use crate::ledger::state::{BootstrapReport, Command, LedgerState, Outcome, Phase, Role};

/// How often the driver looks again without a ledger change (retries, the TUN address).
const TICK: Duration = Duration::from_secs(2);
/// First retry delay after a failure; doubled per failure up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_secs(5);
const MAX_BACKOFF: Duration = Duration::from_secs(300);
/// How soon a report the ledger did not take is sent again.
const REPORT_AGAIN: Duration = Duration::from_secs(60);

pub(super) struct Driver {
    bootstrapper: Arc<dyn Bootstrapper>,
    config: BootstrapConfig,
    ledger: Ledger,
    sealer: Sealer,
    dataplane: Option<Dataplane>,
    status: Arc<ArcSwap<BootstrapStatus>>,
    me: String,
    /// The sentinel as found at start, or as written after this process deployed.
    sentinel: Option<Option<Role>>,
    /// Whether the sentinel existed when this process started.
    found_sentinel: bool,
    /// The last report committed, and when.
    reported: Option<(BootstrapReport, Instant)>,
    failures: u32,
    retry_at: Option<Instant>,
}

impl Driver {
    pub(super) fn new(
        bootstrapper: Arc<dyn Bootstrapper>,
        config: BootstrapConfig,
        ledger: Ledger,
        sealer: Sealer,
        dataplane: Option<Dataplane>,
        status: Arc<ArcSwap<BootstrapStatus>>,
    ) -> Driver {
        let me = ledger.node().peer_id;
        Driver {
            bootstrapper,
            config,
            ledger,
            sealer,
            dataplane,
            status,
            me,
            sentinel: None,
            found_sentinel: false,
            reported: None,
            failures: 0,
            retry_at: None,
        }
    }

    pub(super) async fn run(mut self, shutdown: CancellationToken) {
        self.sentinel = match sentinel::read(&self.config.sentinel) {
            Ok(found) => found,
            Err(e) => {
                // Unreadable is not absent: reconfiguring a deployed node would be worse than
                // waiting for the operator.
                self.show(
                    None,
                    Phase::Failed,
                    format!("cannot read the sentinel: {e}"),
                );
                tracing::error!(error = %e, "cannot read the sentinel; the bootstrapper waits");
                return shutdown.cancelled().await;
            }
        };
        self.found_sentinel = self.sentinel.is_some();
        if self.found_sentinel {
            tracing::info!(
                sentinel = %self.config.sentinel.display(),
                "the sentinel exists: k3s is not reconfigured (remove it to bootstrap again)"
            );
        }
        let mut changes = self.ledger.subscribe();
        let mut tick = tokio::time::interval(TICK);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = changes.changed() => {}
                _ = tick.tick() => {}
            }
            // A step may wait minutes for k3s; shutdown does not wait for it (the commands it
            // runs are killed with it, files are replaced whole or not at all).
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = self.step() => {}
            }
        }
    }

    async fn step(&mut self) {
        let state = self.ledger.state();
        let secret = self.open_secret(&state);
        let decision = plan::decide(&plan::Inputs {
            state: &state,
            me: &self.me,
            configured_role: self.config.configured_role,
            minimum_nodes: self.config.minimum_nodes,
            sentinel: self.sentinel,
            secret: secret.as_ref(),
            needs_tun_address: self.dataplane.is_some(),
            tun_address: self.dataplane.as_ref().and_then(Dataplane::address),
        });
        match decision {
            Decision::Wait(reason) => {
                let member = state.members().get(&self.me);
                let role = member.and_then(|m| m.role);
                self.show(role, Phase::Waiting, reason.clone());
                // Only a member can report (a refused report would still be a log entry, and
                // its commit would wake this loop again).
                if member.is_some() {
                    self.report(role, Phase::Waiting, reason).await;
                }
            }
            Decision::Deploy(job) => {
                if self.retry_at.is_none_or(|at| Instant::now() >= at) {
                    self.deploy(job).await;
                }
            }
            Decision::Keep {
                role,
                report,
                republish,
            } => self.keep(&state, role, report, republish).await,
        }
    }

    /// The ledger's cluster secret, opened; a secret that does not open is logged and ignored.
    fn open_secret(&self, state: &LedgerState) -> Option<ClusterSecret> {
        let text = match self.sealer.open_text(state, CLUSTER) {
            Ok(text) => text?,
            Err(e) => {
                tracing::warn!(error = %e, "the ledger's cluster secret does not open");
                return None;
            }
        };
        serde_json::from_str(&text)
            .inspect_err(
                |e| tracing::warn!(error = %e, "the ledger's cluster secret is unreadable"),
            )
            .ok()
    }

    async fn deploy(&mut self, job: Job) {
        let role = Some(job.role);
        // Committed first: an in-progress report keeps this node's seat while it works.
        if !self.report(role, Phase::Installing, String::new()).await {
            self.show(
                role,
                Phase::Waiting,
                "waiting for the ledger to record that this node is installing".into(),
            );
            return;
        }
        let still_mine = self
            .ledger
            .state()
            .members()
            .get(&self.me)
            .is_some_and(|m| m.role == role);
        if !still_mine {
            return;
        }
        tracing::info!(role = %job.role, ip = %job.overlay_ip, "bootstrapping this node's role");
        self.show(role, Phase::Installing, "writing configuration".into());
        let (phases, mut moved) = mpsc::unbounded_channel();
        let progress = move |phase: Phase| {
            let _ = phases.send(phase);
        };
        let bootstrapper = self.bootstrapper.clone();
        let deploy = bootstrapper.deploy(&job, &progress);
        tokio::pin!(deploy);
        let result = loop {
            tokio::select! {
                result = &mut deploy => break result,
                Some(phase) = moved.recv() => {
                    self.show(role, phase, "starting services".into());
                    self.report(role, phase, String::new()).await;
                }
            }
        };
        match result {
            Ok(published) => self.deployed(&job, published).await,
            Err(e) => {
                self.failures += 1;
                let delay = backoff(self.failures);
                self.retry_at = Some(Instant::now() + delay);
                let detail = format!(
                    "{e} (attempt {}, retrying in {} s)",
                    self.failures,
                    delay.as_secs()
                );
                tracing::warn!(role = %job.role, error = %e, retry_in = delay.as_secs(), "bootstrap failed");
                self.show(role, Phase::Failed, detail.clone());
                self.report(role, Phase::Failed, detail).await;
            }
        }
    }

    async fn deployed(&mut self, job: &Job, published: Option<Published>) {
        self.failures = 0;
        self.retry_at = None;
        let written = sentinel::write(
            &self.config.sentinel,
            &Sentinel {
                role: job.role,
                overlay_ip: job.overlay_ip,
                bootstrapper: self.config.kind.to_string(),
                deployed_at: unix_now(),
            },
        );
        if let Err(e) = written {
            // The role runs; only a restart would reconfigure it.
            tracing::error!(error = %e, "the role is deployed but the sentinel could not be written");
        }
        self.sentinel = Some(Some(job.role));
        tracing::info!(role = %job.role, "role deployed");
        self.show(Some(job.role), Phase::Deployed, String::new());
        self.report(Some(job.role), Phase::Deployed, String::new())
            .await;
        if let Some(published) = published {
            self.publish(published).await;
        }
    }

    /// A deployed node: the ledger learns its role again if it lost it, and the control plane
    /// of record publishes the cluster secret again if the ledger lacks it.
    async fn keep(
        &mut self,
        state: &LedgerState,
        role: Option<Role>,
        report: bool,
        republish: bool,
    ) {
        let refused = state
            .members()
            .get(&self.me)
            .and_then(|m| m.bootstrap.as_ref())
            .filter(|r| r.phase == Phase::Failed);
        match refused {
            Some(r) if report => self.show(role, Phase::Failed, r.detail.clone()),
            _ if self.found_sentinel => self.show(
                role,
                Phase::Deployed,
                format!(
                    "the sentinel {} existed at start, so k3s was left as it is (remove it and \
                     restart weft to bootstrap again)",
                    self.config.sentinel.display()
                ),
            ),
            _ => self.show(role, Phase::Deployed, String::new()),
        }
        if report {
            self.report(role, Phase::Deployed, String::new()).await;
        }
        if republish && self.retry_at.is_none_or(|at| Instant::now() >= at) {
            let Some(ip) = state.members().get(&self.me).and_then(|m| m.address) else {
                return;
            };
            match self.bootstrapper.republish(ip).await {
                Ok(Some(published)) => self.publish(published).await,
                Ok(None) => {}
                Err(e) => {
                    self.failures += 1;
                    let delay = backoff(self.failures);
                    self.retry_at = Some(Instant::now() + delay);
                    tracing::warn!(error = %e, "cannot publish the cluster's join token again");
                    self.show(
                        role,
                        Phase::Failed,
                        format!("cannot publish the join token: {e}"),
                    );
                }
            }
        }
    }

    async fn publish(&mut self, published: Published) {
        let secret = ClusterSecret {
            publisher: self.me.clone(),
            server_url: published.server_url,
            join_token: published.join_token,
            kubeconfig: published.kubeconfig,
        };
        let json = match serde_json::to_vec(&secret) {
            Ok(json) => json,
            Err(e) => {
                tracing::error!(error = %e, "cannot encode the cluster secret");
                return;
            }
        };
        let command = Command::PutSecret {
            name: CLUSTER.into(),
            sealed: self.sealer.seal(CLUSTER, &json),
        };
        match self.ledger.propose(command).await {
            Ok(_) => tracing::info!("published the cluster's join token and kubeconfig (sealed)"),
            Err(e) => tracing::warn!(error = %e, "cannot publish the cluster secret yet; retrying"),
        }
    }

    /// Proposes a report unless the same one was committed recently; true when the ledger has
    /// it.
    async fn report(&mut self, role: Option<Role>, phase: Phase, detail: String) -> bool {
        let report = BootstrapReport {
            role,
            phase,
            detail,
            at: 0,
        };
        if let Some((last, when)) = &self.reported
            && *last == report
            && when.elapsed() < REPORT_AGAIN
        {
            return true;
        }
        let command = Command::ReportBootstrap {
            peer: self.me.clone(),
            report: BootstrapReport {
                at: unix_now(),
                ..report.clone()
            },
        };
        match self.ledger.propose(command).await {
            Ok(outcome) => {
                // Remembered whatever the outcome, so that a refused report is not sent again
                // on the change its own commit causes.
                self.reported = Some((report, Instant::now()));
                outcome != Outcome::UnknownMember
            }
            Err(e) => {
                tracing::debug!(error = %e, "bootstrap report not committed yet");
                false
            }
        }
    }

    fn show(&self, role: Option<Role>, phase: Phase, detail: String) {
        let current = self.status.load();
        let retry_at = self
            .retry_at
            .map(|at| unix_now() + at.saturating_duration_since(Instant::now()).as_secs());
        if current.role == role
            && current.phase == phase
            && current.detail == detail
            && current.failures == self.failures
        {
            return;
        }
        self.status.store(Arc::new(BootstrapStatus {
            role,
            phase,
            detail,
            failures: self.failures,
            retry_at,
            ..(**current).clone()
        }));
    }
}

/// The delay before attempt `failures + 1`.
fn backoff(failures: u32) -> Duration {
    FIRST_BACKOFF
        .saturating_mul(1 << failures.saturating_sub(1).min(16))
        .min(MAX_BACKOFF)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_back_off_to_five_minutes() {
        assert_eq!(backoff(1), Duration::from_secs(5));
        assert_eq!(backoff(2), Duration::from_secs(10));
        assert_eq!(backoff(7), Duration::from_secs(300));
        assert_eq!(backoff(100), Duration::from_secs(300));
    }
}
