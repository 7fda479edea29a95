//! `weft ledger`: the key-value buckets any member may write, the audit trail of who wrote
//! what, and recovery after quorum loss.

use anyhow::Context as _;
use clap::Subcommand;

use super::client::{ClientArgs, call, fetch, segment};
use super::{Failure, usage};
use crate::ledger::state::AuditEntry;

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
    /// Show the audit trail: which node had each operator command and each shared write
    /// (keys, DNS records, secrets) committed, newest last. Members' own joins and renewals are
    /// not listed.
    Audit {
        /// Show only the last N entries.
        #[arg(long, default_value_t = 50)]
        last: usize,
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
        LedgerCommand::Audit { last, client } => {
            let trail: Vec<AuditEntry> = fetch(&client, "/v1/audit")?;
            let shown = &trail[trail.len().saturating_sub(last)..];
            if client.json {
                println!("{}", serde_json::to_string_pretty(shown)?);
            } else {
                print!("{}", audit_table(shown, crate::clock::unix_now()));
            }
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

/// The trail as a table: index, age, issuer, action, outcome.
fn audit_table(entries: &[AuditEntry], now: u64) -> String {
    let mut table = String::from("INDEX\tAGE\tISSUER\tACTION\tOUTCOME\n");
    for entry in entries {
        table.push_str(&format!(
            "{}\t{}s ago\t{}\t{}\t{}\n",
            entry.index,
            now.saturating_sub(entry.at),
            entry.issuer,
            entry.action,
            entry.outcome
        ));
    }
    table
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_audit_table_has_one_line_per_entry() {
        let entry = AuditEntry {
            index: 7,
            at: 100,
            issuer: "12D3KooWA".into(),
            action: "deny 12D3KooWB".into(),
            outcome: "Done".into(),
            data: false,
        };
        assert_eq!(
            audit_table(&[entry], 130),
            "INDEX\tAGE\tISSUER\tACTION\tOUTCOME\n7\t30s ago\t12D3KooWA\tdeny 12D3KooWB\tDone\n"
        );
    }
}
