//! edgevpn's local API (`/api`), answering as edgevpn v0.35 does where Kairos' provider and its
//! users parse it (`../shared/reference/edgevpn.md`): the ledger's buckets with edgevpn's
//! double encoding, the machines, the summary, the peers. Writes go through the raft ledger, so
//! they return once committed (edgevpn gossips them and answers at once).
//!
//! Encodings: `PUT /api/ledger/:bucket/:key/:value` stores the JSON text of the path segment
//! (the segment in quotes); every `GET` answers stored values as JSON strings, so a value
//! Kairos wrote comes back encoded twice (`"\"eyJ…\""`); a missing key answers `""`. Answers
//! are written the way Go's `json.Encoder` writes them: compact, `<`, `>`, `&`, U+2028 and
//! U+2029 escaped, a newline at the end.
//!
//! weft's nodes do not write their liveness into the `healthcheck` bucket: edgevpn has every
//! node write its own time into it every two minutes, which at a thousand members would be eight entries a
//! second. weft answers it from the ledger instead: every live member (its lease renewed, as
//! the leader sees it) with this node's current time, which is what Kairos' "enough nodes"
//! count asks ("fresh within 15 minutes"). Values written there through the API go through the
//! log like any write, and are shown too, under the members' own entries.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use super::error::ApiError;
use super::routes::ApiState;
use crate::ledger::state::{Command, LeaseState, LedgerState};

/// The bucket edgevpn's nodes write their liveness into.
pub const HEALTHCHECK: &str = "healthcheck";

/// edgevpn's answer to a write.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct Announcing {
    #[serde(rename = "State")]
    pub state: String,
}

impl Announcing {
    fn new() -> Self {
        Announcing {
            state: "Announcing".into(),
        }
    }
}

/// An answer as edgevpn writes it (Go's `json.Encoder`).
pub struct GoJson<T>(pub T);

impl<T: Serialize> IntoResponse for GoJson<T> {
    fn into_response(self) -> Response {
        match go_json(&self.0) {
            Ok(body) => (
                StatusCode::OK,
                [(header::CONTENT_TYPE, "application/json")],
                body,
            )
                .into_response(),
            Err(e) => ApiError::Internal(format!("cannot encode the answer: {e}")).into_response(),
        }
    }
}

/// `value` as Go's `json.Encoder` writes it: compact, HTML-sensitive characters and the two
/// line separators JavaScript does not allow escaped, a newline at the end. Those characters
/// can only stand inside strings, so escaping them in the whole text is exact.
pub fn go_json(value: &impl Serialize) -> Result<String, serde_json::Error> {
    let text = serde_json::to_string(value)?;
    let mut out = String::with_capacity(text.len() + 1);
    for c in text.chars() {
        match c {
            '<' => out.push_str("\\u003c"),
            '>' => out.push_str("\\u003e"),
            '&' => out.push_str("\\u0026"),
            '\u{2028}' => out.push_str("\\u2028"),
            '\u{2029}' => out.push_str("\\u2029"),
            c => out.push(c),
        }
    }
    out.push('\n');
    Ok(out)
}

/// What edgevpn stores for a `PUT` path segment: its JSON text.
pub fn stored(segment: &str) -> String {
    serde_json::Value::String(segment.to_string()).to_string()
}

/// Every bucket as edgevpn shows them, `healthcheck` answered from the members' leases.
fn buckets(state: &LedgerState, now: u64) -> BTreeMap<String, BTreeMap<String, String>> {
    let mut all = state.buckets().clone();
    let live = healthcheck(state, now);
    if !live.is_empty() {
        all.entry(HEALTHCHECK.to_string()).or_default().extend(live);
    }
    all
}

/// Every live member, by PeerId, with `now` as edgevpn stores a time (RFC 3339, in quotes).
fn healthcheck(state: &LedgerState, now: u64) -> BTreeMap<String, String> {
    let time = stored(&rfc3339(now));
    state
        .members()
        .iter()
        .filter(|(_, m)| m.lease == LeaseState::Live)
        .map(|(peer, _)| (peer.clone(), time.clone()))
        .collect()
}

/// UNIX seconds as RFC 3339 in UTC (`2026-11-30T15:00:00Z`), the form Go's `time.RFC3339`
/// parses. Days to a civil date after Howard Hinnant's `civil_from_days`.
pub fn rfc3339(unix: u64) -> String {
    let days = (unix / 86_400) as i64;
    let secs = unix % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

fn now() -> u64 {
    crate::clock::unix_now()
}

/// `GET /api/ledger`: `{bucket: {key: value}}`.
pub(super) async fn ledger_all(
    State(api): State<Arc<ApiState>>,
) -> GoJson<BTreeMap<String, BTreeMap<String, String>>> {
    GoJson(buckets(&api.ledger.state(), now()))
}

/// `GET /api/ledger/:bucket`: `{key: value}`, `{}` for a bucket nobody wrote.
pub(super) async fn ledger_bucket(
    State(api): State<Arc<ApiState>>,
    Path(bucket): Path<String>,
) -> GoJson<BTreeMap<String, String>> {
    GoJson(
        buckets(&api.ledger.state(), now())
            .remove(&bucket)
            .unwrap_or_default(),
    )
}

/// `GET /api/ledger/:bucket/:key`: the value, `""` when missing.
pub(super) async fn ledger_get(
    State(api): State<Arc<ApiState>>,
    Path((bucket, key)): Path<(String, String)>,
) -> GoJson<String> {
    let value = buckets(&api.ledger.state(), now())
        .get(&bucket)
        .and_then(|b| b.get(&key).cloned())
        .unwrap_or_default();
    GoJson(value)
}

/// `PUT /api/ledger/:bucket/:key/:value`: stores the segment, returns once committed.
pub(super) async fn ledger_put(
    State(api): State<Arc<ApiState>>,
    Path((bucket, key, value)): Path<(String, String, String)>,
) -> Result<GoJson<Announcing>, ApiError> {
    let outcome = api
        .ledger
        .propose_patiently(Command::KvPut {
            bucket,
            key,
            value: stored(&value),
        })
        .await?;
    ApiError::stored(outcome)?;
    Ok(GoJson(Announcing::new()))
}

/// `DELETE /api/ledger/:bucket/:key`.
pub(super) async fn ledger_delete(
    State(api): State<Arc<ApiState>>,
    Path((bucket, key)): Path<(String, String)>,
) -> Result<GoJson<Announcing>, ApiError> {
    api.ledger
        .propose_patiently(Command::KvDelete {
            bucket,
            key: Some(key),
        })
        .await?;
    Ok(GoJson(Announcing::new()))
}

/// `DELETE /api/ledger/:bucket`.
pub(super) async fn ledger_delete_bucket(
    State(api): State<Arc<ApiState>>,
    Path(bucket): Path<String>,
) -> Result<GoJson<Announcing>, ApiError> {
    api.ledger
        .propose_patiently(Command::KvDelete { bucket, key: None })
        .await?;
    Ok(GoJson(Announcing::new()))
}

/// One machine of `GET /api/machines`, in edgevpn's field order.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct Machine {
    #[serde(rename = "PeerID")]
    pub peer_id: String,
    #[serde(rename = "Hostname")]
    pub hostname: String,
    #[serde(rename = "OS")]
    pub os: String,
    #[serde(rename = "Arch")]
    pub arch: String,
    /// The overlay address.
    #[serde(rename = "Address")]
    pub address: String,
    #[serde(rename = "Version")]
    pub version: String,
    /// This node has an admitted connection to it (or it is this node).
    #[serde(rename = "Connected")]
    pub connected: bool,
    /// It is in the ledger.
    #[serde(rename = "OnChain")]
    pub on_chain: bool,
    /// Its lease is live.
    #[serde(rename = "Online")]
    pub online: bool,
}

/// `GET /api/machines`: every member.
pub(super) async fn machines(State(api): State<Arc<ApiState>>) -> GoJson<Vec<Machine>> {
    let state = api.ledger.state();
    let me = api.p2p.peer_key().to_string();
    let connected: std::collections::HashSet<String> =
        api.p2p.peers().iter().map(|p| p.peer_id.clone()).collect();
    GoJson(
        state
            .members()
            .iter()
            .map(|(peer, m)| Machine {
                peer_id: peer.clone(),
                hostname: m.hostname.clone(),
                os: m.platform.os.clone(),
                arch: m.platform.arch.clone(),
                address: m.address.map(|a| a.to_string()).unwrap_or_default(),
                version: m.platform.version.clone(),
                connected: *peer == me || connected.contains(peer),
                on_chain: true,
                online: m.lease == LeaseState::Live,
            })
            .collect(),
    )
}

/// `GET /api/summary`, in edgevpn's field order.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct Summary {
    #[serde(rename = "Files")]
    pub files: usize,
    #[serde(rename = "Machines")]
    pub machines: usize,
    #[serde(rename = "Users")]
    pub users: usize,
    #[serde(rename = "Services")]
    pub services: usize,
    /// The ledger's applied index (edgevpn: the length of its chain).
    #[serde(rename = "BlockChain")]
    pub blockchain: u64,
    #[serde(rename = "OnChainNodes")]
    pub on_chain_nodes: usize,
    /// Admitted peers.
    #[serde(rename = "Peers")]
    pub peers: usize,
    #[serde(rename = "NodeID")]
    pub node_id: String,
}

pub(super) async fn summary(State(api): State<Arc<ApiState>>) -> GoJson<Summary> {
    let state = api.ledger.state();
    let live = state
        .members()
        .values()
        .filter(|m| m.lease == LeaseState::Live)
        .count();
    GoJson(Summary {
        files: 0,
        machines: state.members().len(),
        users: 0,
        services: 0,
        blockchain: state.applied(),
        on_chain_nodes: live,
        peers: api.p2p.peers().len(),
        node_id: api.p2p.peer_key().to_string(),
    })
}

/// One entry of `GET /api/nodes`.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct Node {
    #[serde(rename = "ID")]
    pub id: String,
}

/// `GET /api/nodes`: the admitted peers.
pub(super) async fn nodes(State(api): State<Arc<ApiState>>) -> GoJson<Vec<Node>> {
    GoJson(
        api.p2p
            .peers()
            .iter()
            .map(|p| Node {
                id: p.peer_id.clone(),
            })
            .collect(),
    )
}

/// `GET /api/peerstore`: the admitted peers' ids, a bare list (as edgevpn answers it).
pub(super) async fn peerstore(State(api): State<Arc<ApiState>>) -> GoJson<Vec<String>> {
    GoJson(api.p2p.peers().iter().map(|p| p.peer_id.clone()).collect())
}

/// `GET /api/users` and `GET /api/services`: weft has neither feature; an empty list.
pub(super) async fn none() -> GoJson<[(); 0]> {
    GoJson([])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::state::{Command, join_command};

    #[test]
    fn values_are_stored_as_json_text_and_answered_twice_encoded() {
        let segment = "eyJUaW1lIjoiMjAyNi0xMS0zMFQxNTowMDowMFoifQ==";
        assert_eq!(stored(segment), format!("\"{segment}\""));
        assert_eq!(
            go_json(&stored(segment)).unwrap(),
            format!("\"\\\"{segment}\\\"\"\n")
        );
        let bucket = BTreeMap::from([("k".to_string(), stored(segment))]);
        assert_eq!(
            go_json(&bucket).unwrap(),
            format!("{{\"k\":\"\\\"{segment}\\\"\"}}\n")
        );
        assert_eq!(go_json(&String::new()).unwrap(), "\"\"\n");
    }

    #[test]
    fn answers_escape_what_go_escapes() {
        assert_eq!(
            go_json(&"<a&b>\u{2028}").unwrap(),
            "\"\\u003ca\\u0026b\\u003e\\u2028\"\n"
        );
        assert_eq!(
            go_json(&Announcing::new()).unwrap(),
            "{\"State\":\"Announcing\"}\n"
        );
    }

    #[test]
    fn times_are_rfc3339_in_utc() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_796_050_800), "2026-11-30T15:00:00Z");
        assert_eq!(rfc3339(4_107_542_399), "2100-02-28T23:59:59Z");
    }

    #[test]
    fn healthcheck_lists_live_members_beside_what_was_written_there() {
        let mut state = LedgerState::new("10.1.0.0/24".parse().unwrap());
        for (i, command) in [
            join_command("a"),
            join_command("b"),
            Command::Expire { peer: "b".into() },
            Command::KvPut {
                bucket: HEALTHCHECK.into(),
                key: "edgevpn-node".into(),
                value: stored("2026-11-30T14:00:00Z"),
            },
        ]
        .iter()
        .enumerate()
        {
            state.apply(i as u64 + 1, command);
        }
        let all = buckets(&state, 1_796_050_800);
        assert_eq!(
            all[HEALTHCHECK],
            BTreeMap::from([
                ("a".to_string(), "\"2026-11-30T15:00:00Z\"".to_string()),
                (
                    "edgevpn-node".to_string(),
                    "\"2026-11-30T14:00:00Z\"".to_string()
                ),
            ])
        );
    }
}
