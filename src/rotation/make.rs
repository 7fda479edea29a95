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

#[cfg(test)]
mod tests {
    use x25519_dalek::{X25519_BASEPOINT_BYTES, x25519};

    use super::*;
    use crate::ledger::state::tests::pool;
    use crate::rotation::seal::{OpenError, open};
    use crate::token::NativeToken;

    fn join(peer: &str, secret: [u8; 32]) -> Command {
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
            platform: Default::default(),
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
        let made = make(&keyring, &state, &Sealer::new(keyring.clone()), 3600, 100).unwrap();
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
            make(&keyring, &state, &Sealer::new(keyring.clone()), 3600, 200).unwrap_err(),
            MakeError::GraceOpen(3700)
        );
    }
}
