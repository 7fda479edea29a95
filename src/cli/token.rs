//! `weft token`: new network tokens, and what a token holds (never its secret).

use std::io::Read as _;

use anyhow::Context as _;
use clap::Subcommand;

use super::client::{ClientArgs, call_json};
use super::operator::{SignArgs, sign};
use super::{Failure, usage};
use crate::api::rotate::{MAX_GRACE_SECS, RotateRequest, Rotated, ToSign};
use crate::ledger::state::Command;
use crate::operator::Scope;
use crate::token::{DEFAULT_EPOCH_SECS, NativeToken, Token};

#[derive(Debug, Subcommand)]
pub(super) enum TokenCommand {
    /// Print a new native token with a fresh 32-byte secret.
    New {
        /// Overlay address pool every member uses unless configured otherwise.
        #[arg(long)]
        cidr: Option<ipnet::Ipv4Net>,
        /// Multiaddr every member dials at start (repeatable).
        #[arg(long, value_name = "MULTIADDR")]
        bootstrap: Vec<libp2p::Multiaddr>,
        /// Seconds per DHT rendezvous epoch.
        #[arg(long, value_name = "SECS", default_value_t = DEFAULT_EPOCH_SECS, value_parser = clap::value_parser!(u64).range(60..))]
        rendezvous_epoch: u64,
    },
    /// Move the whole network to a new token, without downtime (ask a running node). Every
    /// member that is not denied gets the new token sealed to it through the ledger and moves
    /// to it; the token before stays accepted for the grace window, so members that are away
    /// can come back and move too. After it only the new token is accepted: a denied machine,
    /// which still holds the old one, is locked out for good. Prints the new token, for new
    /// machines and cloud-config (p2p.network_token); members keep it in their state directory.
    Rotate {
        /// Seconds the token before stays accepted.
        #[arg(long, value_name = "SECS", default_value_t = 3600, value_parser = clap::value_parser!(u64).range(0..=MAX_GRACE_SECS))]
        rotation_grace: u64,
        /// In a mesh of more than 256 members, rotate even when live members say they run a
        /// weft too old to read the new token's copies, which then follow in pages: those
        /// members stop taking the ledger until upgraded. Without it the rotation is refused,
        /// naming them (a stolen member could say so falsely to hold every rotation back).
        /// Never past a voter or learner that cannot read them: every write passes through it.
        #[arg(long)]
        force: bool,
        #[command(flatten)]
        sign: SignArgs,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Show a token's kind, version, network id and settings (never its secret).
    Inspect {
        /// The token, or - to read it from standard input.
        #[arg(value_name = "TOKEN|-")]
        token: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

/// Runs one `weft token` subcommand.
pub(super) fn run(command: TokenCommand) -> Result<(), Failure> {
    match command {
        TokenCommand::New {
            cidr,
            bootstrap,
            rendezvous_epoch,
        } => {
            println!(
                "{}",
                NativeToken::generate(cidr, bootstrap, rendezvous_epoch).encode()
            );
            Ok(())
        }
        TokenCommand::Inspect { token, json } => inspect_token(&token, json),
        TokenCommand::Rotate {
            rotation_grace,
            force,
            sign,
            client,
        } => rotate(
            &client,
            RotateRequest {
                grace_secs: rotation_grace,
                grant: None,
                force,
            },
            sign.operator_key_file.as_deref(),
        ),
    }
}

fn rotate(
    client: &ClientArgs,
    mut request: RotateRequest,
    key_file: Option<&std::path::Path>,
) -> Result<(), Failure> {
    let grace_secs = request.grace_secs;
    if let Some(key_file) = key_file {
        // The node makes the rotation first; the grant names it, and holds for it alone.
        let body = call_json(
            client,
            hyper::Method::POST,
            "/v1/token/rotate/prepare",
            &request,
        )?;
        let prepared: ToSign = serde_json::from_slice(&body)
            .context("the answer to /v1/token/rotate/prepare is not what this weft expects")?;
        let allow = Command::AllowRotation {
            cluster: prepared.cluster,
            previous: prepared.previous_network_id,
            rotation: Some(prepared.rotation),
        };
        request.grant = Some(sign(key_file, &allow, Scope::default())?);
    }
    let body = call_json(client, hyper::Method::POST, "/v1/token/rotate", &request)?;
    let rotated: Rotated = serde_json::from_slice(&body)
        .context("the answer to /v1/token/rotate is not what this weft expects")?;
    if client.json {
        println!("{}", serde_json::to_string_pretty(&rotated)?);
        return Ok(());
    }
    println!("{}", rotated.token);
    eprintln!(
        "The network moves from {} to {}: the new token was sealed for {} member(s). The token \
         before is accepted for {grace_secs} more seconds (until UNIX second {}); members that are \
         away longer need the new token in their configuration. Give new machines the token above.",
        rotated.previous_network_id, rotated.network_id, rotated.members, rotated.grace_until
    );
    if rotated.pages_pending > 0 {
        eprintln!(
            "{} page(s) of the members' copies were not committed yet: the node keeps proposing \
             them, and the members they hold copies for move once they commit (weft status on a \
             member shows its network id).",
            rotated.pages_pending
        );
    }
    if !rotated.unopened_secrets.is_empty() {
        eprintln!(
            "These secrets did not open on this node and stay sealed under the token before: {}",
            rotated.unopened_secrets.join(", ")
        );
    }
    Ok(())
}

fn inspect_token(text: &str, json: bool) -> Result<(), Failure> {
    let text = if text == "-" {
        let mut buf = String::new();
        std::io::stdin()
            .read_to_string(&mut buf)
            .context("cannot read the token from standard input")?;
        buf
    } else {
        text.to_string()
    };
    let description = Token::parse(&text).map_err(usage)?.describe();
    if json {
        println!("{}", serde_json::to_string_pretty(&description)?);
    } else {
        print!("{description}");
    }
    Ok(())
}
