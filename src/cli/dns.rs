//! `weft dns`: what the mesh's DNS answers, and user records added or removed.

use clap::Subcommand;

use super::Failure;
use super::client::{ClientArgs, call, call_json, fetch, segment};

#[derive(Debug, Subcommand)]
pub(super) enum DnsCommand {
    /// List members' names, user records and regex records.
    Ls {
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Add a record value (a name may hold several); returns once the cluster has committed it.
    #[command(
        after_help = "Examples:\n  weft dns add db.weft.internal A 10.1.0.20\n  \
weft dns add '*.apps.weft.internal' CNAME ingress.weft.internal\n  \
weft dns add _k3s._tcp.weft.internal SRV '0 5 6443 cp1.weft.internal'\n  \
weft dns add --regex 'registry(-mirror)?\\.lan' A 10.1.0.30"
    )]
    Add {
        /// A fully-qualified name (`db.weft.internal`) or wildcard (`*.apps.weft.internal`); with
        /// --regex, an edgevpn-style regular expression matched against whole names.
        name: String,
        /// A, AAAA, CNAME, TXT or SRV.
        #[arg(value_name = "TYPE")]
        rtype: String,
        /// An address (A, AAAA), a name (CNAME), text (TXT), or `priority weight port target`
        /// (SRV).
        value: String,
        /// Seconds resolvers may cache the record.
        #[arg(long, default_value_t = crate::dns::records::DEFAULT_TTL)]
        ttl: u32,
        /// NAME is a regular expression (edgevpn's DNS records); it matches whole names only.
        #[arg(long)]
        regex: bool,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Remove all of a name's records, those of one type, or one value.
    Rm {
        /// The name, or with --regex the regular expression, as listed by `weft dns ls`.
        name: String,
        /// Only records of this type.
        #[arg(value_name = "TYPE")]
        rtype: Option<String>,
        /// Only this value.
        value: Option<String>,
        /// NAME is a regular expression record (removed whole).
        #[arg(long, conflicts_with_all = ["rtype", "value"])]
        regex: bool,
        #[command(flatten)]
        client: ClientArgs,
    },
}

/// Runs one `weft dns` subcommand.
pub(super) fn run(command: DnsCommand) -> Result<(), Failure> {
    use crate::api::dns::{DnsView, NewRecord};
    use hyper::Method;
    match command {
        DnsCommand::Ls { client } => {
            let view: DnsView = fetch(&client, "/v1/dns")?;
            if client.json {
                println!("{}", serde_json::to_string_pretty(&view)?);
                return Ok(());
            }
            let server = match (&view.listen, &view.upstreams) {
                (None, _) => "this node runs no DNS server (--dns)".to_string(),
                (Some(listen), None) => format!("served on {listen}, no forwarding"),
                (Some(listen), Some(up)) if up.is_empty() => {
                    format!("served on {listen}, forwarding on but no upstream resolver")
                }
                (Some(listen), Some(up)) => {
                    format!("served on {listen}, forwarding to {}", up.join(", "))
                }
            };
            println!("domain {} ({server})\n", view.domain);
            println!(
                "{:<7} {:<40} {:<6} {:>6}  VALUE",
                "KIND", "NAME", "TYPE", "TTL"
            );
            for h in &view.hosts {
                println!(
                    "{:<7} {:<40} {:<6} {:>6}  {}",
                    "member", h.name, "A", h.ttl, h.address
                );
            }
            for r in &view.records {
                println!(
                    "{:<7} {:<40} {:<6} {:>6}  {}",
                    "record", r.name, r.rtype, r.ttl, r.value
                );
            }
            for p in &view.patterns {
                for (rtype, value) in &p.records {
                    println!(
                        "{:<7} {:<40} {:<6} {:>6}  {}",
                        "regex", p.regex, rtype, p.ttl, value
                    );
                }
            }
        }
        DnsCommand::Add {
            name,
            rtype,
            value,
            ttl,
            regex,
            client,
        } => {
            let (name, regex) = if regex {
                (None, Some(name))
            } else {
                (Some(name), None)
            };
            let record = NewRecord {
                name,
                regex,
                rtype,
                value,
                ttl: Some(ttl),
            };
            call_json(&client, Method::POST, "/v1/dns", &record)?;
        }
        DnsCommand::Rm {
            name,
            rtype,
            value,
            regex,
            client,
        } => {
            let path = if regex {
                format!("/v1/dns/regex/{}", segment(&name))
            } else {
                let mut path = format!("/v1/dns/name/{}", segment(&name));
                for part in [&rtype, &value].into_iter().flatten() {
                    path.push('/');
                    path.push_str(&segment(part));
                }
                path
            };
            call(&client, Method::DELETE, &path, Vec::new())?;
        }
    }
    Ok(())
}
