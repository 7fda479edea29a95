//! Catch-up in pages: a follower that starts following, or fell behind, fetches a voter's whole
//! state. The state can be far larger than the one message a request travels in (a ledger of
//! 50 MB), so the voter encodes it once at its current raft index and serves that encoding in
//! pages of [`PAGE`] bytes; the follower asks page after page of the same encoding, named by
//! its index, and decodes the state when it has all of it.
//!
//! A voter keeps the last [`KEPT`] encodings, so followers catching up at once share them and a
//! follower is not cut off by a write in the middle of its fetch; one asking for an encoding
//! no longer kept starts again. The follower takes at most [`MAX_STATE`] bytes in all, each
//! page where the previous one ended, so a hostile voter can neither make it hold more nor
//! make it mix two encodings.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use serde::{Deserialize, Serialize};

use super::follower::{Catchup, Leader};
use super::state::{ClusterId, LedgerState};
use crate::p2p::protocol::MAX_MESSAGE;

/// Bytes of encoded state per page: base64 makes them a third larger, and a page with the
/// cluster's leader and voters stays under the message limit.
pub const PAGE: usize = 512 * 1024;

const _: () = assert!(PAGE.div_ceil(3) * 4 + 128 * 1024 < MAX_MESSAGE);

/// The largest state a follower takes, as for a raft snapshot.
pub const MAX_STATE: u64 = super::raft::snapshot::MAX_SNAPSHOT;

/// Encodings a voter keeps for followers fetching them.
const KEPT: usize = 2;

/// How long one page may take.
pub const PAGE_TIMEOUT: Duration = Duration::from_secs(10);

/// Fresh starts a fetch makes at most when the encoding it was reading is dropped.
const RESTARTS: usize = 3;

/// One page of a voter's state as the follower asked for it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Page {
    pub cluster: ClusterId,
    pub leader: Option<Leader>,
    pub voters: Vec<String>,
    /// The raft index the encoded state is at: the name of the encoding.
    pub position: u64,
    /// Bytes of the whole encoding.
    pub total: u64,
    /// Where this page starts.
    pub offset: u64,
    /// The page's bytes, base64.
    pub data: String,
}

/// The encodings a voter serves, newest last.
#[derive(Debug, Default)]
pub struct Encodings(Mutex<VecDeque<(u64, Arc<Vec<u8>>)>>);

impl Encodings {
    /// The encoding at `position`, if kept; with `position` `None`, the encoding of `current`
    /// (the state and the index it is at), made if it is not kept yet.
    pub fn get(
        &self,
        position: Option<u64>,
        current: impl FnOnce() -> (Arc<LedgerState>, u64),
    ) -> Result<(u64, Arc<Vec<u8>>), String> {
        let find = |kept: &VecDeque<(u64, Arc<Vec<u8>>)>, at: u64| {
            kept.iter()
                .find(|(p, _)| *p == at)
                .map(|(p, bytes)| (*p, bytes.clone()))
        };
        if let Some(at) = position {
            let kept = self.0.lock().unwrap_or_else(|p| p.into_inner());
            return find(&kept, at).ok_or_else(|| {
                format!("the state at index {at} is no longer kept; start the catch-up again")
            });
        }
        let (state, at) = current();
        if let Some(found) = find(&self.0.lock().unwrap_or_else(|p| p.into_inner()), at) {
            return Ok(found);
        }
        // Encoded outside the lock: a large state takes a while.
        let bytes = Arc::new(serde_json::to_vec(&*state).map_err(|e| e.to_string())?);
        let mut kept = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if find(&kept, at).is_none() {
            kept.push_back((at, bytes.clone()));
            while kept.len() > KEPT {
                kept.pop_front();
            }
        }
        Ok((at, bytes))
    }
}

/// The page of `bytes` (the encoding at `position`) from `offset`, with the cluster's facts.
pub fn page(
    facts: (ClusterId, Option<Leader>, Vec<String>),
    position: u64,
    bytes: &[u8],
    offset: u64,
) -> Result<Page, String> {
    let start = usize::try_from(offset)
        .ok()
        .filter(|start| *start <= bytes.len())
        .ok_or_else(|| format!("offset {offset} is past the state's {} bytes", bytes.len()))?;
    let end = (start + PAGE).min(bytes.len());
    let (cluster, leader, voters) = facts;
    Ok(Page {
        cluster,
        leader,
        voters,
        position,
        total: bytes.len() as u64,
        offset,
        data: base64::engine::general_purpose::STANDARD.encode(&bytes[start..end]),
    })
}

/// A follower's fetch in progress: the pages of one encoding, in order.
#[derive(Debug, Default)]
pub struct Assembly {
    /// The encoding being read (its position), once the first page came.
    position: Option<u64>,
    total: u64,
    bytes: Vec<u8>,
}

/// What to ask the voter next, or the state fetched.
#[derive(Debug, PartialEq, Eq)]
pub enum Next {
    /// The page of the encoding at `position` (`None`: the current one) from `offset`.
    Ask {
        position: Option<u64>,
        offset: u64,
    },
    Done(Box<Catchup>),
}

impl Assembly {
    /// What to ask first.
    pub fn first(&self) -> Next {
        Next::Ask {
            position: self.position,
            offset: self.bytes.len() as u64,
        }
    }

    /// Takes the page the voter answered; an answer that is not the page asked for, or that
    /// would take the state past [`MAX_STATE`], is refused.
    pub fn take(&mut self, page: Page) -> Result<Next, String> {
        if page.total > MAX_STATE {
            return Err(format!(
                "the voter's state takes {} bytes; a follower takes at most {MAX_STATE}",
                page.total
            ));
        }
        let expected = self.position.unwrap_or(page.position);
        if page.position != expected
            || page.offset != self.bytes.len() as u64
            || (self.position.is_some() && page.total != self.total)
        {
            return Err("the voter answered another page than the one asked for".into());
        }
        let data = base64::engine::general_purpose::STANDARD
            .decode(page.data.as_bytes())
            .map_err(|e| format!("a page of the state is not base64: {e}"))?;
        if data.is_empty() && page.offset < page.total
            || page.offset + data.len() as u64 > page.total
        {
            return Err("a page of the state does not fit its length".into());
        }
        self.position = Some(page.position);
        self.total = page.total;
        self.bytes.extend_from_slice(&data);
        if (self.bytes.len() as u64) < self.total {
            return Ok(self.first());
        }
        let state: LedgerState = serde_json::from_slice(&self.bytes)
            .map_err(|e| format!("the voter's state does not decode: {e}"))?;
        Ok(Next::Done(Box::new(Catchup {
            cluster: page.cluster,
            leader: page.leader,
            voters: page.voters,
            position: page.position,
            state: Arc::new(state),
        })))
    }
}

/// Fetches `peer`'s whole state, page by page: `ask` sends one request (the position of the
/// encoding, `None` for the current one, and the offset) and gives the voter's answer.
pub async fn fetch<F, Fut>(mut ask: F) -> Result<Catchup, String>
where
    F: FnMut(Option<u64>, u64) -> Fut,
    Fut: std::future::Future<Output = Result<Page, String>>,
{
    let mut restarts = 0;
    let mut assembly = Assembly::default();
    let mut next = assembly.first();
    loop {
        match next {
            Next::Done(catchup) => return Ok(*catchup),
            Next::Ask { position, offset } => match ask(position, offset).await {
                Ok(page) => next = assembly.take(page)?,
                // The encoding was dropped (writes went on meanwhile): start again.
                Err(e) if position.is_some() && restarts < RESTARTS => {
                    tracing::debug!(error = %e, "catch-up restarted");
                    restarts += 1;
                    assembly = Assembly::default();
                    next = assembly.first();
                }
                Err(e) => return Err(e),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::state::Command;

    const CLUSTER: ClusterId = ClusterId {
        created_at: 1,
        id: 2,
    };

    fn state_of(bytes: usize) -> Arc<LedgerState> {
        let mut state = LedgerState::new("10.1.0.0/24".parse().unwrap());
        state.apply(1, &Command::Genesis(CLUSTER));
        for i in 0..bytes / 50_000 + 1 {
            state.apply(
                i as u64 + 2,
                &Command::KvPut {
                    bucket: "b".into(),
                    key: i.to_string(),
                    value: "v".repeat(50_000),
                },
            );
        }
        Arc::new(state)
    }

    fn facts() -> (ClusterId, Option<Leader>, Vec<String>) {
        (CLUSTER, None, vec!["voter".into()])
    }

    #[tokio::test]
    async fn a_state_of_many_pages_arrives_whole_and_each_page_fits_a_message() {
        let state = state_of(3 * PAGE);
        let encodings = Encodings::default();
        let mut asked = 0;
        let fetched = fetch(|position, offset| {
            asked += 1;
            let answer = encodings
                .get(position, || (state.clone(), 9))
                .and_then(|(at, bytes)| page(facts(), at, &bytes, offset));
            if let Ok(page) = &answer {
                assert!(serde_json::to_vec(page).unwrap().len() < MAX_MESSAGE);
            }
            std::future::ready(answer)
        })
        .await
        .unwrap();
        assert!(asked >= 4, "{asked} pages");
        assert!(fetched.state == state, "the state arrives whole");
        assert_eq!(fetched.position, 9);
        assert_eq!(fetched.voters, vec!["voter".to_string()]);
    }

    #[tokio::test]
    async fn a_fetch_starts_again_when_its_encoding_is_dropped() {
        let old = state_of(2 * PAGE);
        let new = state_of(2 * PAGE + 100_000);
        let encodings = Encodings::default();
        let mut position = 1;
        let fetched = fetch(|at, offset| {
            // After each first page, writes move the voter on by two encodings.
            let answer = encodings
                .get(at, || {
                    position += 1;
                    (
                        if position > 2 {
                            new.clone()
                        } else {
                            old.clone()
                        },
                        position,
                    )
                })
                .and_then(|(at, bytes)| page(facts(), at, &bytes, offset));
            if at.is_none() && position == 2 {
                for later in [100, 101] {
                    encodings.get(None, || (new.clone(), later)).unwrap();
                }
            }
            std::future::ready(answer)
        })
        .await
        .unwrap();
        assert!(fetched.state == new, "the newer encoding is fetched whole");
    }

    #[test]
    fn pages_that_are_not_the_ones_asked_for_are_refused() {
        let state = state_of(PAGE + 1);
        let bytes = serde_json::to_vec(&*state).unwrap();
        let first = page(facts(), 5, &bytes, 0).unwrap();
        let mut assembly = Assembly::default();
        assembly.take(first.clone()).unwrap();
        // Another encoding, a page out of order, a length that changed, bad data.
        for (what, bad) in [
            (
                "position",
                Page {
                    position: 6,
                    offset: PAGE as u64,
                    ..first.clone()
                },
            ),
            (
                "offset",
                Page {
                    offset: 0,
                    ..first.clone()
                },
            ),
            (
                "total",
                Page {
                    total: first.total + 1,
                    offset: PAGE as u64,
                    ..first.clone()
                },
            ),
            (
                "data",
                Page {
                    data: "!!".into(),
                    offset: PAGE as u64,
                    ..first.clone()
                },
            ),
        ] {
            assert!(assembly.take(bad).is_err(), "{what}");
        }
        let mut huge = first.clone();
        huge.total = MAX_STATE + 1;
        assert!(Assembly::default().take(huge).is_err());
        let mut empty = first;
        empty.data.clear();
        assert!(Assembly::default().take(empty).is_err(), "no progress");
        assert!(page(facts(), 5, &bytes, bytes.len() as u64 + 1).is_err());
    }
}
