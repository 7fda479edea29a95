//! The pages of members' copies that a rotation made on this node still has to commit
//! ([`crate::ledger::state::ROTATION_PAGE`]). Only the node that made a rotation holds its
//! pages. Should one fail to commit (no leader for a while, an answer lost through a member that
//! forwarded it, the operator's request given up, the node restarted), the members it holds
//! copies for would get none and be locked out when the grace window closes. So the pages wait
//! in an [`Outbox`], from before the rotation is proposed, and [`deliver`] proposes each until
//! the ledger takes it or another rotation replaced this one. The daemon's outbox is kept in
//! the state directory ([`FILE_NAME`], 0600, written whole with [`crate::durable::write`] off
//! the async workers, [`Outbox::persist`]), so a node restarted before its pages committed goes
//! on proposing them.

use std::io::{self, Read as _};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::ledger::Ledger;
use crate::ledger::state::{Command, LedgerState, MAX_ROTATION_PAGES, page_digest};

/// The outbox's file in the state directory.
pub const FILE_NAME: &str = "rotation-pages";

/// The largest outbox file read: two rotations of 16 pages of 256 copies take about 2 MB.
const MAX_FILE: u64 = 16 << 20;

/// How often pages that did not commit are proposed again.
const RETRY: Duration = Duration::from_secs(2);

/// Rotations whose pages an outbox holds at once: a node may make a second rotation while its
/// own copy of the first is in a page still to come.
const ROTATIONS: usize = 2;

/// The pages of the last rotations this node made, until the ledger holds them.
#[derive(Debug, Clone, Default)]
pub struct Outbox(Arc<Shared>);

#[derive(Debug, Default)]
struct Shared {
    inner: Mutex<Inner>,
    /// The last change written to the file ([`Inner::changes`]), held while writing so that
    /// writes land in order.
    written: tokio::sync::Mutex<u64>,
}

#[derive(Debug, Default)]
struct Inner {
    held: Vec<Held>,
    /// Where the outbox is kept; `None` keeps it in memory only (tests of the ledger alone).
    file: Option<PathBuf>,
    /// Changes made so far; the file holds the outbox as of [`Shared::written`].
    changes: u64,
}

#[derive(Debug, Serialize, Deserialize)]
struct Held {
    /// Network id of the rotation the pages belong to.
    network: String,
    /// Whether this node's ledger has held that rotation as the last one: until then it may
    /// still commit, whatever rotation is the last.
    seen: bool,
    /// Each page's digest, and its command.
    pages: Vec<(String, Command)>,
}

impl Outbox {
    /// The outbox kept in `state_dir`, with the pages a run before left in it. A file that
    /// cannot be read is logged and replaced at the next change: its pages are lost, as they
    /// were before the outbox was kept (the operator can rotate again).
    pub fn kept_in(state_dir: &Path) -> Outbox {
        let file = state_dir.join(FILE_NAME);
        let held = match load(&file) {
            Ok(held) => held,
            Err(e) => {
                tracing::warn!(
                    file = %file.display(),
                    error = %e,
                    "the rotation pages kept from the last run cannot be read; members whose \
                     copies were in them get them only from a new rotation"
                );
                Vec::new()
            }
        };
        let pending: usize = held.iter().map(|h| h.pages.len()).sum();
        if pending > 0 {
            tracing::info!(
                pages = pending,
                "proposing again the rotation pages kept from the last run"
            );
        }
        Outbox(Arc::new(Shared {
            inner: Mutex::new(Inner {
                held,
                file: Some(file),
                changes: 0,
            }),
            written: tokio::sync::Mutex::new(0),
        }))
    }

    /// Holds `pages` ([`Command::RotationKeys`]) of the rotation to `network`, made and not yet
    /// proposed, beside those of the last rotation made before.
    pub fn hold(&self, network: String, pages: Vec<Command>) {
        let pages = pages
            .into_iter()
            .filter_map(|page| match &page {
                Command::RotationKeys { keys, .. } => Some((page_digest(keys), page)),
                _ => None,
            })
            .collect::<Vec<_>>();
        if pages.is_empty() {
            return;
        }
        let mut inner = self.lock();
        let held = &mut inner.held;
        held.retain(|h| h.network != network);
        held.push(Held {
            network,
            seen: false,
            pages,
        });
        // Past the bound, the oldest rotation the ledger never held as the last goes first
        // (its proposal most likely failed), never the one just made.
        while held.len() > ROTATIONS {
            let older = held.len() - 1;
            let at = held[..older].iter().position(|h| !h.seen).unwrap_or(0);
            held.remove(at);
        }
        inner.changes += 1;
    }

    /// Lets go of the pages of the rotation to `network`: its proposal was refused.
    pub fn release(&self, network: &str) {
        let mut inner = self.lock();
        let before = inner.held.len();
        inner.held.retain(|h| h.network != network);
        if inner.held.len() != before {
            inner.changes += 1;
        }
    }

    /// The pages the last rotation in `state` still awaits, of those held for it. Pages it
    /// holds are let go, and so are all of a rotation once it was the last and another
    /// replaced it. A rotation this node's ledger has not held as the last yet keeps its pages
    /// and has none due.
    pub fn due(&self, state: &LedgerState) -> Vec<Command> {
        let last = state.token_rotation();
        let mut inner = self.lock();
        let mut due = Vec::new();
        let mut changed = false;
        inner.held.retain_mut(|h| match last {
            Some(rotation) if rotation.network == h.network => {
                changed |= !h.seen;
                h.seen = true;
                let before = h.pages.len();
                h.pages
                    .retain(|(digest, _)| rotation.pages.contains(digest));
                changed |= h.pages.len() != before;
                due.extend(h.pages.iter().map(|(_, page)| page.clone()));
                !h.pages.is_empty()
            }
            _ => {
                changed |= h.seen;
                !h.seen
            }
        });
        if changed {
            inner.changes += 1;
        }
        due
    }

    /// Lets go of `page`: the ledger took it, or answered that it awaits it no longer.
    pub fn taken(&self, page: &Command) {
        let mut inner = self.lock();
        let before: usize = inner.held.iter().map(|h| h.pages.len()).sum();
        for h in inner.held.iter_mut() {
            h.pages.retain(|(_, p)| p != page);
        }
        inner.held.retain(|h| !h.pages.is_empty());
        let after: usize = inner.held.iter().map(|h| h.pages.len()).sum();
        if after != before {
            inner.changes += 1;
        }
    }

    fn holding(&self) -> bool {
        !self.lock().held.is_empty()
    }

    /// Writes the outbox to its file when it changed since the last write, off the async
    /// workers (a durable write of up to a few MB); an empty outbox removes the file. The write
    /// runs in a task of its own that holds the writer's lock until the file is in place, so a
    /// caller dropped meanwhile (a client that gave up) lets no later write overlap it. A failed
    /// write is logged: the pages are still proposed from memory.
    pub async fn persist(&self) {
        let shared = self.0.clone();
        let write = tokio::spawn(async move {
            let mut written = shared.written.lock().await;
            // Taken under the writer's lock: each write holds the outbox as of its turn.
            let (file, change, bytes) = {
                let inner = shared.inner.lock().unwrap_or_else(|e| e.into_inner());
                let Some(file) = inner.file.clone() else {
                    return;
                };
                if inner.changes <= *written {
                    return;
                }
                let bytes = (!inner.held.is_empty())
                    .then(|| serde_json::to_vec(&inner.held).expect("rotation pages serialize"));
                (file, inner.changes, bytes)
            };
            let target = file.clone();
            let outcome = tokio::task::spawn_blocking(move || match bytes {
                Some(bytes) => crate::durable::write(&target, &bytes, 0o600),
                None => match std::fs::remove_file(&target) {
                    Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
                    _ => Ok(()),
                },
            })
            .await
            .unwrap_or_else(|e| Err(io::Error::other(e)));
            match outcome {
                Ok(()) => *written = change,
                Err(e) => tracing::warn!(
                    file = %file.display(),
                    error = %e,
                    "cannot keep the rotation pages on disk; they are proposed all the same, \
                     but a restart before they commit loses them"
                ),
            }
        });
        let _ = write.await;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.0.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The rotations' pages kept in `file`, none when there is no file. Only pages of copies whose
/// digest is their own are taken back, at most [`MAX_ROTATION_PAGES`] per rotation: the file is
/// proposed to the ledger as it is, so it must never turn into another command.
fn load(file: &Path) -> io::Result<Vec<Held>> {
    let opened = match std::fs::File::open(file) {
        Ok(opened) => opened,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut bytes = Vec::new();
    opened.take(MAX_FILE + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > MAX_FILE {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("larger than {MAX_FILE} bytes"),
        ));
    }
    let mut held: Vec<Held> = serde_json::from_slice(&bytes)?;
    held.truncate(ROTATIONS);
    for h in &mut held {
        h.pages.retain(|(digest, page)| {
            matches!(page, Command::RotationKeys { keys, .. } if page_digest(keys) == *digest)
        });
        h.pages.truncate(MAX_ROTATION_PAGES);
    }
    held.retain(|h| !h.pages.is_empty());
    Ok(held)
}

/// Proposes the pages `outbox` has due whenever the ledger changes, and every [`RETRY`] while
/// it holds any (an empty outbox sets no timer), until `shutdown`. A page the ledger answers is
/// let go, whatever the outcome; one whose proposal fails is proposed again.
pub async fn deliver(outbox: Outbox, ledger: Ledger, shutdown: CancellationToken) {
    let mut changes = ledger.subscribe();
    let mut retry = tokio::time::interval(RETRY);
    retry.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let due = outbox.due(&ledger.state());
        outbox.persist().await;
        for page in due {
            let answer = tokio::select! {
                () = shutdown.cancelled() => return,
                answer = ledger.propose(page.clone()) => answer,
            };
            match answer {
                Ok(_) => outbox.taken(&page),
                Err(e) => {
                    tracing::info!(
                        error = %e,
                        "a page of the rotation's copies is not committed yet; proposing it again"
                    );
                    break;
                }
            }
        }
        outbox.persist().await;
        let holding = outbox.holding();
        tokio::select! {
            () = shutdown.cancelled() => return,
            changed = changes.changed() => if changed.is_err() { return },
            _ = retry.tick(), if holding => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::os::unix::fs::PermissionsExt as _;

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
    fn pages_are_due_until_the_rotation_holds_them_and_let_go_once_another_replaced_it() {
        let mut state = LedgerState::new("10.1.0.0/24".parse().unwrap());
        state.apply(1, &rotation("older", "old", &[]));
        let outbox = Outbox::default();
        outbox.hold("new".into(), vec![page("a"), page("b"), page("c")]);
        // Not applied here yet: nothing due, nothing let go.
        assert!(outbox.due(&state).is_empty());
        // Another rotation is the last for a moment: this one may still commit after it.
        state.apply(2, &rotation("old", "theirs", &[]));
        assert!(outbox.due(&state).is_empty());
        state.apply(3, &rotation("old", "new", &["a", "b", "c"]));
        assert_eq!(outbox.due(&state), vec![page("a"), page("b"), page("c")]);
        // One page committed (through this node or another), one answered: neither is due.
        assert_eq!(state.apply(4, &page("a")), Outcome::Done);
        outbox.taken(&page("b"));
        assert_eq!(outbox.due(&state), vec![page("c")]);
        assert_eq!(state.apply(5, &page("c")), Outcome::Done);
        assert!(outbox.due(&state).is_empty());
        assert!(!outbox.holding(), "let go once all are in");
        // Replaced once it was the last: its pages are let go.
        outbox.hold("mine".into(), vec![page("d")]);
        state.apply(6, &rotation("new", "mine", &["d"]));
        assert_eq!(outbox.due(&state), vec![page("d")]);
        state.apply(7, &rotation("new", "theirs", &[]));
        assert!(outbox.due(&state).is_empty());
        assert!(!outbox.holding());
    }

    #[tokio::test]
    async fn a_kept_outbox_gives_a_restarted_node_the_pages_it_still_had_to_propose() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join(FILE_NAME);
        let mut state = LedgerState::new("10.1.0.0/24".parse().unwrap());
        let outbox = Outbox::kept_in(dir.path());
        outbox.hold("new".into(), vec![page("a"), page("b")]);
        outbox.persist().await;
        let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        state.apply(1, &rotation("old", "new", &["a", "b"]));
        assert_eq!(outbox.due(&state), vec![page("a"), page("b")]);
        outbox.taken(&page("a"));
        outbox.persist().await;
        drop(outbox);
        // Restarted: the page not yet taken is due again, and it is the rotation's own.
        let outbox = Outbox::kept_in(dir.path());
        assert_eq!(outbox.due(&state), vec![page("b")]);
        // Restarted once the rotation was replaced: nothing is due and the file goes.
        state.apply(2, &rotation("new", "theirs", &[]));
        let outbox = Outbox::kept_in(dir.path());
        assert!(outbox.due(&state).is_empty());
        outbox.persist().await;
        assert!(!file.exists());
    }

    #[tokio::test]
    async fn a_kept_page_is_taken_back_only_as_the_page_its_digest_names() {
        let dir = tempfile::tempdir().unwrap();
        let outbox = Outbox::kept_in(dir.path());
        outbox.hold("new".into(), vec![page("a"), page("b")]);
        outbox.persist().await;
        // Edited on disk: the first page swapped for another command under its digest.
        let file = dir.path().join(FILE_NAME);
        let mut kept: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
        kept[0]["pages"][0][1] = serde_json::to_value(Command::Deny { peer: "x".into() }).unwrap();
        std::fs::write(&file, serde_json::to_vec(&kept).unwrap()).unwrap();
        let mut state = LedgerState::new("10.1.0.0/24".parse().unwrap());
        state.apply(1, &rotation("old", "new", &["a", "b"]));
        assert_eq!(Outbox::kept_in(dir.path()).due(&state), vec![page("b")]);
    }

    #[tokio::test]
    async fn a_damaged_outbox_file_starts_an_empty_outbox_and_is_replaced() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(FILE_NAME), b"{ not json").unwrap();
        let outbox = Outbox::kept_in(dir.path());
        assert!(!outbox.holding());
        outbox.hold("new".into(), vec![page("a")]);
        outbox.persist().await;
        assert!(Outbox::kept_in(dir.path()).holding());
    }

    #[test]
    fn an_outbox_holds_two_rotations_and_lets_one_never_seen_go_first() {
        let outbox = Outbox::default();
        let held = |outbox: &Outbox| -> Vec<String> {
            outbox
                .lock()
                .held
                .iter()
                .map(|h| h.network.clone())
                .collect()
        };
        for network in ["one", "two", "three"] {
            outbox.hold(network.into(), vec![page(network)]);
        }
        assert_eq!(held(&outbox), ["two", "three"]);
        // "two" committed and is the last; "three" and then "four" were refused or lost: the
        // pages of "two" stay.
        let mut state = LedgerState::new("10.1.0.0/24".parse().unwrap());
        state.apply(1, &rotation("one", "two", &["two"]));
        assert_eq!(outbox.due(&state), vec![page("two")]);
        outbox.hold("four".into(), vec![page("four")]);
        assert_eq!(held(&outbox), ["two", "four"]);
        outbox.release("four");
        assert_eq!(held(&outbox), ["two"]);
    }
}
