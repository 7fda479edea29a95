//! Who may propose what to the leader over the ledger RPC. A member speaks only for itself: its
//! `Join` (hostname, data-plane key, endpoints, requested address), `Renew` and bootstrap
//! reports are accepted only from its own PeerId, the one the connection authenticated. What
//! only a leader decides (`Expire`, `AbandonInstall`, `Renewals`) or only a cluster's first
//! entry holds (`Genesis`, `Recover`) is never accepted from another node: the leader proposes
//! those itself.
//! Nor is an audit wrapper: the leader alone attributes a command to its issuer. In a mesh
//! configured with an operator key ([`crate::operator`]), what is the operator's to decide
//! (removing, denying or allowing a member, another member's role, reservations, the policy:
//! [`super::state::operator::needs_operator`]) is taken only signed with it, from this node's
//! own API as from any other node, and the policy a node is configured with is refused (the
//! operator sets it signed). Trusting a member with a raft seat is taken only signed, with or
//! without a key (a mesh without one has no trust list). Everything else (ledger keys, DNS
//! records; and without an operator key, the operator's other commands too) any member may
//! propose, and the leader records
//! it with its sender in the audit trail ([`super::state::attribute`]). Decided before raft
//! sees the command, from the command, the sender and the operator key alone.
//!
//! During a token rotation's grace window the old token still admits, and a denied machine
//! holds it: a sender that proved only the token before the leader's current one
//! ([`crate::p2p::InboundRpc::behind`]) may read the ledger, and so learn of the rotation, but
//! proposes nothing and takes no raft seat until it proves the new token.

use std::collections::BTreeSet;

use super::state::operator::{needs_operator, subject};
use super::state::{ClusterId, Command, rotation_digest};
use crate::operator::OperatorKey;

/// How every refusal for want of the operator's signature begins, so that a proposer tells
/// it from other refusals ([`super::LedgerError::Operator`]).
pub const OPERATOR: &str = "operator: ";

/// The refusal of a proposal from a sender that proved only the token before the current one.
pub const BEHIND: &str = "this node proved only the network token before the rotation; it may \
     propose again once it holds the new token (moments after it reads the rotation from the \
     ledger, or after a restart with the new token)";

/// Whether `sender` (a PeerId) may have the leader propose `command`, in a mesh whose
/// operator key is `operator`; the refusal says why.
pub fn may_propose(
    command: &Command,
    sender: &str,
    operator: Option<&OperatorKey>,
    cluster: Option<ClusterId>,
    now: u64,
) -> Result<(), String> {
    speaks_for_itself(command, sender)?;
    as_operator(command, sender, operator, cluster, now)
}

/// How long after it is signed (its number is the signing machine's clock) the leader takes a
/// signed removal: one a member held back, or read from a forwarded request it said it did not
/// deliver, cannot be committed once the operator has moved on.
pub const REMOVAL_VALID_SECS: u64 = 15 * 60;

/// `command` as a leader with operator key `operator` takes it: a member's `Join` without the
/// role policy its node was configured with, which in a keyed mesh only the operator sets (the
/// member still joins).
pub fn without_configured_policy(mut command: Command, operator: Option<&OperatorKey>) -> Command {
    if operator.is_some()
        && let Command::Join { policy, .. } = &mut command
    {
        *policy = None;
    }
    command
}

/// Whether `command` from `sender` holds the operator's signature where it needs one, in the
/// cluster `cluster` (a rotation's grant names it): checked by the leader for its own node's
/// proposals as for other nodes'.
pub fn as_operator(
    command: &Command,
    sender: &str,
    operator: Option<&OperatorKey>,
    cluster: Option<ClusterId>,
    now: u64,
) -> Result<(), String> {
    match (command, operator) {
        (Command::Operator(signed), Some(key)) => {
            signed.verify(key).map_err(|e| format!("{OPERATOR}{e}"))?;
            let inner = signed.command().map_err(|e| format!("{OPERATOR}{e}"))?;
            // A removal is an act in one cluster, soon after it is signed: carried to another
            // (a merge, a replay from another cluster's log) or held back, it would remove a
            // member that rejoined. Only a removal is bound to a cluster: a merge carries the
            // other commands to clusters they were not signed in.
            let here = cluster.map(|c| c.to_string());
            let removal = matches!(inner, Command::Leave { .. });
            if !removal && signed.cluster.is_some() {
                return Err(format!(
                    "{OPERATOR}only a removal is signed for one cluster"
                ));
            }
            if removal && (signed.cluster.is_none() || signed.cluster != here) {
                return Err(format!(
                    "{OPERATOR}a signed removal holds only in the cluster it was signed for, and \
                     this one was signed for {}, not this cluster ({})",
                    signed.cluster.as_deref().unwrap_or("none"),
                    here.as_deref().unwrap_or("none yet")
                ));
            }
            let signed_at = signed.seq / 1_000_000;
            if removal && signed_at.saturating_add(REMOVAL_VALID_SECS) < now {
                return Err(format!(
                    "{OPERATOR}this removal was signed {} s ago; a signed removal holds for {} s \
                     (sign it again, and check the signing machine's clock)",
                    now - signed_at,
                    REMOVAL_VALID_SECS
                ));
            }
            if inner.changes_trust() && signed.network.is_none() {
                return Err(format!(
                    "{OPERATOR}a trust is signed for the mesh's network, and this one names none: \
                     sign it with this weft's CLI, or set the signed command's `network` to the \
                     `network_id` that `GET /v1/status` shows"
                ));
            }
            if subject(&inner).is_none() {
                return Err(format!(
                    "{OPERATOR}only operator commands (removals, denials, allowances, trust, \
                     reservations, roles, the policy) are signed, not {}",
                    name(&inner)
                ));
            }
            Ok(())
        }
        (
            Command::RotateToken {
                rotation,
                grant,
                secrets,
            },
            Some(key),
        ) => {
            let Some(grant) = grant else {
                return Err(format!(
                    "{OPERATOR}a token rotation needs the operator's signature in this mesh (its \
                     nodes are started with --operator-key): run weft token rotate with \
                     --operator-key-file"
                ));
            };
            grant.verify(key).map_err(|e| format!("{OPERATOR}{e}"))?;
            let here = cluster.map(|c| c.to_string());
            match grant.command() {
                Ok(Command::AllowRotation {
                    cluster: granted,
                    previous,
                    rotation: bound,
                }) if previous == rotation.previous && Some(&granted) == here.as_ref() => {
                    match bound {
                        // An earlier weft's grant: whoever forwarded the rotation it came with
                        // could have used it for a rotation of its own first.
                        None => Err(format!(
                            "{OPERATOR}the operator's grant names no rotation (it was signed by \
                             an earlier weft): run weft token rotate --operator-key-file with \
                             this version, which signs the rotation itself"
                        )),
                        Some(digest) if digest != rotation_digest(rotation, secrets) => {
                            Err(format!(
                                "{OPERATOR}the operator's grant is for another rotation than \
                                 this one (another member may have made its own with it): \
                                 run weft token rotate again"
                            ))
                        }
                        Some(_) => Ok(()),
                    }
                }
                _ => Err(format!(
                    "{OPERATOR}the operator's grant does not allow a rotation away from network \
                     {} in cluster {}",
                    rotation.previous,
                    here.as_deref().unwrap_or("(none yet)")
                )),
            }
        }
        (Command::RotateToken { grant: Some(_), .. } | Command::Operator(_), None) => Err(format!(
            "{OPERATOR}this mesh has no operator key, so a signed command cannot be checked; \
             start every node with --operator-key to use one"
        )),
        (Command::Trust { .. } | Command::Untrust { .. }, None) => Err(format!(
            "{OPERATOR}{} is the operator's alone, signed with its key: start every node with \
             --operator-key and give the command --operator-key-file",
            name(command)
        )),
        (Command::InitRolePolicy(_), Some(_)) => Err(format!(
            "{OPERATOR}in a mesh with an operator key the role policy is the operator's: set it \
             with weft role policy --operator-key-file (a node's --control-planes or \
             p2p.auto.ha is not applied)"
        )),
        (command, Some(_)) if needs_operator(command, sender) => Err(format!(
            "{OPERATOR}{} needs the operator's signature in this mesh (its nodes are started \
             with --operator-key): give the command the operator's key with \
             --operator-key-file",
            name(command)
        )),
        _ => Ok(()),
    }
}

/// Whether an operator's command signed for one network
/// ([`crate::operator::Signed::network`]) is signed for
/// one of `networks`, those this leader's mesh holds ([`super::Ledger::networks`]): an operator
/// may use one key for several meshes, and a member of two could carry a command from one to
/// the other. A command signed for no network (by a weft before the binding) is taken here,
/// since nothing in it says where it belongs; a trust signed so is refused before this check.
pub fn in_network(command: &Command, networks: &[String]) -> Result<(), String> {
    let signed = match command {
        Command::Operator(signed)
        | Command::RotateToken {
            grant: Some(signed),
            ..
        } => signed,
        _ => return Ok(()),
    };
    match &signed.network {
        Some(network) if !networks.contains(network) => Err(format!(
            "{OPERATOR}this command was signed for network {network}, not for this mesh ({}): \
             sign it again through a node of this mesh (weft signs for the network of the node \
             it sends the command to)",
            if networks.is_empty() {
                "no network known".to_string()
            } else {
                networks.join(", ")
            }
        )),
        _ => Ok(()),
    }
}

/// Whether `command` names `sender` where it must: a member speaks only for itself.
fn speaks_for_itself(command: &Command, sender: &str) -> Result<(), String> {
    let speaks_for = match command {
        Command::Join { peer, .. }
        | Command::Renew { peer, .. }
        | Command::ReportBootstrap { peer, .. } => peer,
        Command::Expire { .. }
        | Command::AbandonInstall { .. }
        | Command::AdoptRules { .. }
        | Command::Renewals { .. }
        | Command::Genesis(_)
        | Command::Recover { .. }
        | Command::Audited { .. } => {
            return Err(format!(
                "{} is decided by the leader alone, never proposed by another node",
                name(command)
            ));
        }
        _ => return Ok(()),
    };
    if speaks_for == sender {
        Ok(())
    } else {
        Err(format!(
            "a member may propose {} only for itself, not for {speaks_for}",
            name(command)
        ))
    }
}

fn name(command: &Command) -> &'static str {
    match command {
        Command::Join { .. } => "Join",
        Command::Renew { .. } => "Renew",
        Command::Renewals { .. } => "Renewals",
        Command::ReportBootstrap { .. } => "ReportBootstrap",
        Command::Expire { .. } => "Expire",
        Command::AbandonInstall { .. } => "AbandonInstall",
        Command::AdoptRules { .. } => "AdoptRules",
        Command::Genesis(_) => "Genesis",
        Command::Recover { .. } => "Recover",
        Command::Audited { .. } => "an audit record",
        Command::Operator(_) => "a signed command",
        Command::Leave { .. } => "removing a member",
        Command::Deny { .. } => "denying a PeerId",
        Command::Allow { .. } => "allowing a denied PeerId",
        Command::Trust { .. } | Command::Untrust { .. } => "trusting a member with a raft seat",
        Command::Reserve { .. } | Command::Unreserve { .. } => "a reservation",
        Command::SetRolePolicy(_) => "the role policy",
        Command::SetFixedRole { .. } => "another member's role",
        _ => "this command",
    }
}

/// A raft RPC as the binding check sees it: who it claims to come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RaftClaim {
    /// An append or snapshot chunk in the name of leader `node`.
    Lead(u64),
    /// A vote request from candidate `node`.
    Candidate(u64),
}

/// Whether a raft RPC claiming `claim` may be taken from `sender` (a PeerId), given the PeerId
/// this node's raft membership registers the claimed node as (`registered`) and whether this
/// node knows any membership yet (`knows_membership`). A registered node speaks only from its
/// own PeerId, so no member can send appends, votes or snapshots in the leader's name. Nor
/// under a node id nobody registered: appends carry entries the follower applies up to the
/// commit index they name, so a made-up leader could have it apply anything. A new learner
/// hears an unregistered leader, since it knows no membership until the leader's first append
/// brings it; a leader refused here may still be vouched for ([`super::vouch`]). A vote
/// request must come from a registered candidate.
pub fn may_send_raft(
    claim: RaftClaim,
    sender: &str,
    registered: Option<&str>,
    knows_membership: bool,
) -> Result<(), String> {
    let node = match claim {
        RaftClaim::Lead(node) | RaftClaim::Candidate(node) => node,
    };
    match (registered, claim) {
        (Some(peer), _) if peer == sender => Ok(()),
        (Some(peer), _) => Err(format!(
            "raft node {node} is registered as {peer}, not as the sender"
        )),
        (None, RaftClaim::Candidate(_)) => Err(format!(
            "candidate {node} is not a raft node of this cluster"
        )),
        (None, RaftClaim::Lead(_)) if !knows_membership => Ok(()),
        (None, RaftClaim::Lead(_)) => Err(format!(
            "raft node {node} is not a raft node of this cluster"
        )),
    }
}

/// Whether the raft node at PeerId `sender` may lead this node or stand for election here, by
/// the operator's trust list `trusted` and the PeerIds of each voter set of this node's raft
/// membership (`voter_sets`, [`super::vouch::voter_sets`]). Raft moves no leader that holds
/// its quorum: an untrusted leader with no trusted learner to hand its seat to (every trusted
/// machine votes already), or a hostile one that never hands it over, would lead for good. So
/// once trusted machines hold more than half of every voter set, appends, snapshot chunks and
/// vote requests are taken from trusted ones only: an untrusted leader's go unanswered, and the
/// trusted voters, a majority, elect one of them. Before that, the untrusted voters could be
/// the only majority there is, and refusing them could leave the cluster without a leader.
pub fn may_lead(
    trusted: &BTreeSet<String>,
    voter_sets: &[Vec<String>],
    sender: &str,
) -> Result<(), String> {
    // A machine holding two seats (its raft state wiped, its old seat not yet replaced) holds
    // one that can vote: it counts once.
    let trusted_hold_most = !voter_sets.is_empty()
        && voter_sets.iter().all(|voters| {
            let held: BTreeSet<&String> = voters.iter().filter(|v| trusted.contains(*v)).collect();
            held.len() * 2 > voters.len()
        });
    if trusted.contains(sender) || !trusted_hold_most {
        return Ok(());
    }
    Err(format!(
        "{sender} is not trusted with a raft seat, and trusted machines hold most voter seats"
    ))
}

/// Whether `sender` may ask the leader to add raft node `node_id` at PeerId `node_peer`: only
/// at its own PeerId, and never taking over a node id registered to another PeerId.
pub fn may_join(
    node_id: u64,
    node_peer: &str,
    sender: &str,
    registered: Option<&str>,
) -> Result<(), String> {
    if node_peer != sender {
        return Err(format!(
            "a node may join only as itself, not as {node_peer}"
        ));
    }
    match registered {
        Some(peer) if peer != sender => Err(format!(
            "raft node {node_id} is registered as another PeerId"
        )),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::state::{BootstrapReport, ClusterId, Phase, RolePolicy, join_command};
    use crate::operator::{OperatorSecret, Scope};

    #[test]
    fn a_member_speaks_only_for_itself() {
        let join = join_command("a");
        assert!(may_propose(&join, "a", None, None, 0).is_ok());
        let refusal = may_propose(&join, "b", None, None, 0).unwrap_err();
        assert!(refusal.contains("only for itself, not for a"), "{refusal}");
        let renew = Command::Renew {
            peer: "a".into(),
            now: 1,
        };
        assert!(may_propose(&renew, "a", None, None, 0).is_ok());
        assert!(may_propose(&renew, "b", None, None, 0).is_err());
        let report = Command::ReportBootstrap {
            peer: "a".into(),
            report: BootstrapReport {
                role: None,
                phase: Phase::Failed,
                detail: String::new(),
                at: 1,
            },
            restored: false,
        };
        assert!(may_propose(&report, "a", None, None, 0).is_ok());
        assert!(may_propose(&report, "b", None, None, 0).is_err());
    }

    #[test]
    fn leader_only_commands_never_come_from_another_node() {
        let expire = Command::Expire { peer: "a".into() };
        assert!(may_propose(&expire, "b", None, None, 0).is_err());
        assert!(may_propose(&expire, "a", None, None, 0).is_err());
        // Not even for itself: the leader decides it by its own timer.
        let abandon = Command::AbandonInstall { peer: "a".into() };
        assert!(may_propose(&abandon, "a", None, None, 0).is_err());
        assert!(may_propose(&abandon, "b", None, None, 0).is_err());
        let rules = Command::AdoptRules { version: 1 };
        assert!(may_propose(&rules, "a", None, None, 0).is_err());
        // A member asks to renew only its own lease (`LedgerRpc::Renew` names no one).
        let renewals = Command::Renewals {
            peers: vec!["a".into()],
            set: None,
            now: 1,
        };
        assert!(may_propose(&renewals, "a", None, None, 0).is_err());
        let genesis = Command::Genesis(ClusterId {
            created_at: 1,
            id: 2,
        });
        assert!(may_propose(&genesis, "a", None, None, 0).is_err());
    }

    #[test]
    fn shared_and_operator_commands_pass() {
        let put = Command::KvPut {
            bucket: "b".into(),
            key: "k".into(),
            value: "v".into(),
        };
        assert!(may_propose(&put, "anyone", None, None, 0).is_ok());
        assert!(may_propose(&Command::Leave { peer: "a".into() }, "b", None, None, 0).is_ok());
    }

    #[test]
    fn trust_with_a_raft_seat_is_taken_only_signed_with_or_without_a_key() {
        let secret = OperatorSecret::generate();
        let key = secret.public();
        for command in [
            Command::Trust { peer: "a".into() },
            Command::Untrust { peer: "b".into() },
        ] {
            // A member that could trust itself alone would take every seat.
            for operator in [None, Some(&key)] {
                let refusal = may_propose(&command, "a", operator, None, 0).unwrap_err();
                assert!(refusal.starts_with(OPERATOR), "{refusal}");
                assert!(refusal.contains("--operator-key"), "{refusal}");
            }
            let scope = Scope {
                cluster: None,
                network: Some("0123456789abcdef".into()),
            };
            let signed = Command::Operator(Box::new(secret.sign_in(1, &command, scope)));
            assert!(may_propose(&signed, "a", Some(&key), None, 0).is_ok());
            assert!(may_propose(&signed, "a", None, None, 0).is_err());
            // Signed for no network (as an earlier weft's CLI signed commands): refused, since
            // a member of two meshes could carry it from one into the other.
            let anywhere = Command::Operator(Box::new(secret.sign(1, &command)));
            let refusal = may_propose(&anywhere, "a", Some(&key), None, 0).unwrap_err();
            assert!(refusal.contains("network"), "{refusal}");
        }
    }

    #[test]
    fn with_an_operator_key_operator_commands_need_its_signature() {
        let secret = OperatorSecret::generate();
        let key = secret.public();
        let deny = Command::Deny { peer: "b".into() };
        let refusal = may_propose(&deny, "a", Some(&key), None, 0).unwrap_err();
        assert!(refusal.starts_with(OPERATOR), "{refusal}");
        assert!(refusal.contains("--operator-key-file"), "{refusal}");
        let signed = Command::Operator(Box::new(secret.sign(1, &deny)));
        assert!(may_propose(&signed, "a", Some(&key), None, 0).is_ok());
        // Signed by another key, or in a mesh without one: refused.
        let forged = Command::Operator(Box::new(OperatorSecret::generate().sign(1, &deny)));
        assert!(may_propose(&forged, "a", Some(&key), None, 0).is_err());
        assert!(may_propose(&signed, "a", None, None, 0).is_err());
        // What a member says for itself, and shared data, need no signature.
        assert!(
            may_propose(
                &Command::Leave { peer: "a".into() },
                "a",
                Some(&key),
                None,
                0
            )
            .is_ok()
        );
        let put = Command::KvPut {
            bucket: "b".into(),
            key: "k".into(),
            value: "v".into(),
        };
        assert!(may_propose(&put, "a", Some(&key), None, 0).is_ok());
        // A signature does not make a shared write, or a command in another's name, pass.
        let signed_put = Command::Operator(Box::new(secret.sign(2, &put)));
        assert!(may_propose(&signed_put, "a", Some(&key), None, 0).is_err());
        let join = Command::Operator(Box::new(secret.sign(3, &join_command("b"))));
        assert!(may_propose(&join, "a", Some(&key), None, 0).is_err());
        // A signed removal holds only in the cluster it was signed for, for 15 minutes.
        const NOW: u64 = 2_000_000_000;
        let here = ClusterId {
            created_at: 1,
            id: 9,
        };
        let removal = Command::Leave { peer: "b".into() };
        let bound = |seq: u64, cluster: Option<String>| {
            let scope = Scope {
                cluster,
                network: None,
            };
            Command::Operator(Box::new(secret.sign_in(seq, &removal, scope)))
        };
        let proposed = |command: &Command| may_propose(command, "a", Some(&key), Some(here), NOW);
        let fresh = (NOW - 60) * 1_000_000;
        assert!(proposed(&bound(fresh, Some(here.to_string()))).is_ok());
        assert!(proposed(&bound(fresh, Some("0000000000000001".into()))).is_err());
        assert!(
            proposed(&bound(fresh, None)).is_err(),
            "a removal bound to no cluster"
        );
        let held_back = (NOW - REMOVAL_VALID_SECS - 1) * 1_000_000;
        let late = proposed(&bound(held_back, Some(here.to_string()))).unwrap_err();
        assert!(late.contains("signed"), "{late}");
        // Nothing but a removal is bound to a cluster: a merge carries the rest.
        let scope = Scope {
            cluster: Some(here.to_string()),
            network: None,
        };
        let bound_denial = secret.sign_in(5, &deny, scope);
        assert!(proposed(&Command::Operator(Box::new(bound_denial))).is_err());
        // The policy a node is configured with is the operator's to set, too.
        let policy = RolePolicy { control_planes: 3 };
        let init = Command::InitRolePolicy(policy);
        assert!(may_propose(&init, "a", Some(&key), None, 0).is_err());
        assert!(may_propose(&init, "a", None, None, 0).is_ok());
        // A member's Join loses its configured policy, and the member still joins.
        let mut join = join_command("a");
        if let Command::Join { policy: p, .. } = &mut join {
            *p = Some(policy);
        }
        let taken = without_configured_policy(join.clone(), Some(&key));
        assert!(matches!(&taken, Command::Join { policy: None, .. }));
        assert!(may_propose(&taken, "a", Some(&key), None, 0).is_ok());
        assert_eq!(without_configured_policy(join.clone(), None), join);
    }

    fn rotation(previous: &str, grant: Option<crate::operator::Signed>) -> Command {
        Command::RotateToken {
            rotation: Box::new(crate::ledger::state::TokenRotation {
                network: "new".into(),
                previous: previous.into(),
                grace_until: 1,
                sealed: crate::ledger::state::SealedToken {
                    ephemeral: String::new(),
                    token: String::new(),
                    keys: Default::default(),
                },
                pages: vec![],
            }),
            secrets: Default::default(),
            grant: grant.map(Box::new),
        }
    }

    #[test]
    fn with_an_operator_key_a_rotation_needs_its_grant_for_this_rotation_cluster_and_network() {
        let secret = OperatorSecret::generate();
        let key = secret.public();
        let here = ClusterId {
            created_at: 1,
            id: 7,
        };
        let there = ClusterId {
            created_at: 1,
            id: 8,
        };
        let Command::RotateToken {
            rotation: made,
            secrets,
            ..
        } = rotation("old", None)
        else {
            unreachable!()
        };
        let digest = rotation_digest(&made, &secrets);
        let sign = |signer: &OperatorSecret, cluster: ClusterId, previous: &str, bound| {
            Some(signer.sign(
                1,
                &Command::AllowRotation {
                    cluster: cluster.to_string(),
                    previous: previous.into(),
                    rotation: bound,
                },
            ))
        };
        let grant = |signer: &OperatorSecret, cluster: ClusterId, previous: &str| {
            sign(signer, cluster, previous, Some(digest.clone()))
        };
        let propose = |command: &Command, key: Option<&OperatorKey>| {
            may_propose(command, "a", key, Some(here), 0)
        };
        assert!(propose(&rotation("old", None), None).is_ok());
        let refusal = propose(&rotation("old", None), Some(&key)).unwrap_err();
        assert!(refusal.contains("weft token rotate"), "{refusal}");
        let granted = rotation("old", grant(&secret, here, "old"));
        assert!(propose(&granted, Some(&key)).is_ok());
        let other_network = rotation("old", grant(&secret, here, "other"));
        assert!(propose(&other_network, Some(&key)).is_err());
        let other_cluster = rotation("old", grant(&secret, there, "old"));
        assert!(
            propose(&other_cluster, Some(&key)).is_err(),
            "replayed from another cluster"
        );
        let forged = rotation("old", grant(&OperatorSecret::generate(), here, "old"));
        assert!(propose(&forged, Some(&key)).is_err());
        assert!(propose(&granted, None).is_err(), "a mesh without a key");
        // A grant alone is nothing to apply.
        let alone = Command::Operator(Box::new(grant(&secret, here, "old").unwrap()));
        assert!(propose(&alone, Some(&key)).is_err());
        // A grant of an earlier weft, naming no rotation, is refused: any member that forwards
        // the rotation could use it for its own.
        let unbound = rotation("old", sign(&secret, here, "old", None));
        let refusal = propose(&unbound, Some(&key)).unwrap_err();
        assert!(refusal.contains("names no rotation"), "{refusal}");
        // A grant that names its rotation is good for that rotation alone.
        let mut another = made.clone();
        another
            .sealed
            .keys
            .insert("accomplice".into(), "a copy".into());
        let taken = rotation(
            "old",
            sign(
                &secret,
                here,
                "old",
                Some(rotation_digest(&another, &secrets)),
            ),
        );
        let refusal = propose(&taken, Some(&key)).unwrap_err();
        assert!(refusal.contains("another rotation"), "{refusal}");
    }

    #[test]
    fn a_raft_node_speaks_only_from_the_peer_it_is_registered_as() {
        for claim in [RaftClaim::Lead(1), RaftClaim::Candidate(1)] {
            assert!(may_send_raft(claim, "a", Some("a"), true).is_ok());
            let refusal = may_send_raft(claim, "b", Some("a"), true).unwrap_err();
            assert!(refusal.contains("registered as a"), "{refusal}");
        }
        // An unregistered leader is heard only by a node that knows no membership yet.
        assert!(may_send_raft(RaftClaim::Lead(1), "b", None, false).is_ok());
        assert!(may_send_raft(RaftClaim::Lead(1), "b", None, true).is_err());
        assert!(may_send_raft(RaftClaim::Candidate(1), "b", None, false).is_err());
    }

    #[test]
    fn once_trusted_machines_hold_most_voter_seats_only_they_lead() {
        let set = |peers: &[&str]| peers.iter().map(|p| p.to_string()).collect::<Vec<_>>();
        let trusted: BTreeSet<String> = ["t1", "t2", "t3"].map(String::from).into();
        // Two of three voters trusted: the untrusted one neither leads nor stands.
        let voters = [set(&["u", "t1", "t2"])];
        assert!(may_lead(&trusted, &voters, "u").is_err());
        assert!(may_lead(&trusted, &voters, "t1").is_ok());
        // One of three: the untrusted voters are the majority, and may still lead.
        let voters = [set(&["u", "v", "t1"])];
        assert!(may_lead(&trusted, &voters, "u").is_ok());
        // While the voters change, only when trusted machines hold most seats of each set.
        let joint = [set(&["u", "v", "t1"]), set(&["u", "t1", "t2"])];
        assert!(may_lead(&trusted, &joint, "u").is_ok());
        let joint = [set(&["u", "t1", "t2"]), set(&["t1", "t2", "t3"])];
        assert!(may_lead(&trusted, &joint, "u").is_err());
        // A trusted machine holding two seats (its raft state wiped, its old seat not yet
        // replaced) holds one that votes: it counts once.
        let voters = [set(&["t1", "t1", "u"])];
        assert!(may_lead(&trusted, &voters, "u").is_ok());
        // No trust list, or no membership known yet (a new learner): anyone.
        assert!(may_lead(&BTreeSet::new(), &[set(&["u"])], "u").is_ok());
        assert!(may_lead(&trusted, &[], "u").is_ok());
    }

    #[test]
    fn a_node_joins_only_as_itself() {
        assert!(may_join(1, "a", "a", None).is_ok());
        assert!(may_join(1, "a", "a", Some("a")).is_ok());
        assert!(may_join(1, "a", "b", None).is_err());
        assert!(may_join(1, "b", "b", Some("a")).is_err());
    }
    #[test]
    fn a_command_signed_for_another_network_is_refused_and_one_for_none_taken() {
        let secret = OperatorSecret::generate();
        let deny = Command::Deny { peer: "b".into() };
        let in_network_of = |network: Option<&str>| {
            let scope = Scope {
                cluster: None,
                network: network.map(String::from),
            };
            Command::Operator(Box::new(secret.sign_in(1, &deny, scope)))
        };
        let here = ["aa".to_string(), "bb".to_string()];
        assert!(in_network(&in_network_of(Some("aa")), &here).is_ok());
        assert!(in_network(&in_network_of(Some("bb")), &here).is_ok());
        assert!(in_network(&in_network_of(None), &here).is_ok());
        let refusal = in_network(&in_network_of(Some("cc")), &here).unwrap_err();
        assert!(refusal.starts_with(OPERATOR), "{refusal}");
        assert!(
            refusal.contains("network cc") && refusal.contains("aa, bb"),
            "{refusal}"
        );
        assert!(in_network(&in_network_of(Some("aa")), &[]).is_err());
        assert!(in_network(&deny, &[]).is_ok(), "not signed");
        // A rotation's grant is checked the same way.
        let grant = |network: &str| {
            let scope = Scope {
                cluster: None,
                network: Some(network.into()),
            };
            rotation("aa", Some(secret.sign_in(2, &deny, scope)))
        };
        assert!(in_network(&grant("aa"), &here).is_ok());
        assert!(in_network(&grant("cc"), &here).is_err());
    }
}
