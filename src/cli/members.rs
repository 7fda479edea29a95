//! `weft members`: the ledger's members, and removing one that left for good.

use clap::{Args, Subcommand};

use super::Failure;
use super::client::{ClientArgs, call, fetch, segment};
use crate::api::MemberView;

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
        client: ClientArgs,
    },
}

/// Runs `weft members [rm MEMBER]`.
pub(super) fn run(args: MembersArgs) -> Result<(), Failure> {
    match args.command {
        None => list(&args.client),
        Some(MembersCommand::Rm { member, client }) => {
            let path = format!("/v1/members/{}", segment(&member));
            call(&client, hyper::Method::DELETE, &path, Vec::new())?;
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
        "{:<20} {:<32} {:<15} {:<20} {:<8} PEER ID",
        "HOSTNAME", "DNS NAME", "OVERLAY IP", "ROLE", "LEASE"
    );
    for m in &members {
        println!(
            "{:<20} {:<32} {:<15} {:<20} {:<8} {}",
            m.hostname,
            m.dns_name.as_deref().unwrap_or("-"),
            m.overlay_ip.as_deref().unwrap_or("-"),
            m.role.as_deref().unwrap_or("-"),
            m.lease,
            m.peer_id
        );
    }
    Ok(())
}
