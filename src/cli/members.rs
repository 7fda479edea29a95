//! `weft members`: the ledger's members, removing one that left for good, denying one (a
//! stolen or compromised machine) so that every member cuts it off, and naming the ones the
//! operator trusts with a raft seat.

use clap::{Args, Subcommand};

use super::client::{ClientArgs, call, fetch, segment};
use super::operator::{SignArgs, resolve, send_signed};
use super::{Failure, usage};
use crate::api::{MemberView, StatusView};
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
    /// Trust a machine you keep safe with a raft seat. Once the operator trusts any, trusted
    /// members take the raft seats as they join and the others follow, so a stolen machine
    /// that is not trusted cannot vote, lead or rewrite the ledger; once trusted machines hold
    /// most voter seats, only they lead. Trust more machines than the mesh has voters (three
    /// by default): with fewer, untrusted voters keep the seats no trusted member can take
    /// (the command says so), and with just as many, none is left to stand in for a trusted
    /// voter that fails. Needs the operator's key.
    Trust {
        /// The machine's PeerId (`weft status` on that machine shows it), joined or not; not a
        /// hostname, which is a member's own word.
        peer: String,
        #[command(flatten)]
        sign: SignArgs,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Take a PeerId off the trust list; with none left on it, any member may hold a raft
    /// seat again. Needs the operator's key.
    Untrust {
        /// A PeerId on the trust list, or the hostname of a member whose PeerId is on it.
        member: String,
        #[command(flatten)]
        sign: SignArgs,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// List the PeerIds the operator trusts with a raft seat (none: any member may hold one).
    Trusted {
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
        Some(MembersCommand::Denied { client }) => print_peers(&client, "/v1/denied"),
        Some(MembersCommand::Trust { peer, sign, client }) => {
            let key = operator_key(sign, "trust")?;
            if peer.parse::<libp2p::PeerId>().is_err() {
                return Err(usage(anyhow::anyhow!(
                    "weft members trust takes a PeerId, not {peer:?}: read it with weft status \
                     on that machine (a hostname is a member's own word, and a token holder \
                     could join under the name you mean)"
                )));
            }
            send_signed(&client, &key, &Command::Trust { peer: peer.clone() })?;
            // The trust committed: a note that cannot be made fails nothing.
            if let Err(Failure::Usage(e) | Failure::Runtime(e)) = warn_if_short(&client, peer) {
                eprintln!("note: cannot tell how many trusted machines are live: {e:#}");
            }
            Ok(())
        }
        Some(MembersCommand::Untrust {
            member,
            sign,
            client,
        }) => {
            let key = operator_key(sign, "untrust")?;
            let peer = resolve(&client, &member, true)?;
            // A hostname is a member's own word: a stolen trusted machine could rejoin under
            // another name and leave a decoy under its old one. Only a trusted PeerId is taken
            // back, so untrusting a decoy fails rather than reporting success.
            let trusted: Vec<String> = fetch(&client, "/v1/trusted")?;
            if !trusted.contains(&peer) {
                return Err(usage(anyhow::anyhow!(
                    "{member} ({peer}) is not trusted: give a PeerId that `weft members trusted` \
                     lists"
                )));
            }
            send_signed(&client, &key, &Command::Untrust { peer }).map(drop)
        }
        Some(MembersCommand::Trusted { client }) => print_peers(&client, "/v1/trusted"),
    }
}

/// The operator's key file `weft members <command>` needs: trust is the operator's alone.
fn operator_key(sign: SignArgs, command: &str) -> Result<std::path::PathBuf, Failure> {
    sign.operator_key_file.ok_or_else(|| {
        usage(anyhow::anyhow!(
            "weft members {command} needs the operator's key: give --operator-key-file (or \
             WEFT_OPERATOR_KEY_FILE); only the operator trusts members with raft seats"
        ))
    })
}

/// After the trust of `peer` committed: says so when fewer trusted machines are live members
/// than the mesh has voters, since untrusted voters keep the seats no trusted member can take.
/// `peer` counts as trusted whether or not the node asked has applied its trust yet. While the
/// voters change, the status lists both voter sets, so at most as many as the ledger aims for
/// are counted.
fn warn_if_short(client: &ClientArgs, peer: String) -> Result<(), Failure> {
    let mut trusted: Vec<String> = fetch(client, "/v1/trusted")?;
    if !trusted.contains(&peer) {
        trusted.push(peer);
    }
    let members: Vec<MemberView> = fetch(client, "/v1/members")?;
    let status: StatusView = fetch(client, "/v1/status")?;
    let live = members
        .iter()
        .filter(|m| m.lease == "live" && trusted.contains(&m.peer_id))
        .count();
    let mut voters = status.ledger.voters.len();
    if status.ledger.changing_voters {
        voters = voters.min(crate::daemon::TARGET_VOTERS);
    }
    if live < voters {
        eprintln!(
            "note: {live} of the {} trusted machines are live members, and the mesh has {voters} \
             voters: untrusted voters keep their seats until trusted machines can take them",
            trusted.len()
        );
    }
    Ok(())
}

/// Prints the PeerIds `path` lists, one per line, or the array with `--json`.
fn print_peers(client: &ClientArgs, path: &str) -> Result<(), Failure> {
    let peers: Vec<String> = fetch(client, path)?;
    if client.json {
        println!("{}", serde_json::to_string_pretty(&peers)?);
    } else {
        for peer in peers {
            println!("{peer}");
        }
    }
    Ok(())
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
