//! The network token's rotation as the ledger keeps it (`weft token rotate`): which token the
//! network moves to, until when the token before stays accepted, and the new token sealed for
//! each member that was not denied. The state machine never sees a token: it keeps what the
//! proposer sealed ([`crate::rotation::seal`] makes and opens it), and every node follows the
//! last rotation it finds here ([`crate::rotation::follow`]).
//!
//! A rotation must start from the token the previous one moved to, so two operators rotating
//! at once cannot leave the members split between two new tokens: the second is refused.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{LedgerState, Outcome, PeerKey};

/// One rotation of the network token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenRotation {
    /// Network id (hex) of the token the network moves to.
    pub network: String,
    /// Network id of the token it moves from.
    pub previous: String,
    /// UNIX second from which the token before is refused.
    pub grace_until: u64,
    /// The new token, sealed for each member.
    pub sealed: SealedToken,
}

/// A token sealed under a fresh content key, and that key wrapped for each recipient's X25519
/// key with one ephemeral X25519 key (all base64).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SealedToken {
    /// The ephemeral public key.
    pub ephemeral: String,
    /// Nonce and ciphertext of the token under the content key.
    pub token: String,
    /// Recipient → the content key wrapped for it.
    pub keys: BTreeMap<PeerKey, String>,
}

impl LedgerState {
    /// Records `rotation` and takes the ledger's secrets sealed again under the new token
    /// (`secrets`; only names the ledger still holds are replaced).
    pub(super) fn rotate_token(
        &mut self,
        rotation: &TokenRotation,
        secrets: &BTreeMap<String, Vec<u8>>,
    ) -> Outcome {
        if let Some(last) = &self.rotation
            && last.network != rotation.previous
        {
            return Outcome::StaleRotation;
        }
        if rotation.network == rotation.previous {
            return Outcome::StaleRotation;
        }
        for (name, sealed) in secrets {
            if let Some(held) = self.secrets.get_mut(name) {
                held.clone_from(sealed);
            }
        }
        self.rotation = Some(rotation.clone());
        Outcome::Done
    }

    /// The last rotation of the network token, if there was one.
    pub fn token_rotation(&self) -> Option<&TokenRotation> {
        self.rotation.as_ref()
    }
}

#[cfg(test)]
mod tests {
    use super::super::Command;
    use super::*;

    fn rotation(previous: &str, network: &str) -> Command {
        Command::RotateToken {
            rotation: Box::new(TokenRotation {
                network: network.into(),
                previous: previous.into(),
                grace_until: 100,
                sealed: SealedToken {
                    ephemeral: String::new(),
                    token: String::new(),
                    keys: BTreeMap::new(),
                },
            }),
            secrets: BTreeMap::from([("s".to_string(), vec![2]), ("gone".to_string(), vec![3])]),
        }
    }

    #[test]
    fn a_rotation_must_start_from_the_token_the_last_one_moved_to() {
        let mut state = LedgerState::new("10.1.0.0/24".parse().unwrap());
        state.apply(
            1,
            &Command::PutSecret {
                name: "s".into(),
                sealed: vec![1],
            },
        );
        assert_eq!(state.apply(2, &rotation("aa", "bb")), Outcome::Done);
        assert_eq!(state.secret("s"), Some(&[2][..]), "resealed");
        assert_eq!(state.secret("gone"), None, "no secret is added");
        assert_eq!(
            state.apply(3, &rotation("aa", "cc")),
            Outcome::StaleRotation
        );
        assert_eq!(
            state.apply(4, &rotation("bb", "bb")),
            Outcome::StaleRotation
        );
        assert_eq!(state.token_rotation().unwrap().network, "bb");
        assert_eq!(state.apply(5, &rotation("bb", "cc")), Outcome::Done);
        assert_eq!(state.token_rotation().unwrap().network, "cc");
    }
}
