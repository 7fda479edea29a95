//! The data-plane frame on the wire, WireGuard-shaped:
//! `[type = 4][3 reserved][receiver index u32 LE][counter u64 LE][ciphertext][16-byte tag]`.
//!
//! Sealing works in place in a caller-owned buffer (no allocation per packet): the caller puts
//! the plaintext after [`HEADER_LEN`] bytes of room and leaves [`TAG_LEN`] bytes after it. The
//! nonce is the counter; the 16-byte header is the associated data, so a changed type, reserved
//! byte, index or counter fails the tag like a changed ciphertext does. Anything malformed is an
//! error value, never a panic: frames come from the network.
//!
//! The cipher is one of two AEADs from `ring`, whose assembly runs at full speed in every build
//! (the generic RustCrypto code is instantiated in this crate, so a debug build ran the overlay at
//! 20 Mbit/s): ChaCha20-Poly1305, which every member speaks, and AES-256-GCM, which a session
//! uses when both of its ends have AES and carry-less multiplication in hardware
//! ([`Cipher::agreed`]). There ring's AES-GCM seals and opens a full packet about 2.8 times
//! as fast (`BENCHMARKS.md`, "AES-256-GCM where both ends have it"); without those
//! instructions its AES is a slow constant-time fallback and ChaCha20-Poly1305 is the faster,
//! as on most small ARM boards.
//! Both take a 32-byte key and a 96-bit nonce and give a 16-byte tag, so the frame is the same.

use ring::aead::{AES_256_GCM, Aad, CHACHA20_POLY1305, LessSafeKey, Nonce, Tag, UnboundKey};

/// The AEAD a session seals its frames with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cipher {
    ChaCha20Poly1305,
    Aes256Gcm,
}

impl Cipher {
    /// Whether this machine runs AES-256-GCM in hardware (AES and carry-less multiplication
    /// instructions), so that it offers it in a handshake.
    pub fn aes_gcm_in_hardware() -> bool {
        #[cfg(target_arch = "x86_64")]
        {
            std::arch::is_x86_feature_detected!("aes")
                && std::arch::is_x86_feature_detected!("pclmulqdq")
        }
        #[cfg(target_arch = "aarch64")]
        {
            std::arch::is_aarch64_feature_detected!("aes")
                && std::arch::is_aarch64_feature_detected!("pmull")
        }
        #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
        {
            false
        }
    }

    /// The cipher of a session whose two ends offered AES-256-GCM or not: AES-256-GCM only
    /// when both did, else ChaCha20-Poly1305, which every member speaks.
    pub fn agreed(initiator_aes_gcm: bool, responder_aes_gcm: bool) -> Cipher {
        if initiator_aes_gcm && responder_aes_gcm {
            Cipher::Aes256Gcm
        } else {
            Cipher::ChaCha20Poly1305
        }
    }

    /// The cipher's name in logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Cipher::ChaCha20Poly1305 => "chacha20-poly1305",
            Cipher::Aes256Gcm => "aes-256-gcm",
        }
    }
}

/// A directional session key.
pub struct Key(LessSafeKey);

impl Key {
    pub fn new(cipher: Cipher, bytes: &[u8; 32]) -> Key {
        let algorithm = match cipher {
            Cipher::ChaCha20Poly1305 => &CHACHA20_POLY1305,
            Cipher::Aes256Gcm => &AES_256_GCM,
        };
        Key(LessSafeKey::new(
            UnboundKey::new(algorithm, bytes).expect("both ciphers take a 32-byte key"),
        ))
    }
}

/// The frame type of transport data.
pub const TYPE_DATA: u8 = 4;
/// Bytes before the ciphertext.
pub const HEADER_LEN: usize = 16;
/// Bytes of the AEAD tag after the ciphertext.
pub const TAG_LEN: usize = 16;
/// Bytes a frame adds to the packet it carries.
pub const OVERHEAD: usize = HEADER_LEN + TAG_LEN;
/// The largest MTU weft accepts (`--mtu`).
pub const MAX_MTU: usize = 9000;
/// The largest frame any member sends. Members' MTUs may differ, so receive buffers are sized
/// for this, not for the local MTU.
pub const MAX_FRAME: usize = MAX_MTU + OVERHEAD;

/// Why a frame was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("shorter than a header and a tag")]
    Truncated,
    #[error("unknown frame type {0}")]
    UnknownType(u8),
    #[error("reserved bytes are not zero")]
    Reserved,
    #[error("the tag does not verify")]
    BadTag,
    #[error("the buffer has no room for the header and tag around the payload")]
    NoRoom,
}

/// The clear part of a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// The session index the receiver chose.
    pub receiver: u32,
    /// The sender's packet counter, also the nonce.
    pub counter: u64,
}

impl Header {
    /// Reads the header of `frame` (which must hold at least a header and a tag).
    pub fn parse(frame: &[u8]) -> Result<Header, FrameError> {
        if frame.len() < OVERHEAD {
            return Err(FrameError::Truncated);
        }
        if frame[0] != TYPE_DATA {
            return Err(FrameError::UnknownType(frame[0]));
        }
        if frame[1..4] != [0, 0, 0] {
            return Err(FrameError::Reserved);
        }
        let receiver = u32::from_le_bytes([frame[4], frame[5], frame[6], frame[7]]);
        let mut counter = [0u8; 8];
        counter.copy_from_slice(&frame[8..16]);
        Ok(Header {
            receiver,
            counter: u64::from_le_bytes(counter),
        })
    }

    fn bytes(&self) -> [u8; HEADER_LEN] {
        let mut out = [0u8; HEADER_LEN];
        out[0] = TYPE_DATA;
        out[4..8].copy_from_slice(&self.receiver.to_le_bytes());
        out[8..16].copy_from_slice(&self.counter.to_le_bytes());
        out
    }
}

fn nonce(counter: u64) -> Nonce {
    let mut nonce = [0u8; 12];
    nonce[4..].copy_from_slice(&counter.to_le_bytes());
    Nonce::assume_unique_for_key(nonce)
}

/// Seals the `len` plaintext bytes at `buf[HEADER_LEN..]` into a frame occupying
/// `buf[..HEADER_LEN + len + TAG_LEN]`, and returns that length.
pub fn seal(key: &Key, header: Header, buf: &mut [u8], len: usize) -> Result<usize, FrameError> {
    let total = HEADER_LEN + len + TAG_LEN;
    if buf.len() < total {
        return Err(FrameError::NoRoom);
    }
    let head = header.bytes();
    buf[..HEADER_LEN].copy_from_slice(&head);
    let (payload, rest) = buf[HEADER_LEN..].split_at_mut(len);
    let tag = key
        .0
        .seal_in_place_separate_tag(nonce(header.counter), Aad::from(&head), payload)
        .map_err(|_| FrameError::NoRoom)?;
    rest[..TAG_LEN].copy_from_slice(tag.as_ref());
    Ok(total)
}

/// Opens `frame` in place: on success the plaintext is `frame[HEADER_LEN..HEADER_LEN + n]` where
/// `n` is the returned length. The caller checks the counter against its replay window after
/// this succeeds, never before (an unauthenticated counter must not move the window).
pub fn open(key: &Key, frame: &mut [u8]) -> Result<(Header, usize), FrameError> {
    let header = Header::parse(frame)?;
    let (head, body) = frame.split_at_mut(HEADER_LEN);
    let len = body.len() - TAG_LEN;
    let (payload, tag) = body.split_at_mut(len);
    let tag: [u8; TAG_LEN] = (&*tag).try_into().map_err(|_| FrameError::Truncated)?;
    key.0
        .open_in_place_separate_tag(
            nonce(header.counter),
            Aad::from(&*head),
            Tag::from(tag),
            payload,
            0..,
        )
        .map_err(|_| FrameError::BadTag)?;
    Ok((header, len))
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    const CIPHERS: [Cipher; 2] = [Cipher::ChaCha20Poly1305, Cipher::Aes256Gcm];

    fn key(byte: u8) -> Key {
        Key::new(Cipher::ChaCha20Poly1305, &[byte; 32])
    }

    fn sealed(payload: &[u8]) -> Vec<u8> {
        sealed_with(&key(1), payload)
    }

    fn sealed_with(key: &Key, payload: &[u8]) -> Vec<u8> {
        let mut buf = vec![0u8; payload.len() + OVERHEAD];
        buf[HEADER_LEN..HEADER_LEN + payload.len()].copy_from_slice(payload);
        let header = Header {
            receiver: 0xdead_beef,
            counter: 42,
        };
        let n = seal(key, header, &mut buf, payload.len()).unwrap();
        assert_eq!(n, buf.len());
        buf
    }

    #[test]
    fn a_frame_round_trips_and_hides_its_payload_under_either_cipher() {
        for cipher in CIPHERS {
            let key = Key::new(cipher, &[1; 32]);
            let mut frame = sealed_with(&key, b"an IP packet");
            assert!(!frame.windows(12).any(|w| w == b"an IP packet"));
            let (header, n) = open(&key, &mut frame).unwrap();
            assert_eq!(
                header,
                Header {
                    receiver: 0xdead_beef,
                    counter: 42
                }
            );
            assert_eq!(&frame[HEADER_LEN..HEADER_LEN + n], b"an IP packet");
        }
    }

    #[test]
    fn any_changed_byte_of_header_ciphertext_or_tag_is_rejected_under_either_cipher() {
        for cipher in CIPHERS {
            let key = Key::new(cipher, &[1; 32]);
            let frame = sealed_with(&key, b"payload bytes");
            for i in 0..frame.len() {
                let mut tampered = frame.clone();
                tampered[i] ^= 0x01;
                assert!(
                    open(&key, &mut tampered).is_err(),
                    "{cipher:?}: byte {i} changed"
                );
            }
            assert_eq!(
                open(&Key::new(cipher, &[2; 32]), &mut frame.clone()),
                Err(FrameError::BadTag),
                "{cipher:?}: another session's key"
            );
        }
    }

    #[test]
    fn a_frame_sealed_under_one_cipher_does_not_open_under_the_other() {
        let chacha = Key::new(Cipher::ChaCha20Poly1305, &[1; 32]);
        let aes = Key::new(Cipher::Aes256Gcm, &[1; 32]);
        assert_eq!(
            open(&aes, &mut sealed_with(&chacha, b"payload")),
            Err(FrameError::BadTag)
        );
        assert_eq!(
            open(&chacha, &mut sealed_with(&aes, b"payload")),
            Err(FrameError::BadTag)
        );
    }

    #[test]
    fn aes_gcm_is_agreed_only_when_both_ends_offer_it() {
        assert_eq!(Cipher::agreed(true, true), Cipher::Aes256Gcm);
        assert_eq!(Cipher::agreed(true, false), Cipher::ChaCha20Poly1305);
        assert_eq!(Cipher::agreed(false, true), Cipher::ChaCha20Poly1305);
        assert_eq!(Cipher::agreed(false, false), Cipher::ChaCha20Poly1305);
    }

    #[test]
    fn short_frames_and_unknown_types_are_named() {
        assert_eq!(
            open(&key(1), &mut [4u8; OVERHEAD - 1]),
            Err(FrameError::Truncated)
        );
        let mut frame = sealed(b"x");
        frame[0] = 1;
        assert_eq!(open(&key(1), &mut frame), Err(FrameError::UnknownType(1)));
        let mut frame = sealed(b"x");
        frame[2] = 9;
        assert_eq!(open(&key(1), &mut frame), Err(FrameError::Reserved));
        assert_eq!(
            seal(
                &key(1),
                Header {
                    receiver: 1,
                    counter: 1
                },
                &mut [0u8; 40],
                10
            ),
            Err(FrameError::NoRoom)
        );
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic_and_never_open(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let mut bytes = bytes;
            prop_assert!(open(&key(1), &mut bytes).is_err());
        }

        #[test]
        fn every_payload_size_round_trips(payload in proptest::collection::vec(any::<u8>(), 0..2000), counter in any::<u64>(), aes in any::<bool>()) {
            let key = Key::new(if aes { Cipher::Aes256Gcm } else { Cipher::ChaCha20Poly1305 }, &[3; 32]);
            let mut buf = vec![0u8; payload.len() + OVERHEAD];
            buf[HEADER_LEN..HEADER_LEN + payload.len()].copy_from_slice(&payload);
            let header = Header { receiver: 7, counter };
            seal(&key, header, &mut buf, payload.len()).unwrap();
            let (opened, n) = open(&key, &mut buf).unwrap();
            prop_assert_eq!(opened, header);
            prop_assert_eq!(&buf[HEADER_LEN..HEADER_LEN + n], payload.as_slice());
        }
    }
}
