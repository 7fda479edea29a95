//! The bootstrapper: turns this node's role, as the ledger decides it, into a running
//! Kubernetes control plane or agent (k3s under systemd or OpenRC, or a user's script), and
//! reports its progress back into the ledger and `weft status`.
//!
//! [`plan`] decides what to do from the ledger alone (pure); [`driver`] carries it out, one step
//! per ledger change or tick, retrying failures with backoff; a [`Bootstrapper`] does the
//! host's part: [`k3s::K3s`] or [`script::Script`]. The cluster's founder publishes its join
//! token, server URL and kubeconfig sealed in the ledger ([`crate::ledger::sealed`]); the
//! others read them from there. After success a [`sentinel`] keeps later starts from
//! reconfiguring k3s.

mod driver;
pub mod files;
pub mod k3s;
mod metrics;
pub mod plan;
pub mod render;
pub mod script;
pub mod sentinel;

use std::fmt;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::dataplane::Dataplane;
use crate::ledger::Ledger;
use crate::ledger::sealed::Sealer;
use crate::ledger::state::{FixedRole, Phase, Role};
use files::StepError;
use plan::Job;

/// Tells the driver a deploy moved on (to [`Phase::Starting`]); the answer says whether the
/// role is still this node's, and a deploy that hears `false` starts nothing.
pub type Progress<'a> = &'a (dyn Fn(Phase) -> bool + Send + Sync);

/// What the cluster's founder hands the others.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Published {
    pub server_url: Option<String>,
    pub join_token: String,
    pub kubeconfig: Option<String>,
}

/// The host's part of a role: configure and start what the role runs.
#[async_trait]
pub trait Bootstrapper: Send + Sync {
    /// Configures and (re)starts what `job.role` needs, calling `progress` when it moves from
    /// writing configuration to starting services, and stopping there if told the role moved
    /// on. The founder returns what it publishes.
    async fn deploy(
        &self,
        job: &Job,
        progress: Progress<'_>,
    ) -> Result<Option<Published>, StepError>;

    /// For the deployed control plane of record: what it publishes, read again from what it
    /// runs (the ledger lost it).
    async fn republish(&self, overlay_ip: Ipv4Addr) -> Result<Option<Published>, StepError>;
}

/// How the bootstrapper runs on this node.
#[derive(Debug, Clone)]
pub struct BootstrapConfig {
    pub kind: BootstrapperKind,
    /// The role this node was started with (`--role`).
    pub configured_role: Option<FixedRole>,
    pub minimum_nodes: u32,
    pub sentinel: PathBuf,
    pub root: PathBuf,
    pub init: InitChoice,
    pub options: render::K3sOptions,
    pub script: Option<PathBuf>,
    /// How long a k3s server may take to write its join token.
    pub token_wait: Duration,
    /// How long a bootstrap script may run.
    pub script_deadline: Duration,
}

/// What `weft status` shows of this node's bootstrapper.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BootstrapStatus {
    /// `k3s`, `script` or `none`.
    pub bootstrapper: String,
    /// The role it works on.
    pub role: Option<Role>,
    pub phase: Phase,
    /// Why it waits, or the last error.
    pub detail: String,
    /// Failed attempts since the last success.
    pub failures: u32,
    /// When the next attempt runs after a failure (UNIX seconds).
    pub retry_at: Option<u64>,
    /// The sentinel's path.
    pub sentinel: String,
}

/// The running bootstrapper's status, for the API.
#[derive(Debug, Clone)]
pub struct BootstrapHandle {
    status: Arc<ArcSwap<BootstrapStatus>>,
}

impl BootstrapHandle {
    /// The latest status.
    pub fn status(&self) -> BootstrapStatus {
        (**self.status.load()).clone()
    }
}

/// Starts the bootstrapper's driver in `tasks`, unless the bootstrapper is `none`.
pub fn start(
    config: BootstrapConfig,
    ledger: Ledger,
    sealer: Sealer,
    dataplane: Option<Dataplane>,
    tasks: &mut JoinSet<()>,
    shutdown: CancellationToken,
) -> Option<BootstrapHandle> {
    let bootstrapper: Arc<dyn Bootstrapper> = match config.kind {
        BootstrapperKind::None => return None,
        BootstrapperKind::K3s => Arc::new(k3s::K3s {
            root: config.root.clone(),
            init: k3s::Init::resolve(config.init, &config.root),
            options: config.options.clone(),
            token_wait: config.token_wait,
        }),
        BootstrapperKind::Script => Arc::new(script::Script {
            program: config.script.clone()?,
            root: config.root.clone(),
            interface: config.options.interface.clone(),
            deadline: config.script_deadline,
        }),
    };
    let status = Arc::new(ArcSwap::from_pointee(BootstrapStatus {
        bootstrapper: config.kind.to_string(),
        role: None,
        phase: Phase::Waiting,
        detail: "starting".into(),
        failures: 0,
        retry_at: None,
        sentinel: config.sentinel.display().to_string(),
    }));
    let driver = driver::Driver::new(
        bootstrapper,
        config,
        ledger,
        sealer,
        dataplane,
        status.clone(),
    );
    tasks.spawn(driver.run(shutdown));
    Some(BootstrapHandle { status })
}

/// Which bootstrapper consumes this node's role (`--bootstrapper`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BootstrapperKind {
    /// Nothing runs: the role is only recorded (Kairos' drop-in mode drives k3s itself).
    None,
    K3s,
    /// A user executable runs with the role and the cluster facts in its environment.
    Script,
}

impl BootstrapperKind {
    /// The name `--bootstrapper` takes.
    pub fn as_str(self) -> &'static str {
        match self {
            BootstrapperKind::None => "none",
            BootstrapperKind::K3s => "k3s",
            BootstrapperKind::Script => "script",
        }
    }
}

impl fmt::Display for BootstrapperKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for BootstrapperKind {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text.trim().to_ascii_lowercase().as_str() {
            "none" => Ok(BootstrapperKind::None),
            "k3s" => Ok(BootstrapperKind::K3s),
            "script" => Ok(BootstrapperKind::Script),
            _ => Err("expected k3s, script or none".into()),
        }
    }
}

/// The init system that runs k3s (`--init`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InitChoice {
    /// Detected at start: systemd when `/run/systemd/system` exists under the root, else
    /// OpenRC when `/run/openrc` or `/sbin/openrc-run` does.
    Auto,
    Systemd,
    OpenRc,
}

impl InitChoice {
    /// The name `--init` takes.
    pub fn as_str(self) -> &'static str {
        match self {
            InitChoice::Auto => "auto",
            InitChoice::Systemd => "systemd",
            InitChoice::OpenRc => "openrc",
        }
    }
}

impl FromStr for InitChoice {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text.trim().to_ascii_lowercase().as_str() {
            "auto" => Ok(InitChoice::Auto),
            "systemd" => Ok(InitChoice::Systemd),
            "openrc" => Ok(InitChoice::OpenRc),
            _ => Err("expected auto, systemd or openrc".into()),
        }
    }
}
