//! The audit trail: which node had each write committed that is not a member speaking for
//! itself. Operators' commands (member removal, deny and allow, reservations, roles, policy)
//! and shared data (ledger keys, DNS records, secrets) can be sent by any member, and any member
//! may be a stolen machine, so each such write is recorded with its issuer. The issuer is never
//! the proposer's word: the leader wraps the command in [`Command::Audited`] with the PeerId of
//! the connection the proposal came on, or its own for its local API. The trail keeps
//! [`AUDIT_LIMIT`] entries, each a bounded one-line description, so it never crowds the state.
//! When it is full, what goes is chosen so that no one issuer, and no run of routine writes,
//! can push the operators' entries out ([`LedgerState::record_audit`]).

use serde::{Deserialize, Serialize};

use super::{Carried, Command, LedgerState, Outcome, PeerKey, TRUSTED_SEATS};

/// Entries the trail keeps.
pub const AUDIT_LIMIT: usize = 256;
/// Entries of one issuer past which its oldest are the first to go.
const ISSUER_SHARE: usize = AUDIT_LIMIT / 4;
/// Characters of a described name, key or value kept in an entry.
const FIELD_LIMIT: usize = 64;

/// One audited write.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// The log index the write was committed at.
    pub index: u64,
    /// When the leader accepted it (UNIX seconds, the leader's clock; shown to people, never
    /// used in a decision).
    pub at: u64,
    /// PeerId of the node whose API sent it.
    pub issuer: PeerKey,
    /// What it asked for, in one line (values are not kept, only their length).
    pub action: String,
    /// What applying it did ([`Outcome`]'s name).
    pub outcome: String,
    /// Whether it wrote shared data (ledger keys, DNS records), which applications may write
    /// often, rather than changing the mesh itself (members, roles, policy, secrets, token).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub data: bool,
}

/// Whether an audited `command` writes shared data ([`AuditEntry::data`]).
fn is_shared_data(command: &Command) -> bool {
    match command {
        Command::PutDns { .. }
        | Command::DeleteDns { .. }
        | Command::PutDnsPattern { .. }
        | Command::DeleteDnsPattern { .. }
        | Command::KvPut { .. }
        | Command::KvDelete { .. }
        | Command::CarryKv { .. } => true,
        Command::Operator(signed) => signed.command().is_ok_and(|c| is_shared_data(&c)),
        _ => false,
    }
}

/// Whether the leader records `command` with its issuer: everything but what a member says of
/// itself (checked by [`crate::ledger::authority`]) and what the leader decides alone.
pub fn is_audited(command: &Command) -> bool {
    !matches!(
        command,
        Command::Join { .. }
            | Command::Renew { .. }
            | Command::Renewals { .. }
            | Command::ReportBootstrap { .. }
            | Command::Genesis(_)
            | Command::Recover { .. }
            | Command::Audited { .. }
            | Command::RotationKeys { .. }
    )
}

/// `command` as the leader proposes it: wrapped with its issuer and the leader's time when it
/// is audited, unchanged otherwise.
pub fn attribute(command: Command, issuer: &str, at: u64) -> Command {
    if is_audited(&command) {
        Command::Audited {
            issuer: issuer.to_string(),
            at,
            command: Box::new(command),
        }
    } else {
        command
    }
}

impl LedgerState {
    /// Appends an entry. When the trail is full, one entry goes first: while an issuer holds
    /// more than [`ISSUER_SHARE`], the oldest of the issuer holding most; else the oldest
    /// shared-data entry; else the oldest. So one member writing again and again pushes out
    /// only its own entries, and routine writes only routine ones.
    pub(super) fn record_audit(
        &mut self,
        issuer: &str,
        at: u64,
        command: &Command,
        outcome: &Outcome,
    ) {
        if self.audit.len() >= AUDIT_LIMIT {
            let mut held: std::collections::BTreeMap<&str, usize> = Default::default();
            for entry in &self.audit {
                *held.entry(entry.issuer.as_str()).or_default() += 1;
            }
            let most = held.into_iter().max_by_key(|(_, count)| *count);
            let going = match most {
                Some((top, count)) if count > ISSUER_SHARE => {
                    let top = top.to_string();
                    self.audit.iter().position(|e| e.issuer == top)
                }
                _ => self.audit.iter().position(|e| e.data),
            };
            self.audit.remove(going.unwrap_or(0));
        }
        self.audit.push_back(AuditEntry {
            index: self.applied,
            at,
            issuer: clip(issuer),
            action: self.describe_by_rules(command),
            outcome: outcome_name(outcome),
            data: is_shared_data(command),
        });
    }

    /// The audit trail, oldest first.
    pub fn audit(&self) -> impl Iterator<Item = &AuditEntry> {
        self.audit.iter()
    }

    /// `command` in one bounded line, as every replica writes it by the rules it applies:
    /// before the rules of the trust list, a signed trust reads as a weft that cannot decode it
    /// reads it, so that the replicas of both wefts keep the same trail.
    fn describe_by_rules(&self, command: &Command) -> String {
        let trust =
            |signed: &crate::operator::Signed| signed.command().is_ok_and(|c| c.changes_trust());
        match command {
            Command::Operator(signed) if self.rules < TRUSTED_SEATS && trust(signed) => {
                UNDECODED.into()
            }
            command => describe(command),
        }
    }
}

/// How the trail describes a signed command this weft cannot decode.
const UNDECODED: &str = "a signed command that does not decode";

/// A command in one bounded line.
fn describe(command: &Command) -> String {
    match command {
        Command::Leave { peer } => format!("remove member {}", clip(peer)),
        Command::Expire { peer } => format!("expire member {}", clip(peer)),
        Command::AbandonInstall { peer } => format!("give up the install of {}", clip(peer)),
        Command::AdoptRules { version } => format!("adopt the ledger's rules of version {version}"),
        Command::Deny { peer } => format!("deny {}", clip(peer)),
        Command::Allow { peer } => format!("allow {}", clip(peer)),
        Command::Trust { peer } => format!("trust {} with a raft seat", clip(peer)),
        Command::Untrust { peer } => format!("no longer trust {} with a raft seat", clip(peer)),
        Command::Reserve { peer, address } => format!("reserve {address} for {}", clip(peer)),
        Command::Unreserve { address } => format!("unreserve {address}"),
        Command::SetRolePolicy(policy) => {
            format!("set role policy: {} control planes", policy.control_planes)
        }
        Command::InitRolePolicy(policy) => {
            format!(
                "propose role policy: {} control planes",
                policy.control_planes
            )
        }
        Command::SetFixedRole { peer, role, force } => format!(
            "fix role of {} to {}{}",
            clip(peer),
            role.map_or("automatic".to_string(), |r| format!("{r:?}").to_lowercase()),
            if *force { " (forced)" } else { "" }
        ),
        Command::PutDns { name, rtype, .. } => {
            format!("add DNS {rtype:?} record to {}", clip(name))
        }
        Command::DeleteDns { name, rtype, .. } => match rtype {
            Some(rtype) => format!("delete DNS {rtype:?} records of {}", clip(name)),
            None => format!("delete DNS records of {}", clip(name)),
        },
        Command::PutDnsPattern { pattern, .. } => format!("set DNS pattern {}", clip(pattern)),
        Command::DeleteDnsPattern { pattern } => format!("delete DNS pattern {}", clip(pattern)),
        Command::KvPut { bucket, key, value } => {
            format!("put {}/{} ({} bytes)", clip(bucket), clip(key), value.len())
        }
        Command::CarryKv {
            from,
            bucket,
            key,
            carried,
        } => match carried {
            Carried::Value(value) => format!(
                "carry {}/{} from cluster {from} ({} bytes)",
                clip(bucket),
                clip(key),
                value.len()
            ),
            Carried::Deleted => format!(
                "carry the deletion of {}/{} from cluster {from}",
                clip(bucket),
                clip(key)
            ),
        },
        Command::KvDelete { bucket, key } => match key {
            Some(key) => format!("delete {}/{}", clip(bucket), clip(key)),
            None => format!("delete bucket {}", clip(bucket)),
        },
        Command::PutSecret { name, sealed } => {
            format!("put secret {} ({} bytes sealed)", clip(name), sealed.len())
        }
        Command::DeleteSecret { name } => format!("delete secret {}", clip(name)),
        Command::RotateToken { rotation, .. } => format!(
            "rotate the network token to {} (the one before accepted until {})",
            clip(&rotation.network),
            rotation.grace_until
        ),
        Command::Operator(signed) => match signed.command() {
            Ok(command) => format!(
                "signed by the operator (#{}): {}",
                signed.seq,
                describe(&command)
            ),
            Err(_) => UNDECODED.into(),
        },
        Command::AllowRotation {
            cluster, previous, ..
        } => format!(
            "allow a rotation away from {} in cluster {}",
            clip(previous),
            clip(cluster)
        ),
        Command::Join { .. }
        | Command::Renew { .. }
        | Command::Renewals { .. }
        | Command::ReportBootstrap { .. }
        | Command::Genesis(_)
        | Command::Recover { .. }
        | Command::Audited { .. }
        | Command::RotationKeys { .. } => "(not audited)".to_string(),
    }
}

fn outcome_name(outcome: &Outcome) -> String {
    let debug = format!("{outcome:?}");
    debug
        .split(|c: char| !c.is_alphanumeric())
        .next()
        .unwrap_or_default()
        .to_string()
}

/// `text` cut to [`FIELD_LIMIT`] characters, control characters replaced, so an entry stays
/// one bounded line.
fn clip(text: &str) -> String {
    let mut clipped: String = text
        .chars()
        .take(FIELD_LIMIT)
        .map(|c| if c.is_control() { '?' } else { c })
        .collect();
    if text.chars().count() > FIELD_LIMIT {
        clipped.push('…');
    }
    clipped
}

#[cfg(test)]
mod tests {
    use super::super::tests::{join, pool, run};
    use super::*;

    fn audited(issuer: &str, command: Command) -> Command {
        attribute(command, issuer, 100)
    }

    #[test]
    fn a_members_own_writes_are_not_wrapped_and_operator_writes_are() {
        assert_eq!(attribute(join("a", 1), "a", 5), join("a", 1));
        let leave = Command::Leave { peer: "b".into() };
        assert!(matches!(
            attribute(leave, "a", 5),
            Command::Audited { issuer, at: 5, .. } if issuer == "a"
        ));
    }

    #[test]
    fn an_audited_write_applies_and_records_its_issuer_and_outcome() {
        let mut state = LedgerState::new(pool());
        let outcomes = run(
            &mut state,
            &[
                join("a", 1),
                join("b", 1),
                audited("a", Command::Leave { peer: "b".into() }),
                audited(
                    "a",
                    Command::Leave {
                        peer: "nobody".into(),
                    },
                ),
                audited(
                    "b",
                    Command::KvPut {
                        bucket: "apps".into(),
                        key: "k".into(),
                        value: "secret value".into(),
                    },
                ),
            ],
        );
        assert_eq!(outcomes[2], Outcome::Done);
        assert_eq!(outcomes[3], Outcome::UnknownMember);
        assert!(!state.members().contains_key("b"));
        let trail: Vec<_> = state.audit().collect();
        assert_eq!(trail.len(), 3);
        assert_eq!(
            (
                trail[0].index,
                trail[0].issuer.as_str(),
                trail[0].action.as_str()
            ),
            (3, "a", "remove member b")
        );
        assert_eq!(trail[1].outcome, "UnknownMember");
        assert_eq!(trail[2].action, "put apps/k (12 bytes)");
        assert!(!trail[2].action.contains("secret"));
    }

    #[test]
    fn the_trail_is_bounded_and_keeps_the_latest() {
        let mut state = LedgerState::new(pool());
        let writes: Vec<Command> = (0..AUDIT_LIMIT + 10)
            .map(|i| {
                audited(
                    "a",
                    Command::KvDelete {
                        bucket: format!("b{i}"),
                        key: None,
                    },
                )
            })
            .collect();
        run(&mut state, &writes);
        let trail: Vec<_> = state.audit().collect();
        assert_eq!(trail.len(), AUDIT_LIMIT);
        assert_eq!(trail[0].action, "delete bucket b10");
    }

    /// The old rule dropped the oldest entry whatever it was: a member that wrote 256 times
    /// pushed the operator's removal out.
    #[test]
    fn neither_one_member_writing_again_and_again_nor_routine_writes_push_others_out() {
        let mut state = LedgerState::new(pool());
        let mut writes = vec![
            join("a", 1),
            join("b", 1),
            audited("op", Command::Leave { peer: "b".into() }),
        ];
        // One member's harmless operator commands, far more than the trail holds.
        writes.extend((0..AUDIT_LIMIT * 2).map(|i| {
            audited(
                "mallory",
                Command::Deny {
                    peer: format!("nobody{i}"),
                },
            )
        }));
        // Routine writes from several members, again more than the trail holds.
        writes.extend((0..AUDIT_LIMIT * 2).map(|i| {
            audited(
                &format!("app{}", i % 8),
                Command::KvPut {
                    bucket: "apps".into(),
                    key: format!("k{i}"),
                    value: "v".into(),
                },
            )
        }));
        run(&mut state, &writes);
        let trail: Vec<_> = state.audit().collect();
        assert_eq!(trail.len(), AUDIT_LIMIT);
        assert_eq!(
            (trail[0].issuer.as_str(), trail[0].action.as_str()),
            ("op", "remove member b"),
            "the operator's removal stays"
        );
        let mallory = trail.iter().filter(|e| e.issuer == "mallory").count();
        assert_eq!(mallory, ISSUER_SHARE, "mallory keeps its share, its latest");
        assert_eq!(
            trail[1].action,
            format!("deny nobody{}", AUDIT_LIMIT * 2 - ISSUER_SHARE)
        );
        let data = trail.iter().filter(|e| e.data).count();
        assert_eq!(data, AUDIT_LIMIT - 1 - ISSUER_SHARE);
        assert!(trail.last().unwrap().data);
        assert_eq!(
            trail.last().unwrap().action,
            format!("put apps/k{} (1 bytes)", AUDIT_LIMIT * 2 - 1)
        );
    }

    #[test]
    fn long_or_odd_fields_are_clipped_to_one_line() {
        let name = format!("{}\n{}", "x".repeat(100), "y");
        let action = describe(&Command::DeleteSecret { name });
        assert!(!action.contains('\n'));
        assert!(action.chars().count() < FIELD_LIMIT + 20, "{action}");
    }

    #[test]
    fn a_nested_wrapper_is_applied_as_nothing() {
        let mut state = LedgerState::new(pool());
        run(&mut state, &[join("a", 1), join("b", 1)]);
        let nested = audited(
            "a",
            Command::Audited {
                issuer: "z".into(),
                at: 0,
                command: Box::new(Command::Leave { peer: "b".into() }),
            },
        );
        assert_eq!(
            nested,
            Command::Audited {
                issuer: "z".into(),
                at: 0,
                command: Box::new(Command::Leave { peer: "b".into() }),
            }
        );
        let outer = Command::Audited {
            issuer: "a".into(),
            at: 1,
            command: Box::new(nested),
        };
        run(&mut state, &[outer]);
        assert!(state.members().contains_key("b"));
    }
}
