//! Sealing a token for a set of members, pure. The token is encrypted once under a fresh
//! content key (XChaCha20-Poly1305); the content key is wrapped for each member's X25519
//! sealing key ([`crate::identity::Identity::sealing_public`]) with one ephemeral X25519 key:
//! HKDF-SHA256 over the shared secret, salted with the ephemeral key and bound to the member's
//! key and PeerId, keys a ChaCha20-Poly1305 seal of the content key. A member opens only its
//! own entry; a node that is not a recipient, or an outsider, learns nothing.

use std::collections::BTreeMap;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use chacha20poly1305::aead::{Aead as _, KeyInit as _, Payload};
use chacha20poly1305::{ChaCha20Poly1305, XChaCha20Poly1305, XNonce};
use hkdf::Hkdf;
use rand::RngCore as _;
use sha2::Sha256;
use x25519_dalek::{X25519_BASEPOINT_BYTES, x25519};

use crate::ledger::state::SealedToken;

const TOKEN_LABEL: &[u8] = b"weft/rotation/token/v1";
const WRAP_LABEL: &[u8] = b"weft/rotation/wrap/v1";
const NONCE_LEN: usize = 24;

/// Why a sealed token did not open.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum OpenError {
    #[error("the rotation holds no copy for this node (it was not a member when it was made)")]
    NotARecipient,
    #[error("this node's copy does not open (it was sealed for another key)")]
    Forged,
    #[error("the sealed token is malformed")]
    Malformed,
}

/// Seals `token` (its text) for each `(PeerId, X25519 public key)`; recipients with an all-zero
/// key gave none and are left out.
pub fn seal(token: &str, recipients: &BTreeMap<String, [u8; 32]>) -> SealedToken {
    let mut content = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut content);
    let mut nonce = [0u8; NONCE_LEN];
    rand::rngs::OsRng.fill_bytes(&mut nonce);
    let ciphertext = XChaCha20Poly1305::new((&content).into())
        .encrypt(
            XNonce::from_slice(&nonce),
            Payload {
                msg: token.as_bytes(),
                aad: TOKEN_LABEL,
            },
        )
        .expect("XChaCha20-Poly1305 seals a token");
    let mut ephemeral_secret = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut ephemeral_secret);
    let ephemeral = x25519(ephemeral_secret, X25519_BASEPOINT_BYTES);
    let keys = recipients
        .iter()
        .filter(|(_, public)| **public != [0; 32])
        .filter_map(|(peer, public)| {
            let kek = wrapping_key(x25519(ephemeral_secret, *public), &ephemeral, public, peer)?;
            let wrapped = ChaCha20Poly1305::new((&kek).into())
                .encrypt(&chacha20poly1305::Nonce::default(), &content[..])
                .expect("ChaCha20-Poly1305 seals a key");
            Some((peer.clone(), STANDARD.encode(wrapped)))
        })
        .collect();
    SealedToken {
        ephemeral: STANDARD.encode(ephemeral),
        token: STANDARD.encode([&nonce[..], &ciphertext].concat()),
        keys,
    }
}

/// Opens `sealed` as member `me` holding the X25519 `secret`: the token's text.
pub fn open(sealed: &SealedToken, me: &str, secret: [u8; 32]) -> Result<String, OpenError> {
    let wrapped = sealed.keys.get(me).ok_or(OpenError::NotARecipient)?;
    let decode = |text: &str| STANDARD.decode(text).map_err(|_| OpenError::Malformed);
    let ephemeral: [u8; 32] = decode(&sealed.ephemeral)?
        .try_into()
        .map_err(|_| OpenError::Malformed)?;
    let public = x25519(secret, X25519_BASEPOINT_BYTES);
    let kek = wrapping_key(x25519(secret, ephemeral), &ephemeral, &public, me)
        .ok_or(OpenError::Forged)?;
    let content: [u8; 32] = ChaCha20Poly1305::new((&kek).into())
        .decrypt(&chacha20poly1305::Nonce::default(), &decode(wrapped)?[..])
        .map_err(|_| OpenError::Forged)?
        .try_into()
        .map_err(|_| OpenError::Malformed)?;
    let body = decode(&sealed.token)?;
    if body.len() < NONCE_LEN {
        return Err(OpenError::Malformed);
    }
    let (nonce, ciphertext) = body.split_at(NONCE_LEN);
    let plain = XChaCha20Poly1305::new((&content).into())
        .decrypt(
            XNonce::from_slice(nonce),
            Payload {
                msg: ciphertext,
                aad: TOKEN_LABEL,
            },
        )
        .map_err(|_| OpenError::Forged)?;
    String::from_utf8(plain).map_err(|_| OpenError::Malformed)
}

/// The key that wraps the content key for one recipient; `None` for a low-order public key.
fn wrapping_key(
    shared: [u8; 32],
    ephemeral: &[u8; 32],
    public: &[u8; 32],
    peer: &str,
) -> Option<[u8; 32]> {
    if shared == [0; 32] {
        return None;
    }
    let mut info = WRAP_LABEL.to_vec();
    info.extend_from_slice(public);
    info.extend_from_slice(peer.as_bytes());
    let mut kek = [0u8; 32];
    Hkdf::<Sha256>::new(Some(ephemeral), &shared)
        .expand(&info, &mut kek)
        .expect("HKDF-SHA256 expands to 32 bytes");
    Some(kek)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(byte: u8) -> ([u8; 32], [u8; 32]) {
        let secret = [byte; 32];
        (secret, x25519(secret, X25519_BASEPOINT_BYTES))
    }

    #[test]
    fn each_recipient_opens_the_token_and_nobody_else_does() {
        let (a, b, c) = (member(1), member(2), member(3));
        let recipients = BTreeMap::from([
            ("a".to_string(), a.1),
            ("b".to_string(), b.1),
            ("z".to_string(), [0; 32]),
        ]);
        let sealed = seal("the token", &recipients);
        assert_eq!(open(&sealed, "a", a.0).unwrap(), "the token");
        assert_eq!(open(&sealed, "b", b.0).unwrap(), "the token");
        assert_eq!(open(&sealed, "c", c.0), Err(OpenError::NotARecipient));
        assert_eq!(open(&sealed, "z", [0; 32]), Err(OpenError::NotARecipient));
        // c's key cannot open a's copy, nor b's copy moved under a's name.
        assert_eq!(open(&sealed, "a", c.0), Err(OpenError::Forged));
        let mut moved = sealed.clone();
        moved.keys.insert("a".into(), sealed.keys["b"].clone());
        assert_eq!(open(&moved, "a", a.0), Err(OpenError::Forged));
        assert!(!sealed.token.contains("the token"));
    }

    #[test]
    fn damaged_parts_are_refused_not_panicked_on() {
        let a = member(1);
        let sealed = seal("t", &BTreeMap::from([("a".to_string(), a.1)]));
        for damage in [
            |s: &mut SealedToken| s.ephemeral = "!".into(),
            |s: &mut SealedToken| s.ephemeral = STANDARD.encode([1u8; 5]),
            |s: &mut SealedToken| s.token = STANDARD.encode([0u8; 3]),
            |s: &mut SealedToken| s.token = STANDARD.encode([0u8; 64]),
            |s: &mut SealedToken| {
                s.keys.insert("a".into(), STANDARD.encode([0u8; 3]));
            },
        ] {
            let mut broken = sealed.clone();
            damage(&mut broken);
            assert!(open(&broken, "a", a.0).is_err());
        }
    }
}
