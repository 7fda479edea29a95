//! `weft ledger`: the key-value buckets any member may write, and recovery after quorum loss.

use anyhow::Context as _;
use clap::Subcommand;

use super::client::{ClientArgs, call, fetch, segment};
use super::{Failure, usage};

#[derive(Debug, Subcommand)]
pub(super) enum LedgerCommand {
    /// List the buckets, or the keys and values of one bucket.
    Ls {
        bucket: Option<String>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Print one value.
    Get {
        bucket: String,
        key: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Store a value; returns once the cluster has committed it.
    Put {
        bucket: String,
        key: String,
        value: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Delete a key, or a whole bucket when no key is given.
    Rm {
        bucket: String,
        key: Option<String>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// After the cluster lost its quorum for good: start a new cluster from this node's copy
    /// of the ledger. Without --force, explains the risk and does nothing.
    Recover {
        /// Proceed: entries this node had not applied are lost.
        #[arg(long)]
        force: bool,
        #[command(flatten)]
        client: ClientArgs,
    },
}

/// Runs one `weft ledger` subcommand.
pub(super) fn run(command: LedgerCommand) -> Result<(), Failure> {
    use hyper::Method;
    match command {
        LedgerCommand::Ls { bucket, client } => {
            let path = match &bucket {
                Some(bucket) => format!("/v1/ledger/{}", segment(bucket)),
                None => "/v1/ledger".to_string(),
            };
            let value: serde_json::Value = fetch(&client, &path)?;
            match (&value, client.json) {
                (_, true) => println!("{}", serde_json::to_string_pretty(&value)?),
                (serde_json::Value::Object(map), false) if bucket.is_some() => {
                    for (key, value) in map {
                        println!("{key}\t{}", value.as_str().unwrap_or_default());
                    }
                }
                (serde_json::Value::Object(map), false) => {
                    for (name, keys) in map {
                        let count = keys.as_object().map(|k| k.len()).unwrap_or(0);
                        println!("{name}\t{count} keys");
                    }
                }
                _ => println!("{value}"),
            }
        }
        LedgerCommand::Get {
            bucket,
            key,
            client,
        } => {
            let path = format!("/v1/ledger/{}/{}", segment(&bucket), segment(&key));
            let value = call(&client, Method::GET, &path, Vec::new())?;
            println!("{}", String::from_utf8_lossy(&value));
        }
        LedgerCommand::Put {
            bucket,
            key,
            value,
            client,
        } => {
            let path = format!("/v1/ledger/{}/{}", segment(&bucket), segment(&key));
            call(&client, Method::PUT, &path, value.into_bytes())?;
        }
        LedgerCommand::Rm {
            bucket,
            key,
            client,
        } => {
            let path = match key {
                Some(key) => format!("/v1/ledger/{}/{}", segment(&bucket), segment(&key)),
                None => format!("/v1/ledger/{}", segment(&bucket)),
            };
            call(&client, Method::DELETE, &path, Vec::new())?;
        }
        LedgerCommand::Recover { force, client } => {
            if !force {
                return Err(usage(anyhow::anyhow!("{}", crate::ledger::recover::RISK)));
            }
            let body = call(&client, Method::POST, "/v1/recover", Vec::new())?;
            let recovery: crate::ledger::recover::Recovery = serde_json::from_slice(&body)
                .context("the answer to /v1/recover is not what this weft expects")?;
            if client.json {
                println!("{}", serde_json::to_string_pretty(&recovery)?);
            } else {
                println!(
                    "left cluster {} at entry {}; new cluster {} seeded with {} members",
                    recovery.previous_cluster,
                    recovery.applied_index,
                    recovery.cluster,
                    recovery.members
                );
            }
        }
    }
    Ok(())
}
