//! Secrets kept in the ledger, sealed with the token's ledger key (XChaCha20-Poly1305, a random
//! 24-byte nonce per seal, the secret's name as associated data). Members hold the key and open
//! them; the ledger, its raft log, its snapshots, `weft ledger ls` and the API's listings only
//! ever carry ciphertext, and a sealed value cannot be moved under another name.
//!
//! Layout: `[version = 1][nonce 24][ciphertext + tag 16]`. Pure.

use chacha20poly1305::aead::{Aead as _, KeyInit as _, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use rand::RngCore as _;

use std::collections::BTreeMap;

use super::state::LedgerState;
use crate::clock::unix_now;
use crate::keyring::Keyring;
use crate::token::DerivedKey;

/// What the Kubernetes cluster's founder publishes for the others: its join token, server URL
/// and admin kubeconfig, as one JSON document (`bootstrap::plan::ClusterSecret`).
pub const CLUSTER: &str = "k3s/cluster";

const VERSION: u8 = 1;
const NONCE_LEN: usize = 24;
const LABEL: &[u8] = b"weft/secret/v1";

/// Why a sealed secret did not open.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    #[error("the sealed secret is truncated or of an unknown version")]
    Malformed,
    #[error("the secret does not open with this network's key (another token sealed it?)")]
    Forged,
    #[error("the secret is not UTF-8 text")]
    NotText,
}

/// Seals and opens the ledger's secrets with the tokens the node holds: it seals with the
/// current one and opens with any held (during a rotation's grace window, the one before too).
#[derive(Clone)]
pub struct Sealer {
    keyring: Keyring,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sealer")
    }
}

impl Sealer {
    /// A sealer over the ledger sealing keys of `keyring`'s tokens.
    pub fn new(keyring: Keyring) -> Self {
        Sealer { keyring }
    }

    /// Seals `plaintext` as the secret `name` with the current token.
    pub fn seal(&self, name: &str, plaintext: &[u8]) -> Vec<u8> {
        seal(&self.keyring.current().ledger_seal, name, plaintext)
    }

    /// Opens the secret `name` sealed as `sealed` with any token held.
    pub fn open(&self, name: &str, sealed: &[u8]) -> Result<Vec<u8>, SealError> {
        let held = self.keyring.held();
        let mut outcome = Err(SealError::Forged);
        for generation in held.accepted(unix_now()) {
            outcome = open(&generation.keys.ledger_seal, name, sealed);
            if outcome != Err(SealError::Forged) {
                break;
            }
        }
        outcome
    }

    /// The secret `name` of `state` as text; `None` while the ledger has none.
    pub fn open_text(&self, state: &LedgerState, name: &str) -> Result<Option<String>, SealError> {
        let Some(sealed) = state.secret(name) else {
            return Ok(None);
        };
        let plain = self.open(name, sealed)?;
        String::from_utf8(plain)
            .map(Some)
            .map_err(|_| SealError::NotText)
    }

    /// Every secret of `state` this node can open, sealed again under `key` (a new token's
    /// ledger key); the names of the ones it could not open.
    pub fn reseal(
        &self,
        state: &LedgerState,
        key: &DerivedKey,
    ) -> (BTreeMap<String, Vec<u8>>, Vec<String>) {
        let mut resealed = BTreeMap::new();
        let mut unopened = Vec::new();
        for (name, sealed) in state.secrets() {
            match self.open(name, sealed) {
                Ok(plain) => {
                    resealed.insert(name.clone(), seal(key, name, &plain));
                }
                Err(_) => unopened.push(name.clone()),
            }
        }
        (resealed, unopened)
    }
}

/// Seals `plaintext` as the secret `name` under `key`.
pub fn seal(key: &DerivedKey, name: &str, plaintext: &[u8]) -> Vec<u8> {
    let mut nonce = [0u8; NONCE_LEN];
    rand::rngs::OsRng.fill_bytes(&mut nonce);
    let ciphertext = XChaCha20Poly1305::new((&key.0).into())
        .encrypt(
            XNonce::from_slice(&nonce),
            Payload {
                msg: plaintext,
                aad: &associated_data(name),
            },
        )
        .expect("XChaCha20-Poly1305 encrypts any message that fits in memory");
    let mut sealed = Vec::with_capacity(1 + NONCE_LEN + ciphertext.len());
    sealed.push(VERSION);
    sealed.extend_from_slice(&nonce);
    sealed.extend_from_slice(&ciphertext);
    sealed
}

/// Opens the secret `name` sealed as `sealed` under `key`.
pub fn open(key: &DerivedKey, name: &str, sealed: &[u8]) -> Result<Vec<u8>, SealError> {
    let (version, rest) = sealed.split_first().ok_or(SealError::Malformed)?;
    if *version != VERSION || rest.len() < NONCE_LEN + 16 {
        return Err(SealError::Malformed);
    }
    let (nonce, ciphertext) = rest.split_at(NONCE_LEN);
    XChaCha20Poly1305::new((&key.0).into())
        .decrypt(
            XNonce::from_slice(nonce),
            Payload {
                msg: ciphertext,
                aad: &associated_data(name),
            },
        )
        .map_err(|_| SealError::Forged)
}

fn associated_data(name: &str) -> Vec<u8> {
    let mut aad = LABEL.to_vec();
    aad.extend_from_slice(&(name.len() as u32).to_be_bytes());
    aad.extend_from_slice(name.as_bytes());
    aad
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Seals and opens under one fixed key.
    struct Fixed(DerivedKey);

    impl Fixed {
        fn seal(&self, name: &str, plain: &[u8]) -> Vec<u8> {
            seal(&self.0, name, plain)
        }
        fn open(&self, name: &str, sealed: &[u8]) -> Result<Vec<u8>, SealError> {
            open(&self.0, name, sealed)
        }
    }

    fn sealer(byte: u8) -> Fixed {
        Fixed(DerivedKey([byte; 32]))
    }

    const JOIN_TOKEN: &str = "token";
    const KUBECONFIG: &str = "kubeconfig";

    #[test]
    fn a_sealed_secret_opens_under_its_own_name_and_key_only() {
        let sealed = sealer(1).seal(JOIN_TOKEN, b"K10abc::server:xyz");
        assert_eq!(
            sealer(1).open(JOIN_TOKEN, &sealed).unwrap(),
            b"K10abc::server:xyz"
        );
        assert_eq!(sealer(1).open(KUBECONFIG, &sealed), Err(SealError::Forged));
        assert_eq!(sealer(2).open(JOIN_TOKEN, &sealed), Err(SealError::Forged));
        assert!(
            !sealed.windows(6).any(|w| w == b"K10abc"),
            "no clear text in the sealed bytes"
        );
    }

    #[test]
    fn truncated_or_unknown_versions_are_malformed() {
        let sealed = sealer(1).seal(JOIN_TOKEN, b"x");
        assert_eq!(
            sealer(1).open(JOIN_TOKEN, &sealed[..10]),
            Err(SealError::Malformed)
        );
        let mut future = sealed.clone();
        future[0] = 2;
        assert_eq!(
            sealer(1).open(JOIN_TOKEN, &future),
            Err(SealError::Malformed)
        );
        assert_eq!(sealer(1).open(JOIN_TOKEN, &[]), Err(SealError::Malformed));
    }

    #[test]
    fn during_a_rotation_secrets_of_either_token_open_and_new_ones_are_sealed_with_the_new() {
        use crate::token::{NativeToken, Token};
        let token = || Token::Native(NativeToken::generate(None, vec![], 3600));
        let (old, new) = (token(), token());
        let keyring = Keyring::new(old.clone());
        let sealer = Sealer::new(keyring.clone());
        let before = sealer.seal(JOIN_TOKEN, b"x");
        keyring.rotate(new.clone(), u64::MAX);
        assert_eq!(sealer.open(JOIN_TOKEN, &before).unwrap(), b"x");
        let after = sealer.seal(JOIN_TOKEN, b"y");
        assert_eq!(
            open(&new.keys().ledger_seal, JOIN_TOKEN, &after).unwrap(),
            b"y"
        );
        assert_eq!(
            open(&old.keys().ledger_seal, JOIN_TOKEN, &after),
            Err(SealError::Forged)
        );
    }

    #[test]
    fn resealing_moves_every_secret_it_can_open_to_the_new_token() {
        use crate::ledger::state::{Command, LedgerState};
        use crate::token::{NativeToken, Token};
        let token = || Token::Native(NativeToken::generate(None, vec![], 3600));
        let (old, new) = (token(), token());
        let sealer = Sealer::new(Keyring::new(old));
        let mut state = LedgerState::new("10.1.0.0/24".parse().unwrap());
        for (index, (name, sealed)) in [
            (JOIN_TOKEN, sealer.seal(JOIN_TOKEN, b"x")),
            (KUBECONFIG, seal(&DerivedKey([9; 32]), KUBECONFIG, b"y")),
        ]
        .into_iter()
        .enumerate()
        {
            let name = name.to_string();
            state.apply(index as u64 + 1, &Command::PutSecret { name, sealed });
        }
        let (resealed, unopened) = sealer.reseal(&state, &new.keys().ledger_seal);
        assert_eq!(unopened, vec![KUBECONFIG.to_string()]);
        assert_eq!(
            open(&new.keys().ledger_seal, JOIN_TOKEN, &resealed[JOIN_TOKEN]).unwrap(),
            b"x"
        );
    }

    #[test]
    fn two_seals_of_one_secret_differ() {
        assert_ne!(sealer(1).seal("s", b"x"), sealer(1).seal("s", b"x"));
    }
}
