//! Carries out the planner's decisions: one step whenever the ledger changes and every few
//! seconds. A deploy first commits an `installing` report (which keeps this node's seat while it
//! works, even through a lease expiry), then runs the bootstrapper, which asks once more before
//! it starts services that the role is still this node's; success is reported `deployed`, and
//! only once the ledger has bound the role to this node is the sentinel written and, on the
//! founder, the sealed cluster secret published. Failures are retried with exponential backoff
//! and shown in the status and the ledger, so the bootstrapper never stalls silently.
//!
//! Reports are proposed only when the ledger does not already hold them, and a refused one is
//! not sent again until the seats it was refused against change: every commit wakes every
//! member's driver, so a report sent on each wake-up would fill the log.

use std::hash::{Hash as _, Hasher as _};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::plan::{self, ClusterSecret, Decision, Job};
use super::sentinel::{self, Sentinel};
use super::{BootstrapConfig, BootstrapStatus, Bootstrapper, Published};
use crate::clock::unix_now;
use crate::dataplane::Dataplane;
use crate::ledger::Ledger;
use crate::ledger::sealed::{CLUSTER, Sealer};
use crate::ledger::state::{BootstrapReport, Command, LedgerState, Outcome, Phase, Role};

/// How often the driver looks again without a ledger change (retries, the TUN address).
const TICK: Duration = Duration::from_secs(2);
/// First retry delay after a failure; doubled per failure up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_secs(5);
const MAX_BACKOFF: Duration = Duration::from_secs(300);
/// How long a committed report may take to reach this node's copy of the ledger (a follower
/// applies the leader's entries a moment later); it is not sent again meanwhile.
const APPLY_LAG: Duration = Duration::from_secs(10);
/// What replaces the join token in an error that quotes it (a script's output, say).
const REDACTED: &str = "<join token>";

/// What became of a report.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Reported {
    /// The ledger holds it.
    Taken,
    /// The ledger refused it, for this reason.
    Refused(String),
    /// Not committed (no leader, no record of this node yet); try again later.
    NotCommitted,
}

pub(super) struct Driver {
    bootstrapper: Arc<dyn Bootstrapper>,
    config: BootstrapConfig,
    ledger: Ledger,
    sealer: Sealer,
    dataplane: Option<Dataplane>,
    status: Arc<ArcSwap<BootstrapStatus>>,
    me: String,
    /// The sentinel as found at start, or as written once the ledger bound this node's role.
    sentinel: Option<Option<Role>>,
    /// Whether the sentinel existed when this process started.
    found_sentinel: bool,
    /// A deployment made here whose `deployed` report the ledger has not taken yet.
    unreported: Option<(Job, Option<Published>)>,
    /// The last report committed, and when.
    reported: Option<(BootstrapReport, Instant)>,
    /// A report the ledger refused, and the seats (hashed) it was refused against.
    refused: Option<(BootstrapReport, u64)>,
    failures: u32,
    retry_at: Option<Instant>,
    /// Deployed with nothing left to do: only a ledger change can give it work, so the tick
    /// does not wake it.
    idle: bool,
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
            unreported: None,
            reported: None,
            refused: None,
            failures: 0,
            retry_at: None,
            idle: false,
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
                _ = tick.tick(), if !self.idle => {}
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
        if let Some((job, published)) = self.unreported.take() {
            return self.deployed(job, published).await;
        }
        // Decided on the state as it is, then let go of it: deploying takes minutes, and a
        // state held meanwhile would be copied on every entry applied.
        let state = self.ledger.state();
        let secret = self.open_secret(&state);
        let decision = plan::decide(&plan::Inputs {
            state: &state,
            me: &self.me,
            configured_role: self.config.configured_role,
            declared: self.ledger.declared(),
            minimum_nodes: self.config.minimum_nodes,
            sentinel: self.sentinel,
            secret: secret.as_ref(),
            needs_tun_address: self.dataplane.is_some(),
            tun_address: self.dataplane.as_ref().and_then(Dataplane::address),
            unsettled: self.ledger.unsettled(),
        });
        self.idle = matches!(
            decision,
            Decision::Keep {
                report: false,
                republish: false,
                ..
            }
        );
        let role_held = state.members().get(&self.me).and_then(|m| m.role);
        drop(state);
        match decision {
            Decision::Wait(reason) => {
                self.show(role_held, Phase::Waiting, reason.clone());
                self.report(role_held, Phase::Waiting, reason, false).await;
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
            } => self.keep(role, report, republish).await,
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
        match self
            .report(role, Phase::Installing, String::new(), false)
            .await
        {
            Reported::Taken => {}
            Reported::Refused(why) => return self.show(role, Phase::Failed, why),
            Reported::NotCommitted => {
                return self.show(
                    role,
                    Phase::Waiting,
                    "waiting for the ledger to record that this node is installing".into(),
                );
            }
        }
        tracing::info!(role = %job.role, ip = %job.overlay_ip, "bootstrapping this node's role");
        self.show(role, Phase::Installing, "writing configuration".into());
        let (phases, mut moved) = mpsc::unbounded_channel();
        let ledger = self.ledger.clone();
        let me = self.me.clone();
        // Before services start: is the role still this node's?
        let progress = move |phase: Phase| {
            let _ = phases.send(phase);
            ledger.state().members().get(&me).and_then(|m| m.role) == role
        };
        let bootstrapper = self.bootstrapper.clone();
        let result = {
            let deploy = bootstrapper.deploy(&job, &progress);
            tokio::pin!(deploy);
            loop {
                tokio::select! {
                    result = &mut deploy => break result,
                    Some(phase) = moved.recv() => {
                        self.show(role, phase, "starting services".into());
                        self.report(role, phase, String::new(), false).await;
                    }
                }
            }
        };
        match result {
            Ok(published) => self.deployed(job, published).await,
            Err(e) => {
                let secrets: Vec<&str> = job.join.iter().map(|j| j.token.as_str()).collect();
                let error = redact(&e.to_string(), &secrets);
                self.fail(role, error).await;
            }
        }
    }

    /// The deploy succeeded: the ledger must bind the role to this node before the sentinel
    /// says so and the founder publishes its secret.
    async fn deployed(&mut self, job: Job, published: Option<Published>) {
        let role = Some(job.role);
        match self
            .report(role, Phase::Deployed, String::new(), false)
            .await
        {
            Reported::Taken => {}
            Reported::NotCommitted => {
                self.show(
                    role,
                    Phase::Starting,
                    "running; waiting for the ledger to record it deployed".into(),
                );
                self.unreported = Some((job, published));
                return;
            }
            Reported::Refused(why) => {
                tracing::warn!(role = %job.role, reason = %why, "the ledger refused this deployment");
                return self.fail(role, why).await;
            }
        }
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
            // The role runs and the ledger knows it; only a restart would reconfigure it.
            tracing::error!(error = %e, "the role is deployed but the sentinel could not be written");
        }
        self.sentinel = Some(Some(job.role));
        tracing::info!(role = %job.role, "role deployed");
        self.show(role, Phase::Deployed, String::new());
        if let Some(published) = published {
            self.publish(published).await;
        }
    }

    async fn fail(&mut self, role: Option<Role>, error: String) {
        self.failures += 1;
        let delay = backoff(self.failures);
        self.retry_at = Some(Instant::now() + delay);
        let detail = format!(
            "{error} (attempt {}, retrying in {} s)",
            self.failures,
            delay.as_secs()
        );
        tracing::warn!(role = ?role.map(|r| r.to_string()), error = %error, retry_in = delay.as_secs(), "bootstrap failed");
        self.show(role, Phase::Failed, detail.clone());
        self.report(role, Phase::Failed, detail, false).await;
    }

    /// A deployed node: the ledger learns its role again if it lost it, and the control plane
    /// of record publishes the cluster secret again if the ledger lacks it.
    async fn keep(&mut self, role: Option<Role>, report: bool, republish: bool) {
        let outcome = if report {
            self.report(role, Phase::Deployed, String::new(), true)
                .await
        } else {
            Reported::Taken
        };
        match outcome {
            Reported::Refused(why) => self.show(role, Phase::Failed, why),
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
        if republish && self.retry_at.is_none_or(|at| Instant::now() >= at) {
            let address = self
                .ledger
                .state()
                .members()
                .get(&self.me)
                .and_then(|m| m.address);
            let Some(ip) = address else {
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
        let with_kubeconfig = published.kubeconfig.is_some();
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
            Ok(_) if with_kubeconfig => {
                tracing::info!("published the cluster's join token and kubeconfig (sealed)")
            }
            Ok(_) => tracing::info!("published the cluster's join token (sealed)"),
            Err(e) => tracing::warn!(error = %e, "cannot publish the cluster secret yet; retrying"),
        }
    }

    /// Makes the ledger hold this report, proposing it only when it does not already.
    async fn report(
        &mut self,
        role: Option<Role>,
        phase: Phase,
        detail: String,
        restored: bool,
    ) -> Reported {
        let wanted = BootstrapReport {
            role,
            phase,
            detail,
            at: 0,
        };
        let state = self.ledger.state();
        let Some(member) = state.members().get(&self.me) else {
            // Only a member can report (a refused report would still be a log entry).
            return Reported::NotCommitted;
        };
        let held = member
            .bootstrap
            .as_ref()
            .is_some_and(|r| BootstrapReport { at: 0, ..r.clone() } == wanted);
        if held && (phase != Phase::Deployed || member.deployed == role) {
            return Reported::Taken;
        }
        if let Some((sent, when)) = &self.reported
            && *sent == wanted
            && when.elapsed() < APPLY_LAG
        {
            return Reported::Taken;
        }
        let seats = seats_hash(&state, &self.me);
        if let Some((refused, against)) = &self.refused
            && *refused == wanted
            && *against == seats
        {
            return Reported::Refused(refusal(&state, &self.me));
        }
        // Let go of the state before proposing: held, it would be copied when the report applies.
        drop(state);
        let command = Command::ReportBootstrap {
            peer: self.me.clone(),
            report: BootstrapReport {
                at: unix_now(),
                ..wanted.clone()
            },
            restored,
        };
        match self.ledger.propose(command).await {
            Ok(Outcome::RoleConflict) => {
                self.refused = Some((wanted, seats));
                Reported::Refused(refusal(&self.ledger.state(), &self.me))
            }
            Ok(Outcome::UnknownMember) => Reported::NotCommitted,
            Ok(_) => {
                self.reported = Some((wanted, Instant::now()));
                Reported::Taken
            }
            Err(e) => {
                tracing::debug!(error = %e, "bootstrap report not committed yet");
                Reported::NotCommitted
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

/// Why the ledger refused this node's report, as it recorded it.
fn refusal(state: &LedgerState, me: &str) -> String {
    state
        .members()
        .get(me)
        .and_then(|m| m.bootstrap.as_ref())
        .filter(|r| r.phase == Phase::Failed && !r.detail.is_empty())
        .map(|r| r.detail.clone())
        .unwrap_or_else(|| "the ledger refused the report (see weft role ls)".into())
}

/// What a deployment's acceptance depends on: the policy, who deployed what, this node's fixed
/// role and assignment. A refused report is sent again only when this changes.
fn seats_hash(state: &LedgerState, me: &str) -> u64 {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    state.policy().control_planes.hash(&mut hasher);
    for (peer, member) in state.members() {
        if member.deployed.is_some() || peer == me {
            peer.hash(&mut hasher);
            member.deployed.hash(&mut hasher);
            member.fixed_role.hash(&mut hasher);
            member.role.hash(&mut hasher);
        }
    }
    hasher.finish()
}

/// `text` with every occurrence of a secret replaced.
fn redact(text: &str, secrets: &[&str]) -> String {
    secrets
        .iter()
        .filter(|s| !s.is_empty())
        .fold(text.to_string(), |text, secret| {
            text.replace(secret, REDACTED)
        })
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

    #[test]
    fn errors_never_quote_the_join_token() {
        let error = "script failed: + cat token -> K10abc::server:xyz";
        assert_eq!(
            redact(error, &["K10abc::server:xyz", ""]),
            "script failed: + cat token -> <join token>"
        );
    }
}
