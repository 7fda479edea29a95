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
use crate::ledger::state::{Command, Outcome};
use crate::operator::{OperatorSecret, Signed};

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
    // A removal holds only in the cluster it is signed for: the one the daemon is in.
    let cluster = match command {
        Command::Leave { .. } => Some(cluster(client)?),
        _ => None,
    };
    let signed = sign(key_file, command, cluster)?;
    let body = call_json(client, Method::POST, "/v1/operator", &signed)?;
    serde_json::from_slice(&body)
        .context("the answer to /v1/operator is not what this weft expects")
        .map_err(Failure::Runtime)
}

/// The cluster the daemon is in, as its status names it.
pub(super) fn cluster(client: &ClientArgs) -> Result<String, Failure> {
    let status: StatusView = fetch(client, "/v1/status")?;
    status.ledger.cluster_id.ok_or_else(|| {
        Failure::Runtime(anyhow::anyhow!(
            "the node is in no cluster yet; try again once it is"
        ))
    })
}

/// `command` signed with the key in `key_file`, numbered by this machine's clock in
/// microseconds, for `cluster` alone when given.
pub(super) fn sign(
    key_file: &Path,
    command: &Command,
    cluster: Option<String>,
) -> Result<Signed, Failure> {
    let secret = load(key_file)?;
    let seq = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .context("this machine's clock is before 1970")?
        .as_micros() as u64;
    // The daemon named the PeerId or network (from a hostname, its status): say what is signed.
    eprintln!(
        "signing as the operator, number {seq}: {}",
        serde_json::to_string(command)?
    );
    Ok(secret.sign_in(seq, command, cluster))
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
