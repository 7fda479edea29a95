//! The rotation a node proposes when its operator runs `weft token rotate`: a fresh token of
//! the current one's kind and settings, sealed for every member the ledger holds that gave a
//! sealing key (a denied member is removed, so it is never one), the ledger's secrets sealed
//! again under the new token, and the end of the grace window. The copies of more members than
//! one command carries go in pages, each a command of its own proposed after the rotation
//! ([`crate::ledger::state::ROTATION_PAGE`]). Pure but for the randomness.

use std::collections::BTreeMap;

use super::{hex, seal};
use crate::keyring::Keyring;
use crate::ledger::sealed::Sealer;
use crate::ledger::state::{
    Command, LedgerState, PAGES_FORM, ROTATION_PAGE, TokenRotation, page_digest,
};
use crate::token::Token;

/// Why no rotation was made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MakeError {
    #[error(
        "the last rotation's grace window is open until UNIX second {0}: members that have not \
         moved yet still need the token before; rotate again once it closed"
    )]
    GraceOpen(u64),
    #[error(
        "the ledger holds {recipients} members, more than one write carries copies of the new \
         token for ({ROTATION_PAGE}), and {count} live member(s) say they run a weft too old to \
         read copies sent in pages ({named}): upgrade them, or deny those you do not know; or \
         rotate with --force, and those members stop taking the ledger until upgraded",
        count = old.len(),
        named = old.join(", ")
    )]
    OldMembers {
        recipients: usize,
        /// The first few of those members, as `hostname (PeerId)`.
        old: Vec<String>,
    },
    #[error(
        "the ledger holds {recipients} members, more than one write carries copies of the new \
         token for ({ROTATION_PAGE}), and raft node(s) {named} run, or say they run, a weft too \
         old to read copies sent in pages: every write passes through them, so the pages would \
         stall the ledger; upgrade them first (--force does not pass this)",
        named = old.join(", ")
    )]
    OldRaftNodes {
        recipients: usize,
        /// The first few of those raft nodes, as `hostname (PeerId)` or the PeerId alone.
        old: Vec<String>,
    },
}

/// Members an [`MakeError::OldMembers`] names at most.
const NAMED: usize = 8;

/// A rotation ready to propose.
#[derive(Debug)]
pub struct Made {
    /// The new token, for the operator to give new machines.
    pub token: Token,
    pub command: Command,
    /// The pages of copies to propose once `command` committed, in any order
    /// ([`Command::RotationKeys`]); none when `command` holds every copy.
    pub pages: Vec<Command>,
    /// Members it was sealed for.
    pub recipients: usize,
    /// UNIX second from which the token before is refused.
    pub grace_until: u64,
    /// Secrets this node could not open, left as they are.
    pub unopened: Vec<String>,
}

/// The rotation of `keyring`'s current token at UNIX second `now`, the one before accepted for
/// `grace_secs` more seconds. Copies in pages are made while a live member says its weft
/// cannot read them only when `force` (a member can say so falsely), and never while one of
/// the raft nodes `raft` (PeerIds of the voters and learners) does: an entry a raft node
/// cannot decode stops its log, and a voter's stops every write.
pub fn make(
    keyring: &Keyring,
    state: &LedgerState,
    sealer: &Sealer,
    grace_secs: u64,
    now: u64,
    force: bool,
    raft: &[String],
) -> Result<Made, MakeError> {
    let held = keyring.held();
    if let Some((_, until)) = &held.previous
        && now < *until
    {
        return Err(MakeError::GraceOpen(*until));
    }
    let token = held.current.token.rotated();
    let recipients: BTreeMap<String, [u8; 32]> = state
        .members()
        .iter()
        .filter(|(peer, _)| !state.is_denied(peer))
        .map(|(peer, member)| (peer.clone(), member.sealing_key))
        .collect();
    let mut sealed = seal::seal(&token.encode(), &recipients);
    let recipients = sealed.keys.len();
    let paged = recipients > ROTATION_PAGE;
    if paged {
        let name = |peer: &str| match state.members().get(peer) {
            Some(member) => format!("{} ({peer})", member.hostname),
            None => peer.to_string(),
        };
        let old_raft: Vec<String> = raft
            .iter()
            .filter(|peer| {
                state
                    .members()
                    .get(peer.as_str())
                    .is_none_or(|m| m.platform.commands < PAGES_FORM)
            })
            .take(NAMED)
            .map(|peer| name(peer))
            .collect();
        if !old_raft.is_empty() {
            return Err(MakeError::OldRaftNodes {
                recipients,
                old: old_raft,
            });
        }
        if !force && !state.reads_form(PAGES_FORM) {
            return Err(MakeError::OldMembers {
                recipients,
                old: state
                    .not_reading(PAGES_FORM)
                    .take(NAMED)
                    .map(|(peer, _)| name(peer))
                    .collect(),
            });
        }
    }
    let network = hex(token.keys().network_id());
    let mut pages = Vec::new();
    if paged {
        let mut copies = std::mem::take(&mut sealed.keys).into_iter().peekable();
        while copies.peek().is_some() {
            let keys: BTreeMap<_, _> = copies.by_ref().take(ROTATION_PAGE).collect();
            pages.push(keys);
        }
    }
    let (secrets, unopened) = sealer.reseal(state, &token.keys().ledger_seal);
    let rotation = TokenRotation {
        network: network.clone(),
        previous: hex(held.current.id()),
        grace_until: now.saturating_add(grace_secs),
        sealed,
        pages: pages.iter().map(page_digest).collect(),
    };
    Ok(Made {
        recipients,
        grace_until: rotation.grace_until,
        pages: pages
            .into_iter()
            .map(|keys| Command::RotationKeys {
                network: network.clone(),
                keys,
            })
            .collect(),
        token,
        command: Command::RotateToken {
            rotation: Box::new(rotation),
            secrets,
            grant: None,
        },
        unopened,
    })
}

#[cfg(test)]
mod tests {
    use x25519_dalek::{X25519_BASEPOINT_BYTES, x25519};

    use super::*;
    use crate::ledger::state::Outcome;
    use crate::ledger::state::tests::pool;
    use crate::rotation::seal::{OpenError, open};
    use crate::token::NativeToken;

    fn join(peer: &str, secret: [u8; 32]) -> Command {
        join_reading(peer, secret, crate::ledger::state::COMMAND_FORM)
    }

    /// A member's join, from a weft that reads the ledger's commands up to `form`.
    fn join_reading(peer: &str, secret: [u8; 32], form: u32) -> Command {
        Command::Join {
            peer: peer.to_string(),
            hostname: peer.to_string(),
            sealing_key: x25519(secret, X25519_BASEPOINT_BYTES),
            endpoints: vec![],
            requested: None,
            now: 1,
            fixed_role: None,
            policy: None,
            bootstraps: false,
            platform: crate::ledger::state::Platform {
                commands: form,
                ..Default::default()
            },
        }
    }

    #[test]
    fn the_new_token_is_sealed_for_away_members_too_and_never_for_a_denied_one() {
        let keyring = Keyring::new(Token::Native(NativeToken::generate(None, vec![], 3600)));
        let secret = |byte: u8| [byte; 32];
        let mut state = LedgerState::new(pool());
        let commands = [
            join("live", secret(1)),
            join("away", secret(2)),
            join("denied", secret(3)),
            Command::Expire {
                peer: "away".into(),
            },
            Command::Deny {
                peer: "denied".into(),
            },
        ];
        for (i, command) in commands.iter().enumerate() {
            state.apply(i as u64 + 1, command);
        }
        let made = make_at(&keyring, &state, 100).unwrap();
        assert_eq!(made.recipients, 2);
        assert_eq!(made.grace_until, 3700);
        let Command::RotateToken { rotation, .. } = made.command else {
            panic!("not a rotation: {:?}", made.command);
        };
        let token = made.token.encode();
        assert_eq!(open(&rotation.sealed, "live", secret(1)).unwrap(), token);
        assert_eq!(open(&rotation.sealed, "away", secret(2)).unwrap(), token);
        assert_eq!(
            open(&rotation.sealed, "denied", secret(3)),
            Err(OpenError::NotARecipient)
        );
        // While its grace window is open, no second rotation is made.
        keyring.rotate(made.token.clone(), made.grace_until);
        assert_eq!(
            make_at(&keyring, &state, 200).unwrap_err(),
            MakeError::GraceOpen(3700)
        );
    }

    /// The rotation of `keyring`'s token at `now` with an hour's grace, not forced.
    fn make_at(keyring: &Keyring, state: &LedgerState, now: u64) -> Result<Made, MakeError> {
        make(
            keyring,
            state,
            &Sealer::new(keyring.clone()),
            3600,
            now,
            false,
            &[],
        )
    }

    /// The sealing secret of member `i` of a large mesh.
    fn secret_of(i: usize) -> [u8; 32] {
        let mut secret = [7; 32];
        secret[..8].copy_from_slice(&(i as u64).to_le_bytes());
        secret
    }

    #[test]
    fn a_mesh_of_a_thousand_members_rotates_in_writes_the_ledger_takes_and_each_opens_its_copy() {
        let keyring = Keyring::new(Token::Native(NativeToken::generate(None, vec![], 3600)));
        let mut state = LedgerState::new("10.0.0.0/16".parse().unwrap());
        let peer = |i: usize| format!("12D3KooWmember{i:0>38}");
        for i in 0..1000 {
            state.apply(i as u64 + 1, &join(&peer(i), secret_of(i)));
        }
        let made = make_at(&keyring, &state, 100).unwrap();
        assert_eq!(made.recipients, 1000);
        assert_eq!(made.pages.len(), 1000usize.div_ceil(ROTATION_PAGE));
        // Every write fits the ledger's limit: one rotation holding all copies took about
        // 130 KB, twice the limit, and was refused.
        for command in std::iter::once(&made.command).chain(&made.pages) {
            crate::ledger::limits::check_size(command).unwrap();
        }
        let network = hex(made.token.keys().network_id());
        let mut index = 2000;
        let mut apply = |state: &mut LedgerState, command: &Command| {
            index += 1;
            state.apply(index, command)
        };
        assert_eq!(apply(&mut state, &made.command), Outcome::Done);
        let waiting = state.token_rotation().unwrap();
        assert_eq!(waiting.pages.len(), made.pages.len());
        assert!(waiting.sealed.keys.is_empty());
        // A page the rotation does not await changes nothing: one of another rotation, or
        // this rotation's copies changed by whoever proposes them.
        let Command::RotationKeys { keys, .. } = &made.pages[0] else {
            panic!("not a page: {:?}", made.pages[0]);
        };
        let elsewhere = Command::RotationKeys {
            network: "0000000000000001".into(),
            keys: keys.clone(),
        };
        let mut forged = keys.clone();
        forged.insert(peer(0), String::from("AAAA"));
        let forged = Command::RotationKeys {
            network: network.clone(),
            keys: forged,
        };
        for refused in [elsewhere, forged] {
            assert_eq!(apply(&mut state, &refused), Outcome::RotationPages);
        }
        assert!(state.token_rotation().unwrap().sealed.keys.is_empty());
        // The pages, in any order, each once; the rotation committed again keeps them.
        for page in made.pages.iter().rev() {
            assert_eq!(apply(&mut state, page), Outcome::Done);
            assert_eq!(apply(&mut state, page), Outcome::RotationPages);
        }
        assert_eq!(apply(&mut state, &made.command), Outcome::Done);
        let rotation = state.token_rotation().unwrap();
        assert!(rotation.pages.is_empty());
        let token = made.token.encode();
        for i in 0..1000 {
            assert_eq!(
                open(&rotation.sealed, &peer(i), secret_of(i)).unwrap(),
                token
            );
        }
    }

    #[test]
    fn copies_in_pages_wait_until_every_live_member_reads_them() {
        let keyring = Keyring::new(Token::Native(NativeToken::generate(None, vec![], 3600)));
        let mut state = LedgerState::new("10.0.0.0/16".parse().unwrap());
        for i in 0..=ROTATION_PAGE {
            let form = if i == 0 { PAGES_FORM - 1 } else { PAGES_FORM };
            state.apply(
                i as u64 + 1,
                &join_reading(&format!("m{i}"), secret_of(i), form),
            );
        }
        let refused = make_at(&keyring, &state, 100).unwrap_err();
        assert_eq!(
            refused,
            MakeError::OldMembers {
                recipients: ROTATION_PAGE + 1,
                old: vec!["m0 (m0)".into()]
            }
        );
        assert!(refused.to_string().contains("--force"), "{refused}");
        // The operator may leave it behind: a member can say it runs an old weft falsely.
        let forced = |raft: &[String]| {
            make(
                &keyring,
                &state,
                &Sealer::new(keyring.clone()),
                3600,
                100,
                true,
                raft,
            )
        };
        assert_eq!(forced(&["m1".into()]).unwrap().pages.len(), 2);
        // Never past a raft node that cannot read them: every write passes through it.
        assert_eq!(
            forced(&["m0".into(), "m1".into(), "gone".into()]).unwrap_err(),
            MakeError::OldRaftNodes {
                recipients: ROTATION_PAGE + 1,
                old: vec!["m0 (m0)".into(), "gone".into()]
            }
        );
        // Gone for good, the old weft no longer holds the rotation back.
        state.apply(1000, &Command::Expire { peer: "m0".into() });
        let made = make_at(&keyring, &state, 100).unwrap();
        assert_eq!(made.pages.len(), 2);
        // A mesh whose copies fit one write makes no pages, whatever its wefts read.
        state.apply(1001, &Command::Leave { peer: "m1".into() });
        let made = make_at(&keyring, &state, 100).unwrap();
        assert!(made.pages.is_empty());
        assert_eq!(made.recipients, ROTATION_PAGE);
    }
}
