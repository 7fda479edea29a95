//! The network tokens this node holds now, and the keys each gives.
//!
//! Normally one token. During a token rotation's grace window two: the new one, which the node
//! uses for everything it makes (admission proofs, sealed gossip and secrets, data-plane
//! handshakes, rendezvous records), and the one before, which it still accepts from others
//! until the window closes, so that members that have not heard of the rotation yet and the
//! ones that have keep talking. After the window only the new token is held.
//!
//! The keyring is shared by every part of the node and swapped whole when a rotation is
//! applied ([`Keyring::rotate`]). Which tokens are held at a time is a pure function of the
//! UNIX time the caller passes.

use std::sync::Arc;

use arc_swap::ArcSwap;

use crate::token::{NetworkId, NetworkKeys, Token};

/// One token and the keys it gives.
#[derive(Debug, Clone)]
pub struct Generation {
    pub token: Token,
    pub keys: NetworkKeys,
}

impl Generation {
    pub fn new(token: Token) -> Self {
        Generation {
            keys: token.keys(),
            token,
        }
    }

    /// The network id of this token.
    pub fn id(&self) -> NetworkId {
        self.keys.network_id()
    }
}

/// The tokens held at one moment: the current one and, until `until` (UNIX seconds), the one
/// before it.
#[derive(Debug, Clone)]
pub struct Held {
    pub current: Generation,
    pub previous: Option<(Generation, u64)>,
}

impl Held {
    /// The generations accepted at `unix`: the current one first.
    pub fn accepted(&self, unix: u64) -> Vec<&Generation> {
        let mut held = vec![&self.current];
        if let Some((previous, until)) = &self.previous
            && unix < *until
        {
            held.push(previous);
        }
        held
    }

    /// The accepted generation with network id `id`, if any.
    pub fn by_id(&self, id: NetworkId, unix: u64) -> Option<&Generation> {
        self.accepted(unix).into_iter().find(|g| g.id() == id)
    }
}

/// The node's tokens, shared by every part of it.
#[derive(Debug, Clone)]
pub struct Keyring {
    held: Arc<ArcSwap<Held>>,
}

impl Keyring {
    /// A keyring holding `token` alone.
    pub fn new(token: Token) -> Self {
        Self::with_previous(token, None)
    }

    /// A keyring holding `token` and, until the given UNIX second, the token before it.
    pub fn with_previous(token: Token, previous: Option<(Token, u64)>) -> Self {
        Keyring {
            held: Arc::new(ArcSwap::from_pointee(Held {
                current: Generation::new(token),
                previous: previous.map(|(t, until)| (Generation::new(t), until)),
            })),
        }
    }

    /// What the keyring holds now.
    pub fn held(&self) -> Arc<Held> {
        self.held.load_full()
    }

    /// The current token's keys.
    pub fn current(&self) -> NetworkKeys {
        self.held.load().current.keys.clone()
    }

    /// Makes `token` current; the one current so far is accepted until `until`. Rotating to
    /// the token already current changes nothing.
    pub fn rotate(&self, token: Token, until: u64) {
        let held = self.held.load_full();
        let next = Generation::new(token);
        if next.id() == held.current.id() {
            return;
        }
        self.held.store(Arc::new(Held {
            current: next,
            previous: Some((held.current.clone(), until)),
        }));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::token::NativeToken;

    fn token() -> Token {
        Token::Native(NativeToken::generate(None, vec![], 3600))
    }

    #[test]
    fn the_previous_token_is_accepted_only_until_the_window_closes() {
        let (old, new) = (token(), token());
        let keyring = Keyring::new(old.clone());
        keyring.rotate(new.clone(), 1000);
        let ids = |unix| -> Vec<NetworkId> {
            keyring
                .held()
                .accepted(unix)
                .iter()
                .map(|g| g.id())
                .collect()
        };
        let (old_id, new_id) = (old.keys().network_id(), new.keys().network_id());
        assert_eq!(ids(999), vec![new_id, old_id]);
        assert_eq!(ids(1000), vec![new_id]);
        assert_eq!(keyring.current().network_id(), new_id);
        assert!(keyring.held().by_id(old_id, 999).is_some());
        assert!(keyring.held().by_id(old_id, 1000).is_none());
    }

    #[test]
    fn rotating_to_the_current_token_keeps_the_window_as_it_is() {
        let (old, new) = (token(), token());
        let keyring = Keyring::new(old);
        keyring.rotate(new.clone(), 1000);
        keyring.rotate(new, 5000);
        assert_eq!(keyring.held().previous.as_ref().unwrap().1, 1000);
    }
}
