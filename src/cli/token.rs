//! `weft token`: new network tokens, and what a token holds (never its secret).

use std::io::Read as _;

use anyhow::Context as _;
use clap::Subcommand;

use super::{Failure, usage};
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
    }
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
