//! The command line: clap definitions and one small module per group of subcommands, each a
//! thin function over the library.
//!
//! `weft up`'s flags are read as raw text (clap also fills them from their `WEFT_*` variables)
//! and handed to [`crate::config`] with their origin, which types them and reports bad values by
//! flag or variable name. Client commands talk to the local daemon's API ([`client`]). Usage
//! errors exit with code 2, runtime failures with 1.

mod client;
mod dns;
mod ledger;
mod members;
mod operator;
mod role;
mod show;
mod token;
mod up;

use std::ffi::OsString;
use std::path::Path;
use std::process::ExitCode;

use clap::{ArgMatches, CommandFactory as _, FromArgMatches as _, Parser, Subcommand};

use client::ClientArgs;

/// weft: a peer-to-peer mesh VPN and coordination daemon (a drop-in for edgevpn).
#[derive(Debug, Parser)]
#[command(name = "weft", version, propagate_version = true)]
#[command(
    after_help = "Invoked as `edgevpn` with no subcommand, weft runs `up` and reads \
edgevpn's environment variables (EDGEVPNTOKEN, ADDRESS, IFACE, APILISTEN, ...)."
)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the mesh daemon on this machine.
    Up(Box<up::UpArgs>),
    /// Create or read network tokens.
    #[command(subcommand)]
    Token(token::TokenCommand),
    /// Show what the local daemon reports about this node.
    Status(ClientArgs),
    /// List the peers that proved membership, how they are reached and their round-trip time.
    Peers(ClientArgs),
    /// List the ledger's members (hostname, DNS name, overlay address, role, lease); remove,
    /// deny or allow one, or trust one with a raft seat.
    Members(members::MembersArgs),
    /// Kubernetes roles: who is control plane or worker, deployed or pending, and the policy.
    #[command(subcommand)]
    Role(role::RoleCommand),
    /// The operator's key: made here, kept off the edge machines, and given to the commands
    /// only the operator may issue in a mesh started with --operator-key.
    #[command(subcommand)]
    Operator(operator::OperatorCommand),
    /// Print the Kubernetes cluster's admin kubeconfig (from the ledger, on any member).
    Kubeconfig(role::KubeconfigArgs),
    /// Read and change what the mesh's DNS answers.
    #[command(subcommand)]
    Dns(dns::DnsCommand),
    /// Read and write the ledger's key-value buckets (any member may write).
    #[command(subcommand)]
    Ledger(ledger::LedgerCommand),
    /// edgevpn's `api` command (Kairos' `p2p.vpn.create: false`): discovery, the ledger, DNS
    /// and the local API, without a TUN interface.
    Api(up::ApiArgs),
    /// Print weft's version.
    Version,
}

/// A command's failure: usage errors (bad input) exit 2, everything else 1.
#[derive(Debug)]
pub enum Failure {
    Usage(anyhow::Error),
    Runtime(anyhow::Error),
}

impl<E: Into<anyhow::Error>> From<E> for Failure {
    fn from(e: E) -> Self {
        Failure::Runtime(e.into())
    }
}

fn usage(e: impl Into<anyhow::Error>) -> Failure {
    Failure::Usage(e.into())
}

/// The whole program: parse the command line, run the command, map the outcome to an exit code.
pub fn main() -> ExitCode {
    // Before any thread starts or any large buffer is allocated.
    crate::memory::configure();
    let args: Vec<OsString> = std::env::args_os().collect();
    let as_edgevpn = invoked_as_edgevpn(&args);
    let matches = Cli::command().get_matches_from(with_edgevpn_default(args));
    match run(&matches, as_edgevpn) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Usage(e)) => {
            eprintln!("weft: {e:#}");
            ExitCode::from(2)
        }
        Err(Failure::Runtime(e)) => {
            eprintln!("weft: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Under the name `edgevpn` and without a subcommand, weft runs `up` (Kairos starts the unit
/// with `ExecStart=edgevpn` and only environment variables).
fn with_edgevpn_default(mut args: Vec<OsString>) -> Vec<OsString> {
    let as_edgevpn = invoked_as_edgevpn(&args);
    let has_subcommand = args
        .get(1)
        .is_some_and(|a| !a.to_string_lossy().starts_with('-'));
    if as_edgevpn && !has_subcommand {
        args.insert(1, "up".into());
    }
    args
}

/// Whether the program was started under the name `edgevpn` (Kairos' drop-in mode).
fn invoked_as_edgevpn(args: &[OsString]) -> bool {
    args.first()
        .and_then(|a| Path::new(a).file_name())
        .is_some_and(|n| n == "edgevpn")
}

fn run(matches: &ArgMatches, as_edgevpn: bool) -> Result<(), Failure> {
    let cli = Cli::from_arg_matches(matches).map_err(usage)?;
    match cli.command {
        Command::Up(args) => {
            let up_matches = matches
                .subcommand_matches("up")
                .expect("clap parsed the up subcommand");
            up::run(&args, up_matches, as_edgevpn)
        }
        Command::Api(args) => up::run_api(&args, as_edgevpn),
        Command::Token(command) => token::run(command),
        Command::Status(client) => show::status(&client),
        Command::Peers(client) => show::peers(&client),
        Command::Members(args) => members::run(args),
        Command::Role(command) => role::run(command),
        Command::Operator(command) => operator::run(command),
        Command::Kubeconfig(args) => role::kubeconfig(&args),
        Command::Dns(command) => dns::run(command),
        Command::Ledger(command) => ledger::run(command),
        Command::Version => {
            println!("weft {}", crate::VERSION);
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn os(args: &[&str]) -> Vec<OsString> {
        args.iter().map(OsString::from).collect()
    }

    #[test]
    fn edgevpn_with_no_subcommand_runs_up() {
        assert_eq!(
            with_edgevpn_default(os(&["/usr/bin/edgevpn"])),
            os(&["/usr/bin/edgevpn", "up"])
        );
        assert_eq!(
            with_edgevpn_default(os(&["edgevpn", "--print-config"])),
            os(&["edgevpn", "up", "--print-config"])
        );
        assert_eq!(
            with_edgevpn_default(os(&["edgevpn", "status"])),
            os(&["edgevpn", "status"])
        );
        assert_eq!(with_edgevpn_default(os(&["weft"])), os(&["weft"]));
    }

    #[test]
    fn the_command_line_definition_is_consistent() {
        Cli::command().debug_assert();
    }
}
