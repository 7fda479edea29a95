//! Secrets kept in the ledger, sealed with the token's ledger key (XChaCha20-Poly1305, a random
//! 24-byte nonce per seal, the secret's name as associated data). Members hold the key and open
//! them; the ledger, its raft log, its snapshots, `weft ledger ls` and the API's listings only
//! ever carry ciphertext, and a sealed value cannot be moved under another name.
//!
//! Layout: `[version = 1][nonce 24][ciphertext + tag 16]`. Pure.

use chacha20poly1305::aead::{Aead as _, KeyInit as _, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use rand::RngCore as _;

use super::state::LedgerState;
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

/// Seals and opens the ledger's secrets with one network's key.
#[derive(Clone)]
pub struct Sealer {
    key: DerivedKey,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sealer")
    }
}

impl Sealer {
    /// A sealer over the token's ledger sealing key.
    pub fn new(key: DerivedKey) -> Self {
        Sealer { key }
    }

    /// Seals `plaintext` as the secret `name`.
    pub fn seal(&self, name: &str, plaintext: &[u8]) -> Vec<u8> {
        let mut nonce = [0u8; NONCE_LEN];
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        let ciphertext = XChaCha20Poly1305::new((&self.key.0).into())
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

    /// Opens the secret `name` sealed as `sealed`.
    pub fn open(&self, name: &str, sealed: &[u8]) -> Result<Vec<u8>, SealError> {
        let (version, rest) = sealed.split_first().ok_or(SealError::Malformed)?;
        if *version != VERSION || rest.len() < NONCE_LEN + 16 {
            return Err(SealError::Malformed);
        }
        let (nonce, ciphertext) = rest.split_at(NONCE_LEN);
        XChaCha20Poly1305::new((&self.key.0).into())
            .decrypt(
                XNonce::from_slice(nonce),
                Payload {
                    msg: ciphertext,
                    aad: &associated_data(name),
                },
            )
            .map_err(|_| SealError::Forged)
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

    fn sealer(byte: u8) -> Sealer {
        Sealer::new(DerivedKey([byte; 32]))
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
    fn two_seals_of_one_secret_differ() {
        assert_ne!(sealer(1).seal("s", b"x"), sealer(1).seal("s", b"x"));
    }
}
