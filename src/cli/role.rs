//! `weft role` (who is control plane or worker, deployed or pending, and the policy) and
//! `weft kubeconfig` (the cluster's admin kubeconfig from the ledger).

use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Args, Subcommand};
use hyper::Method;

use super::Failure;
use super::client::{ClientArgs, call, call_json, fetch, segment};
use super::operator::{SignArgs, resolve, send_signed};
use super::usage;
use crate::api::roles::{PolicyChange, PolicyView, RoleChange, RolesView};
use crate::ledger::state::{Command, RolePolicy, parse_role_choice};

#[derive(Debug, Subcommand)]
pub(super) enum RoleCommand {
    /// List every member's role: assigned, fixed or automatic, deployed or pending, and its
    /// bootstrapper's phase and last error.
    Ls {
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Fix a member's role: auto (the policy decides), master (a control plane), worker or none
    /// (no Kubernetes). A member that deployed another role keeps it unless --force.
    Set {
        /// The member's PeerId or hostname. Signed (--operator-key-file), also the PeerId of a
        /// machine that has not joined yet: its role stands once it joins, in a mesh whose
        /// ledger rules are of version 2 or later (`weft status`).
        node: String,
        /// auto, master, worker or none.
        role: String,
        /// Change a deployed member's role anyway (the refusal explains what breaks).
        #[arg(long)]
        force: bool,
        #[command(flatten)]
        sign: SignArgs,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Show the role policy, or set how many control planes the mesh should have.
    Policy {
        /// 1 for one master; N > 1 for one master/clusterinit and N-1 master/ha. Deployed
        /// control planes keep their seats.
        #[arg(long, value_name = "N")]
        control_planes: Option<u32>,
        #[command(flatten)]
        sign: SignArgs,
        #[command(flatten)]
        client: ClientArgs,
    },
}

/// `weft kubeconfig`'s options.
#[derive(Debug, Args)]
pub(super) struct KubeconfigArgs {
    /// Write it to FILE (mode 0600) instead of standard output.
    #[arg(long, short, value_name = "FILE")]
    output: Option<PathBuf>,
    #[command(flatten)]
    client: ClientArgs,
}

/// Runs one `weft role` subcommand.
pub(super) fn run(command: RoleCommand) -> Result<(), Failure> {
    match command {
        RoleCommand::Ls { client } => list(&client),
        RoleCommand::Set {
            node,
            role,
            force,
            sign: SignArgs {
                operator_key_file: Some(key),
            },
            client,
        } => {
            let choice = parse_role_choice(&role).map_err(|e| usage(anyhow::anyhow!(e)))?;
            let peer = resolve(&client, &node, true)?;
            let command = Command::SetFixedRole {
                peer,
                role: choice,
                force,
            };
            send_signed(&client, &key, &command)?;
            println!("{node}: role set to {role}");
            Ok(())
        }
        RoleCommand::Set {
            node,
            role,
            force,
            client,
            ..
        } => {
            let path = format!("/v1/roles/{}", segment(&node));
            call_json(
                &client,
                Method::PUT,
                &path,
                &RoleChange {
                    role: role.clone(),
                    force,
                },
            )?;
            println!("{node}: role set to {role}");
            Ok(())
        }
        RoleCommand::Policy {
            control_planes,
            sign,
            client,
        } => {
            let view: PolicyView = match (control_planes, sign.operator_key_file) {
                (Some(n), Some(key)) => {
                    let command = Command::SetRolePolicy(RolePolicy { control_planes: n });
                    send_signed(&client, &key, &command)?;
                    fetch(&client, "/v1/policy")?
                }
                (Some(n), None) => {
                    let body = call_json(
                        &client,
                        Method::PUT,
                        "/v1/policy",
                        &PolicyChange { control_planes: n },
                    )?;
                    serde_json::from_slice(&body)
                        .context("the answer to /v1/policy is not what this weft expects")?
                }
                (None, _) => fetch(&client, "/v1/policy")?,
            };
            if client.json {
                println!("{}", serde_json::to_string_pretty(&view)?);
            } else {
                print_policy(&view);
            }
            Ok(())
        }
    }
}

fn print_policy(view: &PolicyView) {
    println!(
        "policy: {} control plane{}{}",
        view.control_planes,
        if view.control_planes == 1 { "" } else { "s" },
        if view.set {
            ""
        } else {
            " (default: nobody set one)"
        }
    );
    for note in &view.notes {
        println!("note: {note}");
    }
}

fn list(client: &ClientArgs) -> Result<(), Failure> {
    let view: RolesView = fetch(client, "/v1/roles")?;
    if client.json {
        println!("{}", serde_json::to_string_pretty(&view)?);
        return Ok(());
    }
    print_policy(&view.policy);
    println!();
    println!(
        "{:<20} {:<19} {:<7} {:<9} {:<11} {:<15} {:<8} DETAIL",
        "HOSTNAME", "ROLE", "FIXED", "STATE", "PHASE", "OVERLAY IP", "LEASE"
    );
    for m in &view.members {
        println!(
            "{:<20} {:<19} {:<7} {:<9} {:<11} {:<15} {:<8} {}",
            m.hostname,
            m.role.as_deref().unwrap_or("-"),
            m.fixed,
            if m.deployed { "deployed" } else { "pending" },
            m.phase.as_deref().unwrap_or("-"),
            m.overlay_ip.as_deref().unwrap_or("-"),
            m.lease,
            m.detail.as_deref().unwrap_or("")
        );
    }
    Ok(())
}

/// Prints the kubeconfig, or writes it 0600.
pub(super) fn kubeconfig(args: &KubeconfigArgs) -> Result<(), Failure> {
    let body = call(&args.client, Method::GET, "/v1/kubeconfig", Vec::new())?;
    match &args.output {
        Some(path) => {
            crate::bootstrap::files::write_atomic(path, &body, 0o600)?;
            eprintln!("kubeconfig written to {}", path.display());
        }
        None => print!("{}", String::from_utf8_lossy(&body)),
    }
    Ok(())
}
