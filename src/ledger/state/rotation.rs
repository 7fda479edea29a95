//! The network token's rotation as the ledger keeps it (`weft token rotate`): which token the
//! network moves to, until when the token before stays accepted, and the new token sealed for
//! each member that was not denied. The state machine never sees a token: it keeps what the
//! proposer sealed ([`crate::rotation::seal`] makes and opens it), and every node follows the
//! last rotation it finds here ([`crate::rotation::follow`]).
//!
//! The last rotation committed is the one every member follows, whichever token it holds, so
//! two operators rotating at once still leave the members on one token.
//!
//! A copy for each member takes about 130 bytes, so the copies of more than
//! [`ROTATION_PAGE`] members do not fit one command ([`crate::ledger::limits`]). Such a
//! rotation carries no copy itself but the digest of each page of copies, and each page
//! follows in a command of its own ([`super::Command::RotationKeys`]). A page is taken only
//! when its digest is one the last rotation still awaits, so whoever proposes it, it adds
//! exactly the copies the rotation's maker sealed.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use super::bounds::MAX_MEMBERS;
use super::{LedgerState, Outcome, PeerKey};

/// Members whose copies one command carries: each takes about 130 bytes as JSON, so a page
/// stays well within the command limit.
pub const ROTATION_PAGE: usize = 256;

/// Pages one rotation may await: enough for every member record the ledger holds.
pub const MAX_ROTATION_PAGES: usize = MAX_MEMBERS.div_ceil(ROTATION_PAGE);

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
    /// The digests ([`page_digest`]) of the pages of copies still to come, when the copies
    /// did not fit this command; empty once every page is in `sealed`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pages: Vec<String>,
}

/// The digest a rotation names a page of copies by: SHA-256 of the page's JSON, in hex.
pub fn page_digest(keys: &BTreeMap<PeerKey, String>) -> String {
    json_digest(keys)
}

/// The digest the operator's grant names one rotation by
/// ([`Command::AllowRotation`](super::Command::AllowRotation)): SHA-256 of the rotation and
/// the secrets sealed again with it, as JSON, in hex. Bound to it, the grant is good for that
/// rotation alone, not for one another member makes with it.
pub fn rotation_digest(rotation: &TokenRotation, secrets: &BTreeMap<String, Vec<u8>>) -> String {
    json_digest(&(rotation, secrets))
}

fn json_digest(value: &impl Serialize) -> String {
    let json = serde_json::to_vec(value).unwrap_or_default();
    Sha256::digest(&json)
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
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
    /// (`secrets`). Only names the ledger still holds are replaced, each as a [`Command::PutSecret`]
    /// would be, so a rotation cannot grow the shared data past its limit.
    ///
    /// [`Command::PutSecret`]: super::Command::PutSecret
    /// A rotation awaiting more than [`MAX_ROTATION_PAGES`] pages is refused
    /// ([`Outcome::RotationPages`]); the same rotation applied again (a proposal that
    /// committed twice) changes nothing, so the pages already taken stay.
    pub(super) fn rotate_token(
        &mut self,
        rotation: &TokenRotation,
        secrets: &BTreeMap<String, Vec<u8>>,
    ) -> Outcome {
        if rotation.pages.len() > MAX_ROTATION_PAGES {
            return Outcome::RotationPages;
        }
        if self.rotation.as_ref().is_some_and(|last| {
            last.network == rotation.network && last.sealed.token == rotation.sealed.token
        }) {
            return Outcome::Done;
        }
        for (name, sealed) in secrets {
            if self.secrets.contains_key(name) {
                // Resealed under the new token a secret keeps its length; one that grew is a
                // forgery and stays as it was.
                let _ = self.put_secret(name, sealed);
            }
        }
        self.rotation = Some(rotation.clone());
        Outcome::Done
    }

    /// Adds a page of copies to the last rotation, to `network`, when that rotation still
    /// awaits a page of this digest; else changes nothing ([`Outcome::RotationPages`]).
    pub(super) fn rotation_keys(
        &mut self,
        network: &str,
        keys: &BTreeMap<PeerKey, String>,
    ) -> Outcome {
        let Some(rotation) = self.rotation.as_mut().filter(|r| r.network == network) else {
            return Outcome::RotationPages;
        };
        let digest = page_digest(keys);
        let Some(at) = rotation.pages.iter().position(|page| *page == digest) else {
            return Outcome::RotationPages;
        };
        rotation.pages.remove(at);
        rotation
            .sealed
            .keys
            .extend(keys.iter().map(|(peer, key)| (peer.clone(), key.clone())));
        Outcome::Done
    }

    /// The last rotation of the network token, if there was one.
    pub fn token_rotation(&self) -> Option<&TokenRotation> {
        self.rotation.as_ref()
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Command, SHARED_DATA_LIMIT};
    use super::*;

    fn rotation(previous: &str, network: &str, secret: Vec<u8>) -> Command {
        Command::RotateToken {
            grant: None,
            rotation: Box::new(TokenRotation {
                network: network.into(),
                previous: previous.into(),
                grace_until: 100,
                sealed: SealedToken {
                    ephemeral: String::new(),
                    token: network.into(),
                    keys: BTreeMap::new(),
                },
                pages: vec![],
            }),
            secrets: BTreeMap::from([("s".to_string(), secret), ("gone".to_string(), vec![3])]),
        }
    }

    #[test]
    fn the_last_rotation_is_kept_and_only_held_secrets_are_resealed_within_the_limit() {
        let mut state = LedgerState::new("10.1.0.0/24".parse().unwrap());
        state.apply(
            1,
            &Command::PutSecret {
                name: "s".into(),
                sealed: vec![1],
            },
        );
        assert_eq!(
            state.apply(2, &rotation("aa", "bb", vec![2])),
            Outcome::Done
        );
        assert_eq!(state.secret("s"), Some(&[2][..]), "resealed");
        assert_eq!(state.secret("gone"), None, "no secret is added");
        // A rotation from another token than the last one's is followed all the same, so a
        // rotation nobody else can follow does not block the next.
        assert_eq!(
            state.apply(3, &rotation("aa", "cc", vec![3])),
            Outcome::Done
        );
        assert_eq!(state.token_rotation().unwrap().network, "cc");
        // A "resealed" secret past the shared data limit is not taken.
        let huge = vec![0; SHARED_DATA_LIMIT];
        assert_eq!(state.apply(4, &rotation("cc", "dd", huge)), Outcome::Done);
        assert_eq!(state.secret("s"), Some(&[3][..]));
        assert_eq!(state.token_rotation().unwrap().network, "dd");
    }
}
