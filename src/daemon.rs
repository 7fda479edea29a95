//! `weft up`: wires the node's parts together and owns their lifetime. Start-up loads the
//! identity and binds the API before telling systemd the node is ready; SIGINT or SIGTERM cancel
//! one shutdown token that every task honours, and the daemon returns once they have stopped.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::signal::unix::{SignalKind, signal};
use tokio_util::sync::CancellationToken;

use crate::api::{self, ApiListener, ListenError, NodeInfo};
use crate::config::Settings;
use crate::identity::{Identity, IdentityError};
use crate::token::Token;

/// How long tasks get to finish after shutdown is requested.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Why the daemon could not start or stopped abnormally.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error(transparent)]
    Identity(#[from] IdentityError),
    #[error("local API: {0}")]
    Listen(#[from] ListenError),
    #[error("cannot install signal handlers: {0}")]
    Signals(std::io::Error),
    #[error("local API stopped: {0}")]
    Api(std::io::Error),
}

/// Runs the node until SIGINT or SIGTERM.
pub async fn run(settings: &Settings, token: &Token) -> Result<(), DaemonError> {
    let started = Instant::now();
    let identity = Identity::load_or_create(&settings.state_dir)?;
    let keys = token.keys();
    let node = Arc::new(NodeInfo {
        peer_id: identity.peer_id().to_string(),
        hostname: settings.hostname.clone(),
        network_id: keys.network_id().to_string(),
        interface: settings.interface.clone(),
        cidr: settings.cidr.to_string(),
        started,
    });
    let mut terminate = signal(SignalKind::terminate()).map_err(DaemonError::Signals)?;
    let mut interrupt = signal(SignalKind::interrupt()).map_err(DaemonError::Signals)?;

    let listener = ApiListener::bind(&settings.api, settings.api_unix_mode).await?;
    let api_addr = listener.local_addr();
    let shutdown = CancellationToken::new();
    let mut api_task = tokio::spawn(listener.serve(api::router(node), shutdown.clone()));

    notify(&[sd_notify::NotifyState::Ready]);
    tracing::info!(
        peer_id = %identity.peer_id(),
        network = %keys.network_id(),
        api = %api_addr,
        "weft is up"
    );

    let early_end = tokio::select! {
        _ = terminate.recv() => { tracing::info!("SIGTERM: shutting down"); None }
        _ = interrupt.recv() => { tracing::info!("SIGINT: shutting down"); None }
        ended = &mut api_task => Some(ended),
    };
    notify(&[sd_notify::NotifyState::Stopping]);
    shutdown.cancel();
    let api_result = match early_end {
        Some(ended) => ended,
        None => match tokio::time::timeout(SHUTDOWN_GRACE, &mut api_task).await {
            Ok(ended) => ended,
            Err(_) => {
                tracing::warn!("the local API did not stop in time");
                api_task.abort();
                Ok(Ok(()))
            }
        },
    };
    match api_result {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(DaemonError::Api(e)),
        Err(join) => Err(DaemonError::Api(std::io::Error::other(join))),
    }
}

/// Tells systemd about a state change; without a notify socket this does nothing.
fn notify(state: &[sd_notify::NotifyState]) {
    if let Err(e) = sd_notify::notify(state) {
        tracing::warn!(error = %e, "could not notify systemd");
    }
}
