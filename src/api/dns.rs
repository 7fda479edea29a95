//! The DNS routes: `/v1/dns` (members' host records, user records and patterns; add and
//! remove) and edgevpn's `/api/dns` (regex records, with edgevpn's JSON shapes). Every name,
//! value and regex is checked here, before it reaches the ledger, and a bad one is answered 400
//! with what is wrong.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use serde::{Deserialize, Serialize};

use super::edgevpn::{Announcing, GoJson};
use super::error::ApiError;
use super::routes::ApiState;
use crate::dns::{names, records, zone};
use crate::ledger::state::{Command, DnsRecord, Outcome, RecordType};

/// `GET /v1/dns`: what the mesh's DNS answers.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct DnsView {
    /// The mesh domain.
    pub domain: String,
    /// Where this node's DNS server listens; `None` when it runs none.
    pub listen: Option<String>,
    /// The upstream resolvers it forwards to; `None` when forwarding is off.
    pub upstreams: Option<Vec<String>>,
    /// Members' automatic records.
    pub hosts: Vec<HostRecord>,
    pub records: Vec<RecordView>,
    pub patterns: Vec<PatternView>,
}

/// A member's automatic A record.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct HostRecord {
    pub name: String,
    pub address: String,
    pub ttl: u32,
    pub peer_id: String,
}

/// One value of a user record.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct RecordView {
    pub name: String,
    #[serde(rename = "type")]
    pub rtype: RecordType,
    pub value: String,
    pub ttl: u32,
}

/// An edgevpn-style regex record: the values it answers, by type.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct PatternView {
    pub regex: String,
    pub records: BTreeMap<RecordType, String>,
    pub ttl: u32,
}

/// `POST /v1/dns`: one value for a name (exact or `*.` wildcard) or a regex.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct NewRecord {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub regex: Option<String>,
    #[serde(rename = "type")]
    pub rtype: String,
    pub value: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl: Option<u32>,
}

/// edgevpn's DNS entry: RR type names as keys (`POST /api/dns` also takes numbers).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct EdgevpnDns {
    #[serde(rename = "Regex")]
    pub regex: String,
    #[serde(rename = "Records")]
    pub records: BTreeMap<String, String>,
}

impl NewRecord {
    /// The ledger command this request asks for, or why the request is bad (naming the field).
    pub fn command(self) -> Result<Command, ApiError> {
        let rtype: RecordType = self.rtype.parse().map_err(ApiError::BadRequest)?;
        let value = records::canonical_value(rtype, &self.value).map_err(bad)?;
        let ttl = records::ttl(self.ttl.unwrap_or(records::DEFAULT_TTL)).map_err(bad)?;
        let record = DnsRecord { value, ttl };
        match (self.name, self.regex) {
            (Some(name), None) => Ok(Command::PutDns {
                name: records::canonical_name(&name).map_err(bad)?,
                rtype,
                record,
            }),
            (None, Some(regex)) => {
                records::pattern(&regex).map_err(bad)?;
                Ok(Command::PutDnsPattern {
                    pattern: regex,
                    records: [(rtype, record)].into(),
                    merge: true,
                })
            }
            _ => Err(ApiError::BadRequest(
                "give exactly one of \"name\" and \"regex\"".into(),
            )),
        }
    }
}

impl EdgevpnDns {
    /// The ledger command this edgevpn entry asks for (it replaces the pattern's records), or
    /// why the entry is bad.
    pub fn command(self) -> Result<Command, ApiError> {
        records::pattern(&self.regex).map_err(bad)?;
        if self.records.is_empty() {
            return Err(ApiError::BadRequest(format!(
                "the DNS entry for regex {:?} has no records",
                self.regex
            )));
        }
        let mut entries = BTreeMap::new();
        for (rtype, value) in &self.records {
            let rtype = edgevpn_type(rtype).map_err(ApiError::BadRequest)?;
            let value = records::canonical_value(rtype, value).map_err(bad)?;
            entries.insert(
                rtype,
                DnsRecord {
                    value,
                    ttl: records::DEFAULT_TTL,
                },
            );
        }
        Ok(Command::PutDnsPattern {
            pattern: self.regex,
            records: entries,
            merge: false,
        })
    }
}

pub async fn list(State(state): State<Arc<ApiState>>) -> Json<DnsView> {
    let ledger = state.ledger.state();
    let domain = &state.node.dns_domain;
    let mut hosts: Vec<HostRecord> = names::member_labels(&ledger)
        .into_iter()
        .filter_map(|(peer, label)| {
            let address = ledger.members().get(&peer)?.address?;
            Some(HostRecord {
                name: format!("{label}.{domain}"),
                address: address.to_string(),
                ttl: zone::HOST_TTL,
                peer_id: peer,
            })
        })
        .collect();
    hosts.sort_by(|a, b| a.name.cmp(&b.name));
    let records = ledger
        .dns()
        .iter()
        .flat_map(|(name, sets)| {
            sets.iter().flat_map(move |(rtype, values)| {
                values.iter().map(move |r| RecordView {
                    name: name.clone(),
                    rtype: *rtype,
                    value: r.value.clone(),
                    ttl: r.ttl,
                })
            })
        })
        .collect();
    let patterns = ledger
        .dns_patterns()
        .iter()
        .map(|(regex, entries)| PatternView {
            regex: regex.clone(),
            ttl: entries.values().map(|r| r.ttl).min().unwrap_or_default(),
            records: entries.iter().map(|(t, r)| (*t, r.value.clone())).collect(),
        })
        .collect();
    Json(DnsView {
        domain: domain.clone(),
        listen: state.dns.as_ref().map(|d| d.addr.to_string()),
        upstreams: state
            .dns
            .as_ref()
            .and_then(|d| d.upstreams.as_ref())
            .map(|u| u.iter().map(ToString::to_string).collect()),
        hosts,
        records,
        patterns,
    })
}

pub async fn add(
    State(state): State<Arc<ApiState>>,
    Json(new): Json<NewRecord>,
) -> Result<Json<Outcome>, ApiError> {
    committed(state.ledger.propose_patiently(new.command()?).await?)
}

/// `DELETE /v1/dns/name/{name}[/{type}[/{value}]]`.
pub async fn remove_name(
    State(state): State<Arc<ApiState>>,
    Path(name): Path<String>,
) -> Result<Json<Outcome>, ApiError> {
    remove(&state, &name, None, None).await
}

pub async fn remove_type(
    State(state): State<Arc<ApiState>>,
    Path((name, rtype)): Path<(String, String)>,
) -> Result<Json<Outcome>, ApiError> {
    remove(&state, &name, Some(&rtype), None).await
}

pub async fn remove_value(
    State(state): State<Arc<ApiState>>,
    Path((name, rtype, value)): Path<(String, String, String)>,
) -> Result<Json<Outcome>, ApiError> {
    remove(&state, &name, Some(&rtype), Some(&value)).await
}

async fn remove(
    state: &ApiState,
    name: &str,
    rtype: Option<&str>,
    value: Option<&str>,
) -> Result<Json<Outcome>, ApiError> {
    let name = records::canonical_name(name).map_err(bad)?;
    let rtype: Option<RecordType> = rtype
        .map(str::parse)
        .transpose()
        .map_err(ApiError::BadRequest)?;
    let value = match (rtype, value) {
        (Some(rtype), Some(value)) => Some(records::canonical_value(rtype, value).map_err(bad)?),
        _ => None,
    };
    let held = state.ledger.state().dns().get(&name).is_some_and(|sets| {
        sets.iter()
            .filter(|(t, _)| rtype.is_none_or(|r| r == **t))
            .flat_map(|(_, values)| values)
            .any(|r| value.as_ref().is_none_or(|v| *v == r.value))
    });
    if !held {
        return Err(ApiError::NotFound(format!("DNS record {name}")));
    }
    committed(
        state
            .ledger
            .propose_patiently(Command::DeleteDns { name, rtype, value })
            .await?,
    )
}

/// `DELETE /v1/dns/regex/{regex}`.
pub async fn remove_pattern(
    State(state): State<Arc<ApiState>>,
    Path(regex): Path<String>,
) -> Result<Json<Outcome>, ApiError> {
    if !state.ledger.state().dns_patterns().contains_key(&regex) {
        return Err(ApiError::NotFound(format!("DNS regex record {regex:?}")));
    }
    committed(
        state
            .ledger
            .propose_patiently(Command::DeleteDnsPattern { pattern: regex })
            .await?,
    )
}

/// `GET /api/dns` (edgevpn): type names as keys, as edgevpn answers.
pub async fn edgevpn_list(State(state): State<Arc<ApiState>>) -> GoJson<Vec<EdgevpnDns>> {
    GoJson(
        state
            .ledger
            .state()
            .dns_patterns()
            .iter()
            .map(|(regex, entries)| EdgevpnDns {
                regex: regex.clone(),
                records: entries
                    .iter()
                    .map(|(t, r)| (t.as_str().to_string(), r.value.clone()))
                    .collect(),
            })
            .collect(),
    )
}

/// `POST /api/dns` (edgevpn): replaces what the regex answers.
pub async fn edgevpn_add(
    State(state): State<Arc<ApiState>>,
    Json(entry): Json<EdgevpnDns>,
) -> Result<GoJson<Announcing>, ApiError> {
    let outcome = state.ledger.propose_patiently(entry.command()?).await?;
    check(outcome)?;
    Ok(GoJson(Announcing {
        state: "Announcing".into(),
    }))
}

fn bad(e: records::RecordError) -> ApiError {
    ApiError::BadRequest(e.to_string())
}

fn committed(outcome: Outcome) -> Result<Json<Outcome>, ApiError> {
    check(outcome).map(Json)
}

/// A committed DNS outcome, or the API error it means.
fn check(outcome: Outcome) -> Result<Outcome, ApiError> {
    match outcome {
        Outcome::DnsConflict => Err(ApiError::Conflict(
            "a CNAME cannot share its name with other records (RFC 1034 §3.6.2); remove those \
             first"
                .into(),
        )),
        Outcome::DnsLimit => {
            let l = crate::ledger::state::DNS_LIMITS;
            Err(ApiError::Conflict(format!(
                "the mesh's DNS limits are reached: {} names, {} values per name and type, {} \
                 regex records, {} bytes per name, value or regex",
                l.names, l.values, l.patterns, l.text
            )))
        }
        outcome => ApiError::stored(outcome),
    }
}

/// The RR type number edgevpn's listing uses as a key.
fn rr_number(rtype: RecordType) -> u16 {
    match rtype {
        RecordType::A => 1,
        RecordType::Cname => 5,
        RecordType::Txt => 16,
        RecordType::Aaaa => 28,
        RecordType::Srv => 33,
    }
}

/// A type key of an edgevpn entry: a mnemonic (`A`) or an RR type number (`1`).
fn edgevpn_type(key: &str) -> Result<RecordType, String> {
    match key.parse::<u16>() {
        Ok(number) => RecordType::ALL
            .into_iter()
            .find(|t| rr_number(*t) == number)
            .ok_or_else(|| {
                format!("unsupported record type {number} (A, AAAA, CNAME, TXT or SRV)")
            }),
        Err(_) => key.parse(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edgevpn_type_keys_are_names_or_numbers() {
        assert_eq!(edgevpn_type("A"), Ok(RecordType::A));
        assert_eq!(edgevpn_type("aaaa"), Ok(RecordType::Aaaa));
        assert_eq!(edgevpn_type("33"), Ok(RecordType::Srv));
        assert!(edgevpn_type("15").is_err());
        assert!(edgevpn_type("MX").is_err());
        for t in RecordType::ALL {
            assert_eq!(edgevpn_type(&rr_number(t).to_string()), Ok(t));
        }
    }
}
