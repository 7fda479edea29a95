//! `weft members`: the ledger's members, removing one that left for good, and denying one (a
//! stolen or compromised machine) so that every member cuts it off.

use clap::{Args, Subcommand};

use super::Failure;
use super::client::{ClientArgs, call, fetch, segment};
use super::operator::{SignArgs, resolve, send_signed};
use crate::api::MemberView;
use crate::ledger::state::Command;

#[derive(Debug, Args)]
pub(super) struct MembersArgs {
    #[command(subcommand)]
    command: Option<MembersCommand>,
    #[command(flatten)]
    client: ClientArgs,
}

#[derive(Debug, Subcommand)]
enum MembersCommand {
    /// Remove a member that left for good: its overlay address and DNS name are freed at once
    /// instead of when its lease runs out. A node that is still running records itself again.
    Rm {
        /// The member's PeerId or hostname.
        member: String,
        #[command(flatten)]
        sign: SignArgs,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Deny a member (a stolen or compromised machine): it is removed, every member closes its
    /// connections within seconds and refuses it from then on. It still holds the network
    /// token; rotate the token to lock it out for good.
    Deny {
        /// The member's PeerId or hostname, or any PeerId.
        member: String,
        #[command(flatten)]
        sign: SignArgs,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Take a PeerId off the deny list: it may join again.
    Allow {
        /// The denied PeerId.
        peer: String,
        #[command(flatten)]
        sign: SignArgs,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// List the denied PeerIds.
    Denied {
        #[command(flatten)]
        client: ClientArgs,
    },
}

/// Runs `weft members [rm MEMBER]`.
pub(super) fn run(args: MembersArgs) -> Result<(), Failure> {
    match args.command {
        None => list(&args.client),
        Some(MembersCommand::Rm {
            member,
            sign,
            client,
        }) => match sign.operator_key_file {
            Some(key) => {
                let peer = resolve(&client, &member, false)?;
                send_signed(&client, &key, &Command::Leave { peer }).map(drop)
            }
            None => {
                let path = format!("/v1/members/{}", segment(&member));
                call(&client, hyper::Method::DELETE, &path, Vec::new()).map(drop)
            }
        },
        Some(MembersCommand::Deny {
            member,
            sign,
            client,
        }) => match sign.operator_key_file {
            Some(key) => {
                let peer = resolve(&client, &member, true)?;
                send_signed(&client, &key, &Command::Deny { peer }).map(drop)
            }
            None => {
                let path = format!("/v1/denied/{}", segment(&member));
                call(&client, hyper::Method::PUT, &path, Vec::new()).map(drop)
            }
        },
        Some(MembersCommand::Allow { peer, sign, client }) => match sign.operator_key_file {
            Some(key) => send_signed(&client, &key, &Command::Allow { peer }).map(drop),
            None => {
                let path = format!("/v1/denied/{}", segment(&peer));
                call(&client, hyper::Method::DELETE, &path, Vec::new()).map(drop)
            }
        },
        Some(MembersCommand::Denied { client }) => {
            let denied: Vec<String> = fetch(&client, "/v1/denied")?;
            if client.json {
                println!("{}", serde_json::to_string_pretty(&denied)?);
            } else {
                for peer in denied {
                    println!("{peer}");
                }
            }
            Ok(())
        }
    }
}

fn list(client: &ClientArgs) -> Result<(), Failure> {
    let members: Vec<MemberView> = fetch(client, "/v1/members")?;
    if client.json {
        println!("{}", serde_json::to_string_pretty(&members)?);
        return Ok(());
    }
    println!(
        "{:<20} {:<32} {:<15} {:<20} {:<8} {:<8} PEER ID",
        "HOSTNAME", "DNS NAME", "OVERLAY IP", "ROLE", "LEASE", "RAFT"
    );
    for m in &members {
        println!(
            "{:<20} {:<32} {:<15} {:<20} {:<8} {:<8} {}",
            m.hostname,
            m.dns_name.as_deref().unwrap_or("-"),
            m.overlay_ip.as_deref().unwrap_or("-"),
            m.role.as_deref().unwrap_or("-"),
            m.lease,
            m.raft.as_deref().unwrap_or("-"),
            m.peer_id
        );
    }
    Ok(())
}
