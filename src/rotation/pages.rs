//! The pages of members' copies that a rotation made on this node still has to commit
//! ([`crate::ledger::state::ROTATION_PAGE`]). Only the node that made a rotation holds its
//! pages. Should one fail to commit (no leader for a while, an answer lost through a member that
//! forwarded it, the operator's request given up), the members it holds copies for would get
//! none and be locked out when the grace window closes. So the pages wait in an [`Outbox`],
//! and [`deliver`] proposes each until the rotation holds it, or another rotation is the last.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::ledger::Ledger;
use crate::ledger::state::{Command, LedgerState, page_digest};

/// How often pages that did not commit are proposed again.
const RETRY: Duration = Duration::from_secs(2);

/// The pages of the last rotation this node made, until the ledger holds them all.
#[derive(Debug, Clone, Default)]
pub struct Outbox(Arc<Mutex<Option<Held>>>);

#[derive(Debug)]
struct Held {
    /// Network id of the rotation the pages belong to, and of the one it replaces.
    network: String,
    previous: String,
    /// Each page's digest, and its command.
    pages: Vec<(String, Command)>,
}

impl Outbox {
    /// Holds `pages` ([`Command::RotationKeys`]) of the rotation from `previous` to `network`,
    /// in place of any held before.
    pub fn hold(&self, network: String, previous: String, pages: Vec<Command>) {
        let pages = pages
            .into_iter()
            .filter_map(|page| match &page {
                Command::RotationKeys { keys, .. } => Some((page_digest(keys), page)),
                _ => None,
            })
            .collect::<Vec<_>>();
        let held = (!pages.is_empty()).then_some(Held {
            network,
            previous,
            pages,
        });
        *self.lock() = held;
    }

    /// The pages the last rotation in `state` still awaits of those held. A page the rotation
    /// holds is let go, and so is everything once another rotation than the one before is the
    /// last. While `state` still shows the rotation before (this node has not applied its own
    /// yet), none is due and all are kept.
    pub fn due(&self, state: &LedgerState) -> Vec<Command> {
        let mut held = self.lock();
        let Some(outbox) = held.as_mut() else {
            return Vec::new();
        };
        let last = state.token_rotation();
        match last {
            Some(rotation) if rotation.network == outbox.network => {
                outbox
                    .pages
                    .retain(|(digest, _)| rotation.pages.contains(digest));
            }
            Some(rotation) if rotation.network != outbox.previous => outbox.pages.clear(),
            _ => return Vec::new(),
        }
        if outbox.pages.is_empty() {
            *held = None;
            return Vec::new();
        }
        outbox.pages.iter().map(|(_, page)| page.clone()).collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Held>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Proposes the pages `outbox` holds whenever the ledger changes, and every [`RETRY`] while
/// some are due, until `shutdown`.
pub async fn deliver(outbox: Outbox, ledger: Ledger, shutdown: CancellationToken) {
    let mut changes = ledger.subscribe();
    let mut retry = tokio::time::interval(RETRY);
    retry.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let due = outbox.due(&ledger.state());
        for page in due {
            if let Err(e) = ledger.propose(page).await {
                tracing::info!(error = %e, "a page of the rotation's copies is not committed yet; \
                     proposing it again");
                break;
            }
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            changed = changes.changed() => if changed.is_err() { return },
            _ = retry.tick() => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::ledger::state::{Outcome, SealedToken, TokenRotation};

    fn page(peer: &str) -> Command {
        Command::RotationKeys {
            network: "new".into(),
            keys: BTreeMap::from([(peer.to_string(), "a copy".to_string())]),
        }
    }

    fn rotation(from: &str, to: &str, pages: &[&str]) -> Command {
        Command::RotateToken {
            rotation: Box::new(TokenRotation {
                network: to.into(),
                previous: from.into(),
                grace_until: 100,
                sealed: SealedToken {
                    ephemeral: String::new(),
                    token: to.into(),
                    keys: BTreeMap::new(),
                },
                pages: pages
                    .iter()
                    .map(|peer| match page(peer) {
                        Command::RotationKeys { keys, .. } => page_digest(&keys),
                        _ => unreachable!(),
                    })
                    .collect(),
            }),
            secrets: BTreeMap::new(),
            grant: None,
        }
    }

    #[test]
    fn pages_are_due_until_the_rotation_holds_them_and_dropped_once_another_replaced_it() {
        let mut state = LedgerState::new("10.1.0.0/24".parse().unwrap());
        state.apply(1, &rotation("older", "old", &[]));
        let outbox = Outbox::default();
        outbox.hold("new".into(), "old".into(), vec![page("a"), page("b")]);
        // Not applied here yet: nothing due, nothing let go.
        assert!(outbox.due(&state).is_empty());
        state.apply(2, &rotation("old", "new", &["a", "b"]));
        assert_eq!(outbox.due(&state), vec![page("a"), page("b")]);
        // One page committed (through this node or another): only the other is due.
        assert_eq!(state.apply(3, &page("a")), Outcome::Done);
        assert_eq!(outbox.due(&state), vec![page("b")]);
        assert_eq!(state.apply(4, &page("b")), Outcome::Done);
        assert!(outbox.due(&state).is_empty());
        assert!(outbox.lock().is_none(), "let go once all are in");
        // Another rotation committed in place of the one held: its pages are let go.
        outbox.hold("mine".into(), "new".into(), vec![page("c")]);
        assert!(outbox.due(&state).is_empty(), "not applied here yet");
        assert!(outbox.lock().is_some());
        state.apply(5, &rotation("new", "theirs", &[]));
        assert!(outbox.due(&state).is_empty());
        assert!(outbox.lock().is_none());
    }
}
