//! The rotation a node proposes when its operator runs `weft token rotate`: a fresh token of
//! the current one's kind and settings, sealed for every member the ledger holds that gave a
//! sealing key (a denied member is removed, so it is never one), the ledger's secrets sealed
//! again under the new token, and the end of the grace window. Pure but for the randomness.

use std::collections::BTreeMap;

use super::{hex, seal};
use crate::keyring::Keyring;
use crate::ledger::sealed::Sealer;
use crate::ledger::state::{Command, LedgerState, TokenRotation};
use crate::token::Token;

/// Why no rotation was made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MakeError {
    #[error(
        "the last rotation's grace window is open until UNIX second {0}: members that have not \
         moved yet still need the token before; rotate again once it closed"
    )]
    GraceOpen(u64),
}

/// A rotation ready to propose.
#[derive(Debug)]
pub struct Made {
    /// The new token, for the operator to give new machines.
    pub token: Token,
    pub command: Command,
    /// Members it was sealed for.
    pub recipients: usize,
    /// UNIX second from which the token before is refused.
    pub grace_until: u64,
    /// Secrets this node could not open, left as they are.
    pub unopened: Vec<String>,
}

/// The rotation of `keyring`'s current token at UNIX second `now`, the one before accepted for
/// `grace_secs` more seconds.
pub fn make(
    keyring: &Keyring,
    state: &LedgerState,
    sealer: &Sealer,
    grace_secs: u64,
    now: u64,
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
    let sealed = seal::seal(&token.encode(), &recipients);
    let (secrets, unopened) = sealer.reseal(state, &token.keys().ledger_seal);
    let rotation = TokenRotation {
        network: hex(token.keys().network_id()),
        previous: hex(held.current.id()),
        grace_until: now.saturating_add(grace_secs),
        sealed,
    };
    Ok(Made {
        recipients: rotation.sealed.keys.len(),
        grace_until: rotation.grace_until,
        token,
        command: Command::RotateToken {
            rotation: Box::new(rotation),
            secrets,
            grant: None,
        },
        unopened,
    })
}
