//! Who may propose what to the leader over the ledger RPC. A member speaks only for itself: its
//! `Join` (hostname, data-plane key, endpoints, requested address), `Renew` and bootstrap
//! reports are accepted only from its own PeerId, the one the connection authenticated. What
//! only a leader decides (`Expire`) or only a cluster's first entry holds (`Genesis`,
//! `Recover`) is never accepted from another node: the leader proposes those itself.
//! Nor is an audit wrapper: the leader alone attributes a command to its issuer. Everything
//! else (ledger keys, DNS records, operators' role and member changes) any member may propose,
//! and the leader records it with its sender in the audit trail ([`super::state::attribute`]).
//! Decided before raft sees the command, from the command and the sender alone.

use super::state::Command;

/// Whether `sender` (a PeerId) may have the leader propose `command`; the refusal says why.
pub fn may_propose(command: &Command, sender: &str) -> Result<(), String> {
    let speaks_for = match command {
        Command::Join { peer, .. }
        | Command::Renew { peer, .. }
        | Command::ReportBootstrap { peer, .. } => peer,
        Command::Expire { .. }
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
        Command::ReportBootstrap { .. } => "ReportBootstrap",
        Command::Expire { .. } => "Expire",
        Command::Genesis(_) => "Genesis",
        Command::Recover { .. } => "Recover",
        Command::Audited { .. } => "an audit record",
        _ => "this command",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::state::{BootstrapReport, ClusterId, Phase, join_command};

    #[test]
    fn a_member_speaks_only_for_itself() {
        let join = join_command("a");
        assert!(may_propose(&join, "a").is_ok());
        let refusal = may_propose(&join, "b").unwrap_err();
        assert!(refusal.contains("only for itself, not for a"), "{refusal}");
        let renew = Command::Renew {
            peer: "a".into(),
            now: 1,
        };
        assert!(may_propose(&renew, "a").is_ok());
        assert!(may_propose(&renew, "b").is_err());
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
        assert!(may_propose(&report, "a").is_ok());
        assert!(may_propose(&report, "b").is_err());
    }

    #[test]
    fn leader_only_commands_never_come_from_another_node() {
        let expire = Command::Expire { peer: "a".into() };
        assert!(may_propose(&expire, "b").is_err());
        assert!(may_propose(&expire, "a").is_err());
        let genesis = Command::Genesis(ClusterId {
            created_at: 1,
            id: 2,
        });
        assert!(may_propose(&genesis, "a").is_err());
    }

    #[test]
    fn shared_and_operator_commands_pass() {
        let put = Command::KvPut {
            bucket: "b".into(),
            key: "k".into(),
            value: "v".into(),
        };
        assert!(may_propose(&put, "anyone").is_ok());
        assert!(may_propose(&Command::Leave { peer: "a".into() }, "b").is_ok());
    }
}
