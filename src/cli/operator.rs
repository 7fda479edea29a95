//! `weft operator keygen` (the operator's key, kept off the edge machines) and the signing of
//! operator commands: with `--operator-key-file`, `weft members rm|deny|allow` and `weft role
//! set|policy` build their command here, sign it and send it to `POST /v1/operator`, for a
//! mesh whose nodes run with `--operator-key` ([`crate::operator`]).

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use clap::{Args, Subcommand};
use hyper::Method;

use super::client::{ClientArgs, call_json, fetch};
use super::{Failure, usage};
use crate::api::{MemberView, StatusView};
use crate::ledger::LedgerStatus;
use crate::ledger::state::{Command, NETWORK_BOUND, Outcome};
use crate::operator::{OperatorSecret, Scope, Signed};

#[derive(Debug, Subcommand)]
pub(super) enum OperatorCommand {
    /// Make an operator key: the secret goes to FILE (mode 0600; keep it off the edge
    /// machines), the public key is printed. Start every node with `--operator-key` set to
    /// it; from then on removing, denying or allowing a member, another member's role, the
    /// role policy and `weft token rotate` take `--operator-key-file FILE`.
    Keygen {
        /// Where to write the secret key; an existing file is never replaced.
        #[arg(long, short, value_name = "FILE")]
        out: PathBuf,
    },
    /// Print the public key of an operator key file.
    Pubkey {
        /// The secret key file `weft operator keygen` wrote.
        file: PathBuf,
    },
}

/// The option of every command that is the operator's to make.
#[derive(Debug, Args)]
pub(super) struct SignArgs {
    /// Sign the command with the operator's key in FILE (needed in a mesh whose nodes run with
    /// --operator-key).
    #[arg(long, env = "WEFT_OPERATOR_KEY_FILE", value_name = "FILE")]
    pub operator_key_file: Option<PathBuf>,
}

/// Runs one `weft operator` subcommand.
pub(super) fn run(command: OperatorCommand) -> Result<(), Failure> {
    match command {
        OperatorCommand::Keygen { out } => {
            let secret = OperatorSecret::generate();
            secret.save(&out).map_err(|e| usage(anyhow::anyhow!(e)))?;
            println!("{}", secret.public());
            eprintln!(
                "the secret key is in {}; start every node with --operator-key {} (or \
                 WEFT_OPERATOR_KEY, or operator_key in the config file)",
                out.display(),
                secret.public()
            );
            Ok(())
        }
        OperatorCommand::Pubkey { file } => {
            println!("{}", load(&file)?.public());
            Ok(())
        }
    }
}

fn load(path: &Path) -> Result<OperatorSecret, Failure> {
    OperatorSecret::load(path).map_err(|e| usage(anyhow::anyhow!(e)))
}

/// Signs `command` with the key in `key_file` ([`sign`]) and has the daemon propose it; the
/// outcome it committed with.
pub(super) fn send_signed(
    client: &ClientArgs,
    key_file: &Path,
    command: &Command,
) -> Result<Outcome, Failure> {
    let status: StatusView = fetch(client, "/v1/status")?;
    let scope = scope(command, &status.ledger, &status.network_id)?;
    let signed = sign(key_file, command, scope)?;
    let body = call_json(client, Method::POST, "/v1/operator", &signed)?;
    serde_json::from_slice(&body)
        .context("the answer to /v1/operator is not what this weft expects")
        .map_err(Failure::Runtime)
}

/// Where `command` is signed to hold, by the status of the daemon that sends it (its ledger
/// and its network): a removal in the cluster the daemon is in, and every command in the
/// daemon's network once the mesh's rules say that every raft node checks such a signature
/// ([`NETWORK_BOUND`]); until then a leader of an earlier weft would find it false.
fn scope(command: &Command, ledger: &LedgerStatus, network: &str) -> Result<Scope, Failure> {
    let cluster = match command {
        Command::Leave { .. } => Some(ledger.cluster_id.clone().ok_or_else(|| {
            Failure::Runtime(anyhow::anyhow!(
                "the node is in no cluster yet; try again once it is"
            ))
        })?),
        _ => None,
    };
    let network = (ledger.rules >= NETWORK_BOUND).then(|| network.to_string());
    Ok(Scope { cluster, network })
}

/// `command` signed with the key in `key_file`, numbered by this machine's clock in
/// microseconds, for the cluster and network of `scope`, each only when given.
pub(super) fn sign(key_file: &Path, command: &Command, scope: Scope) -> Result<Signed, Failure> {
    let secret = load(key_file)?;
    let seq = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .context("this machine's clock is before 1970")?
        .as_micros() as u64;
    // The daemon named the PeerId or network (from a hostname, its status): say what is signed.
    let network = scope
        .network
        .as_ref()
        .map(|n| format!(" in network {n}"))
        .unwrap_or_default();
    eprintln!(
        "signing as the operator, number {seq}{network}: {}",
        serde_json::to_string(command)?
    );
    Ok(secret.sign_in(seq, command, scope))
}

/// The PeerId of the member `who` names (its PeerId or hostname), as the daemon's ledger
/// records it; with `any_peer_id`, a PeerId that is no member is taken as given.
pub(super) fn resolve(
    client: &ClientArgs,
    who: &str,
    any_peer_id: bool,
) -> Result<String, Failure> {
    let members: Vec<MemberView> = fetch(client, "/v1/members")?;
    let found: Vec<&MemberView> = members
        .iter()
        .filter(|m| m.peer_id == who || m.hostname == who)
        .collect();
    match found.as_slice() {
        [one] => Ok(one.peer_id.clone()),
        [] if any_peer_id && who.parse::<libp2p::PeerId>().is_ok() => Ok(who.to_string()),
        [] => Err(usage(anyhow::anyhow!(
            "no member {who:?} (PeerId or hostname)"
        ))),
        _ => Err(usage(anyhow::anyhow!(
            "{who:?} names {} members; give a PeerId",
            found.len()
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_command_is_signed_for_the_daemons_network_once_every_raft_node_checks_it() {
        let deny = Command::Deny { peer: "p".into() };
        let remove = Command::Leave { peer: "p".into() };
        let mut ledger = LedgerStatus {
            cluster_id: Some("07".into()),
            rules: NETWORK_BOUND - 1,
            ..LedgerStatus::default()
        };
        assert_eq!(scope(&deny, &ledger, "aa").unwrap(), Scope::default());
        let removal = scope(&remove, &ledger, "aa").unwrap();
        assert_eq!(removal.cluster.as_deref(), Some("07"));
        assert_eq!(removal.network, None);
        ledger.rules = NETWORK_BOUND;
        assert_eq!(
            scope(&deny, &ledger, "aa").unwrap().network.as_deref(),
            Some("aa")
        );
        let removal = scope(&remove, &ledger, "aa").unwrap();
        assert_eq!(
            (removal.cluster.as_deref(), removal.network.as_deref()),
            (Some("07"), Some("aa"))
        );
        ledger.cluster_id = None;
        assert!(scope(&remove, &ledger, "aa").is_err());
        assert!(scope(&deny, &ledger, "aa").is_ok());
    }
}
