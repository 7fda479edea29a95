//! Sealing of gossip: every message on the network's gossipsub topic is encrypted and
//! authenticated with the token's ledger sealing key (XChaCha20-Poly1305, random 24-byte nonce),
//! with the topic and the author's PeerId as associated data, so only members can read or forge
//! it and a member cannot pass off another member's message as its own. Pure.

use chacha20poly1305::aead::{Aead as _, KeyInit as _, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use libp2p::PeerId;
use prost::Message as _;
use rand::RngCore as _;

use crate::proto::p2p::v1::SealedGossip;
use crate::token::DerivedKey;

/// Why a gossip message was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum OpenError {
    #[error("not a sealed gossip envelope")]
    Malformed,
    #[error("does not open with this network's sealing key")]
    Forged,
}

/// Seals `plaintext` written by `author` on `topic`.
pub fn seal(key: &DerivedKey, topic: &str, author: &PeerId, plaintext: &[u8]) -> Vec<u8> {
    let mut nonce = [0u8; 24];
    rand::rngs::OsRng.fill_bytes(&mut nonce);
    let aad = associated_data(topic, author);
    let ciphertext = XChaCha20Poly1305::new((&key.0).into())
        .encrypt(
            XNonce::from_slice(&nonce),
            Payload {
                msg: plaintext,
                aad: &aad,
            },
        )
        .expect("XChaCha20-Poly1305 encrypts any message that fits in memory");
    SealedGossip {
        nonce: nonce.to_vec(),
        ciphertext,
    }
    .encode_to_vec()
}

/// Opens a sealed message said to be written by `author` on `topic`.
pub fn open(
    key: &DerivedKey,
    topic: &str,
    author: &PeerId,
    sealed: &[u8],
) -> Result<Vec<u8>, OpenError> {
    let envelope = SealedGossip::decode(sealed).map_err(|_| OpenError::Malformed)?;
    if envelope.nonce.len() != 24 {
        return Err(OpenError::Malformed);
    }
    let aad = associated_data(topic, author);
    XChaCha20Poly1305::new((&key.0).into())
        .decrypt(
            XNonce::from_slice(&envelope.nonce),
            Payload {
                msg: &envelope.ciphertext,
                aad: &aad,
            },
        )
        .map_err(|_| OpenError::Forged)
}

fn associated_data(topic: &str, author: &PeerId) -> Vec<u8> {
    let mut aad = Vec::with_capacity(topic.len() + 40);
    aad.extend_from_slice(&(topic.len() as u32).to_be_bytes());
    aad.extend_from_slice(topic.as_bytes());
    aad.extend_from_slice(&author.to_bytes());
    aad
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOPIC: &str = "/weft/00/gossip/1";

    #[test]
    fn a_sealed_message_opens_for_its_author_only() {
        let key = DerivedKey([4; 32]);
        let author = PeerId::random();
        let sealed = seal(&key, TOPIC, &author, b"lease 10.1.0.2");
        assert_eq!(
            open(&key, TOPIC, &author, &sealed).unwrap(),
            b"lease 10.1.0.2"
        );
        assert_eq!(
            open(&key, TOPIC, &PeerId::random(), &sealed),
            Err(OpenError::Forged)
        );
        assert_eq!(
            open(&key, "/other", &author, &sealed),
            Err(OpenError::Forged)
        );
    }

    #[test]
    fn another_networks_key_or_garbage_does_not_open() {
        let author = PeerId::random();
        let sealed = seal(&DerivedKey([4; 32]), TOPIC, &author, b"x");
        assert_eq!(
            open(&DerivedKey([5; 32]), TOPIC, &author, &sealed),
            Err(OpenError::Forged)
        );
        assert_eq!(
            open(&DerivedKey([4; 32]), TOPIC, &author, b"\xff\xff garbage"),
            Err(OpenError::Malformed)
        );
    }
}
