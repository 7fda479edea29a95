//! Following the network token's rotation: whenever the ledger changes, a node whose ledger
//! names a rotation to a token it does not hold opens its own sealed copy, keeps it on disk
//! ([`super::file`]) and makes it current ([`Keyring::rotate`]); the token it held stays
//! accepted until the rotation's grace window closes. From then on everything the node makes
//! (admission proofs, gossip, secrets, handshakes, rendezvous) uses the new token. A node with
//! no copy (it was not a member when the rotation was made) says so, once per rotation: its
//! operator must give it the new token.

use std::path::PathBuf;

use tokio_util::sync::CancellationToken;

use super::file::{self, Kept};
use super::{hex, seal};
use crate::keyring::Keyring;
use crate::ledger::Ledger;
use crate::ledger::state::TokenRotation;
use crate::token::Token;

/// What a node needs to follow rotations.
pub struct Follower {
    pub keyring: Keyring,
    /// This node's PeerId and X25519 sealing secret.
    pub me: String,
    pub secret: [u8; 32],
    pub state_dir: PathBuf,
    /// What the rotated-token file holds.
    pub kept: Option<Kept>,
    /// The last rotation this node could not follow (said once).
    unfollowed: Option<String>,
    /// The last rotation whose page holding this node's copy was still to come (said once).
    awaited: Option<String>,
}

/// What following one rotation did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Followed {
    /// The node holds the rotation's token already, or moved past it.
    Nothing,
    /// The node moved to the rotation's token.
    Moved,
    /// The node's copy may be in a page of copies still to come.
    Waiting,
    /// The node cannot follow: the reason.
    Cannot(String),
}

impl Follower {
    pub fn new(
        keyring: Keyring,
        me: String,
        secret: [u8; 32],
        state_dir: PathBuf,
        kept: Option<Kept>,
    ) -> Self {
        Follower {
            keyring,
            me,
            secret,
            state_dir,
            kept,
            unfollowed: None,
            awaited: None,
        }
    }

    /// Follows `rotation` at UNIX second `now`; the token before stays accepted until the
    /// rotation's window closes, and at most [`super::MAX_GRACE_SECS`] from now.
    pub fn follow(&mut self, rotation: &TokenRotation, now: u64) -> Followed {
        let held = self.keyring.held();
        let replaced = self
            .kept
            .as_ref()
            .is_some_and(|k| k.replaces.contains(&rotation.network));
        if rotation.network == hex(held.current.id()) || replaced {
            return Followed::Nothing;
        }
        let token = match seal::open(&rotation.sealed, &self.me, self.secret) {
            Ok(text) => match Token::parse(&text) {
                Ok(token) if hex(token.keys().network_id()) == rotation.network => token,
                Ok(_) => return Followed::Cannot("its sealed token is another network's".into()),
                Err(e) => return Followed::Cannot(format!("its sealed token does not parse: {e}")),
            },
            Err(seal::OpenError::NotARecipient) if !rotation.pages.is_empty() => {
                return Followed::Waiting;
            }
            Err(e) => return Followed::Cannot(e.to_string()),
        };
        let until = rotation
            .grace_until
            .min(now.saturating_add(super::MAX_GRACE_SECS));
        let kept = Kept::after(self.kept.as_ref(), &held.current.token, &token, until);
        if let Err(e) = file::save(&self.state_dir, &kept) {
            // Still moved: the mesh goes on; a restart would start on the configured token.
            tracing::error!(error = %e, "the rotated token is not kept on disk");
        }
        self.kept = Some(kept);
        self.keyring.rotate(token, until);
        Followed::Moved
    }

    /// Follows every rotation the ledger names until `shutdown`.
    pub async fn run(mut self, ledger: Ledger, shutdown: CancellationToken) {
        let mut changes = ledger.subscribe();
        loop {
            if let Some(rotation) = ledger.state().token_rotation() {
                match self.follow(rotation, crate::clock::unix_now()) {
                    Followed::Nothing => {}
                    Followed::Waiting => {
                        if self.awaited.as_ref() != Some(&rotation.network) {
                            tracing::info!(
                                network = %rotation.network,
                                pages = rotation.pages.len(),
                                "the network token was rotated; this node's copy of it is in a \
                                 page of copies not yet committed"
                            );
                            self.awaited = Some(rotation.network.clone());
                        }
                    }
                    Followed::Moved => tracing::info!(
                        network = %rotation.network,
                        grace_until = rotation.grace_until,
                        "moved to the rotated network token; the token before is accepted until \
                         the grace window closes"
                    ),
                    Followed::Cannot(reason) => {
                        if self.unfollowed.as_ref() != Some(&rotation.network) {
                            tracing::warn!(
                                network = %rotation.network,
                                %reason,
                                "the network token was rotated but this node cannot follow; \
                                 give it the new token, or it is locked out when the grace \
                                 window closes"
                            );
                            self.unfollowed = Some(rotation.network.clone());
                        }
                    }
                }
            }
            tokio::select! {
                () = shutdown.cancelled() => return,
                changed = changes.changed() => if changed.is_err() { return },
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use x25519_dalek::{X25519_BASEPOINT_BYTES, x25519};

    use super::*;
    use crate::token::NativeToken;

    fn token() -> Token {
        Token::Native(NativeToken::generate(None, vec![], 3600))
    }

    fn rotation(from: &Token, to: &Token, recipients: &[(&str, [u8; 32])]) -> TokenRotation {
        let recipients: BTreeMap<String, [u8; 32]> = recipients
            .iter()
            .map(|(peer, secret)| (peer.to_string(), x25519(*secret, X25519_BASEPOINT_BYTES)))
            .collect();
        TokenRotation {
            network: hex(to.keys().network_id()),
            previous: hex(from.keys().network_id()),
            grace_until: 100,
            sealed: seal::seal(&to.encode(), &recipients),
            pages: vec![],
        }
    }

    /// The follower of member "a" (sealing secret `[1; 32]`) over `keyring`.
    fn member_a(keyring: &Keyring, dir: &std::path::Path) -> Follower {
        Follower::new(
            keyring.clone(),
            "a".into(),
            [1; 32],
            dir.to_path_buf(),
            None,
        )
    }

    #[test]
    fn a_member_moves_to_its_copy_keeps_it_and_moves_only_once() {
        let dir = tempfile::tempdir().unwrap();
        let (t0, t1) = (token(), token());
        let keyring = Keyring::new(t0.clone());
        let mut follower = member_a(&keyring, dir.path());
        let r1 = rotation(&t0, &t1, &[("a", [1; 32])]);
        assert_eq!(follower.follow(&r1, 0), Followed::Moved);
        assert_eq!(keyring.current().network_id(), t1.keys().network_id());
        assert_eq!(keyring.held().accepted(99).len(), 2);
        let kept = file::load(dir.path()).unwrap().unwrap();
        assert_eq!(kept.token, t1.encode());
        assert_eq!(follower.follow(&r1, 0), Followed::Nothing);
        // A later rotation this node was left out of is not followed.
        let t2 = token();
        let r2 = rotation(&t1, &t2, &[("b", [2; 32])]);
        assert!(matches!(follower.follow(&r2, 0), Followed::Cannot(_)));
        // Nor one whose sealed token is another network's than it names.
        let mut forged = rotation(&t1, &t2, &[("a", [1; 32])]);
        forged.network = hex(token().keys().network_id());
        assert!(matches!(follower.follow(&forged, 0), Followed::Cannot(_)));
        // An older rotation seen again (a lagging replica) does not move it back.
        let mut back = rotation(&t1, &t0, &[("a", [1; 32])]);
        back.network = hex(t0.keys().network_id());
        assert_eq!(follower.follow(&back, 0), Followed::Nothing);
        assert_eq!(keyring.current().network_id(), t1.keys().network_id());
    }

    #[test]
    fn a_member_without_a_copy_waits_while_pages_of_copies_are_to_come() {
        let dir = tempfile::tempdir().unwrap();
        let (t0, t1) = (token(), token());
        let keyring = Keyring::new(t0.clone());
        let mut follower = member_a(&keyring, dir.path());
        let mut paged = rotation(&t0, &t1, &[("b", [2; 32])]);
        paged.pages = vec!["a page's digest".into()];
        assert_eq!(follower.follow(&paged, 0), Followed::Waiting);
        // Every page in, and none held a copy for it: it cannot follow.
        paged.pages.clear();
        assert!(matches!(follower.follow(&paged, 0), Followed::Cannot(_)));
        assert_eq!(keyring.current().network_id(), t0.keys().network_id());
    }

    #[test]
    fn a_grace_window_past_the_limit_is_cut_to_it() {
        let dir = tempfile::tempdir().unwrap();
        let (t0, t1) = (token(), token());
        let keyring = Keyring::new(t0.clone());
        let mut follower = member_a(&keyring, dir.path());
        let mut endless = rotation(&t0, &t1, &[("a", [1; 32])]);
        endless.grace_until = u64::MAX;
        assert_eq!(follower.follow(&endless, 1000), Followed::Moved);
        let closes = 1000 + crate::rotation::MAX_GRACE_SECS;
        assert_eq!(keyring.held().accepted(closes - 1).len(), 2);
        assert_eq!(
            keyring.held().accepted(closes).len(),
            1,
            "the old token is refused"
        );
    }
}
