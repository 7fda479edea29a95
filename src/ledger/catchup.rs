//! Catch-up in pages: a follower that starts following, or fell behind, fetches a voter's whole
//! state. The state can be far larger than the one message a request travels in (a ledger of
//! 50 MB), so the voter encodes it at its applied raft index and serves that encoding in pages
//! of [`PAGE`] bytes; the follower asks page after page of the same encoding, named by its
//! index, and decodes the state when it has all of it.
//!
//! Any member may ask, and any member may be hostile, so encoding is bounded: a follower
//! starting a fetch gets the newest encoding while it is younger than [`FRESH`] (the feed
//! brings the entries applied since) and past the index the follower already holds (one that
//! fell behind needs entries the kept encoding lacks). One encoding is made at a time, off the
//! async workers, never sooner than [`REMAKE`] after the last (longer for a state of several
//! pages or one that is slow to encode), and only when the state is past what the follower
//! holds; at most [`KEPT`] are kept, the one served least recently dropped first. A request that
//! may not have a new encoding gets the newest kept one, waiting at most for an encoding
//! already under way. A follower whose encoding was dropped starts again. The follower takes at
//! most [`MAX_STATE`] bytes, only full pages where the previous one ended (the last excepted),
//! within [`FETCH_DEADLINE`], so a hostile voter can neither make it hold more, mix two
//! encodings, nor stall it for long.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

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

/// How long the newest encoding is served to followers starting a fetch.
pub const FRESH: Duration = Duration::from_secs(10);

/// How soon after the last encoding a voter makes a new one for a follower that needs a newer
/// state, at the earliest; sooner, the follower gets the newest kept one and asks again later.
/// Whoever asks, a voter encodes its state at most this often.
pub const REMAKE: Duration = Duration::from_secs(1);

/// A large state waits longer between encodings: this many times as long as the last one took
/// to make, so that askers keep a voter's encoding to a tenth of a core.
const REMAKE_COST: u32 = 10;

/// Encodings a voter keeps at most.
pub const KEPT: usize = 3;

/// How long one page may take.
pub const PAGE_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a whole fetch may take (64 MiB at about 1 Mbit/s).
pub const FETCH_DEADLINE: Duration = Duration::from_secs(600);

/// Failed pages a fetch tries again, in all.
const RETRIES: usize = 5;

/// How a voter's answer says the encoding asked for is no longer kept.
const GONE: &str = "no longer kept";

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

/// One encoding a voter keeps.
#[derive(Debug)]
struct Kept {
    position: u64,
    bytes: Arc<Vec<u8>>,
    made: Instant,
    served: Instant,
    /// How long making it took.
    took: Duration,
}

impl Kept {
    /// How long after this encoding the next may be made: [`REMAKE`], or ten times as long as
    /// making this one took; for a state of more than one page, at least [`FRESH`], so that a
    /// follower reading it page by page on a slow link is not pushed out of the [`KEPT`] by
    /// encodings a member asks for again and again.
    fn pace(&self) -> Duration {
        let floor = if self.bytes.len() > PAGE {
            FRESH
        } else {
            REMAKE
        };
        floor.max(self.took.saturating_mul(REMAKE_COST))
    }
}

/// The encodings a voter serves.
#[derive(Debug, Default)]
pub struct Encodings {
    kept: Mutex<Vec<Kept>>,
    /// Held while an encoding is made, so only one is made at a time.
    making: tokio::sync::Mutex<()>,
}

impl Encodings {
    /// The encoding at `position`, if kept. With `position` `None`, for a follower that holds
    /// the state at index `after` (0: none): the newest encoding while it is younger than
    /// [`FRESH`] at `now` and past `after`. Otherwise a new encoding of `current` (the state
    /// and the index it is at) when that helps and is allowed: the state is past `after` and
    /// the last encoding's [`Kept::pace`] has passed. Else the newest kept one, at once: a
    /// follower still behind stops at its first page ([`fetch`]) and asks again on a later
    /// feed message.
    pub async fn get(
        &self,
        position: Option<u64>,
        after: u64,
        current: impl FnOnce() -> (Arc<LedgerState>, u64),
        now: Instant,
    ) -> Result<(u64, Arc<Vec<u8>>), String> {
        if let Some(at) = position {
            return self.serve(|k| k.position == at, now).ok_or_else(|| {
                format!("the state at index {at} is {GONE}; start the catch-up again")
            });
        }
        let wanted = |k: &Kept| now.saturating_duration_since(k.made) < FRESH && k.position > after;
        if let Some(found) = self.newest(wanted, now) {
            return Ok(found);
        }
        let _making = self.making.lock().await;
        // Made by another request while this one waited.
        if let Some(found) = self.newest(wanted, now) {
            return Ok(found);
        }
        let (state, at) = current();
        // Nothing was applied since the kept encoding at this index: it is the state.
        if let Some(found) = self.serve(|k| k.position == at, now) {
            return Ok(found);
        }
        let held = at <= after
            || self
                .lock()
                .iter()
                .any(|k| now.saturating_duration_since(k.made) < k.pace());
        if held && let Some(found) = self.newest(|_| true, now) {
            return Ok(found);
        }
        let started = crate::clock::now();
        let bytes = off_the_workers(move || serde_json::to_vec(&*state))
            .await?
            .map_err(|e| e.to_string())?;
        let took = crate::clock::since(started);
        let bytes = Arc::new(bytes);
        let mut kept = self.lock();
        kept.retain(|k| k.position != at);
        kept.push(Kept {
            position: at,
            bytes: bytes.clone(),
            made: now,
            served: now,
            took,
        });
        while kept.len() > KEPT {
            let Some(idle) = kept
                .iter()
                .enumerate()
                .filter(|(_, k)| k.position != at)
                .min_by_key(|(_, k)| k.served)
                .map(|(i, _)| i)
            else {
                break;
            };
            kept.remove(idle);
        }
        kept.sort_by_key(|k| k.position);
        Ok((at, bytes))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Kept>> {
        self.kept.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The kept encoding `which` picks, marked served at `now`.
    fn serve(&self, which: impl Fn(&Kept) -> bool, now: Instant) -> Option<(u64, Arc<Vec<u8>>)> {
        let mut kept = self.lock();
        let found = kept.iter_mut().rev().find(|k| which(k))?;
        found.served = now;
        Some((found.position, found.bytes.clone()))
    }

    /// The newest kept encoding, when `fresh` holds for it.
    fn newest(&self, fresh: impl Fn(&Kept) -> bool, now: Instant) -> Option<(u64, Arc<Vec<u8>>)> {
        let newest = self.lock().iter().map(|k| k.position).max()?;
        self.serve(|k| k.position == newest && fresh(k), now)
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

/// What to ask the voter next, or the whole encoding.
#[derive(Debug, PartialEq, Eq)]
pub enum Next {
    /// The page of the encoding at `position` (`None`: the current one) from `offset`.
    Ask {
        position: Option<u64>,
        offset: u64,
    },
    Whole(Whole),
}

/// Every byte of one encoding, with the facts of its last page.
#[derive(Debug, PartialEq, Eq)]
pub struct Whole {
    last: Page,
    bytes: Vec<u8>,
}

impl Whole {
    /// The state the encoding holds.
    pub fn decode(self) -> Result<Catchup, String> {
        let state: LedgerState = serde_json::from_slice(&self.bytes)
            .map_err(|e| format!("the voter's state does not decode: {e}"))?;
        Ok(Catchup {
            cluster: self.last.cluster,
            leader: self.last.leader,
            voters: self.last.voters,
            position: self.last.position,
            state: Arc::new(state),
        })
    }
}

impl Assembly {
    /// What to ask next.
    pub fn next(&self) -> Next {
        Next::Ask {
            position: self.position,
            offset: self.bytes.len() as u64,
        }
    }

    /// Takes the page the voter answered; an answer that is not the page asked for, a page
    /// shorter than [`PAGE`] that is not the last, or a state past [`MAX_STATE`], is refused.
    pub fn take(&mut self, page: Page) -> Result<Next, String> {
        if page.total > MAX_STATE {
            return Err(format!(
                "the voter's state takes {} bytes; a follower takes at most {MAX_STATE}",
                page.total
            ));
        }
        if page.position != self.position.unwrap_or(page.position)
            || page.offset != self.bytes.len() as u64
            || (self.position.is_some() && page.total != self.total)
        {
            return Err("the voter answered another page than the one asked for".into());
        }
        let data = base64::engine::general_purpose::STANDARD
            .decode(page.data.as_bytes())
            .map_err(|e| format!("a page of the state is not base64: {e}"))?;
        let end = page.offset + data.len() as u64;
        if end > page.total || (end < page.total && data.len() != PAGE) {
            return Err("a page of the state does not fit its length".into());
        }
        self.position = Some(page.position);
        self.total = page.total;
        self.bytes.extend_from_slice(&data);
        if end < self.total {
            return Ok(self.next());
        }
        Ok(Next::Whole(Whole {
            last: Page {
                data: String::new(),
                ..page
            },
            bytes: std::mem::take(&mut self.bytes),
        }))
    }
}

/// Runs `work` (encoding or decoding a whole state, which may take a while) off the async
/// workers. In the library's own tests it runs inline: the ledger simulation runs every node on
/// one thread, and a blocking thread that finishes at a moment of the machine's would change
/// the order of its events from run to run.
async fn off_the_workers<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, String> {
    if cfg!(test) {
        return Ok(work());
    }
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| e.to_string())
}

/// Fetches a voter's whole state, page by page: `ask` sends one request (the position of the
/// encoding, `None` for the current one, and the offset) and gives the voter's answer. A
/// follower that holds index `after` stops at a first page older than that.
pub async fn fetch<F, Fut>(after: u64, mut ask: F) -> Result<Catchup, String>
where
    F: FnMut(Option<u64>, u64) -> Fut,
    Fut: std::future::Future<Output = Result<Page, String>>,
{
    let deadline = tokio::time::Instant::now() + FETCH_DEADLINE;
    let mut failures = 0;
    let mut assembly = Assembly::default();
    let mut next = assembly.next();
    loop {
        match next {
            Next::Whole(whole) => return off_the_workers(move || whole.decode()).await?,
            Next::Ask { position, offset } => {
                let answer = tokio::time::timeout_at(deadline, ask(position, offset))
                    .await
                    .map_err(|_| {
                        format!(
                            "the catch-up took longer than {} s",
                            FETCH_DEADLINE.as_secs()
                        )
                    })?;
                match answer {
                    // Older than what the follower holds: the rest would be thrown away.
                    Ok(page) if page.position < after => {
                        return Err(format!(
                            "the voter holds nothing past index {after} yet (its state is at {})",
                            page.position
                        ));
                    }
                    Ok(page) => next = assembly.take(page)?,
                    Err(e) if failures < RETRIES => {
                        failures += 1;
                        tracing::debug!(error = %e, "a catch-up page failed; asking again");
                        if e.contains(GONE) {
                            assembly = Assembly::default();
                        }
                        next = assembly.next();
                    }
                    Err(e) => return Err(e),
                }
            }
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
        let fetched = fetch(0, |position, offset| {
            asked += 1;
            let (encodings, state) = (&encodings, state.clone());
            async move {
                let (at, bytes) = encodings
                    .get(position, 0, || (state, 9), Instant::now())
                    .await?;
                let page = page(facts(), at, &bytes, offset)?;
                assert!(serde_json::to_vec(&page).unwrap().len() < MAX_MESSAGE);
                Ok(page)
            }
        })
        .await
        .unwrap();
        assert!(asked >= 4, "{asked} pages");
        assert!(fetched.state == state, "the state arrives whole");
        assert_eq!(fetched.position, 9);
        assert_eq!(fetched.voters, vec!["voter".to_string()]);
    }

    #[tokio::test]
    async fn starting_fetches_share_a_fresh_encoding_and_a_dropped_one_is_fetched_again() {
        let encodings = Encodings::default();
        let start = Instant::now();
        let made = std::sync::atomic::AtomicUsize::new(0);
        let current = |at: u64| {
            let made = &made;
            move || {
                made.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                (state_of(PAGE), at)
            }
        };
        // Within FRESH every start gets the newest encoding, whatever was applied since.
        let (first, _) = encodings.get(None, 0, current(5), start).await.unwrap();
        let (again, _) = encodings
            .get(None, 0, current(6), start + FRESH / 2)
            .await
            .unwrap();
        assert_eq!((first, again), (5, 5));
        // Later a new one is made; older ones stay while fewer than KEPT are kept.
        let mut now = start;
        for at in 6..6 + KEPT as u64 {
            now += FRESH;
            encodings.get(None, 0, current(at), now).await.unwrap();
        }
        assert_eq!(made.load(std::sync::atomic::Ordering::Relaxed), 1 + KEPT);
        // The one served least recently went first: 5 is gone, and a follower reading it is
        // told so.
        let gone = encodings
            .get(Some(5), 0, current(0), now)
            .await
            .unwrap_err();
        assert!(gone.contains(GONE), "{gone}");
        assert!(encodings.get(Some(6), 0, current(0), now).await.is_ok());

        // A fetch whose encoding is dropped midway starts again and ends whole.
        let old = state_of(2 * PAGE);
        let new = state_of(2 * PAGE + 100_000);
        let encodings = Encodings::default();
        let mut asked = 0;
        let fetched = fetch(0, |position, offset| {
            asked += 1;
            let (encodings, old, new) = (&encodings, old.clone(), new.clone());
            let first = asked == 1;
            async move {
                if !first
                    && encodings
                        .get(Some(1), 0, || (old.clone(), 1), start)
                        .await
                        .is_ok()
                {
                    // Writes went on and other followers started fetches later.
                    for later in 1..=KEPT as u32 {
                        let at = 100 + u64::from(later);
                        encodings
                            .get(None, 0, || (new.clone(), at), start + FRESH * later)
                            .await?;
                    }
                }
                let now = if first {
                    start
                } else {
                    start + FRESH * KEPT as u32
                };
                let (at, bytes) = encodings.get(position, 0, || (old, 1), now).await?;
                page(facts(), at, &bytes, offset)
            }
        })
        .await
        .unwrap();
        assert!(fetched.state == new, "the newer encoding is fetched whole");
    }

    fn positions(encodings: &Encodings) -> Vec<u64> {
        encodings.lock().iter().map(|k| k.position).collect()
    }

    #[tokio::test]
    async fn a_follower_behind_the_kept_encoding_gets_a_newer_one_but_not_sooner_than_remake() {
        let encodings = Encodings::default();
        let start = Instant::now();
        let current = |at: u64| move || (state_of(1000), at);
        let get = |after: u64, at: u64, now: Instant| {
            let encodings = &encodings;
            async move {
                encodings
                    .get(None, after, current(at), now)
                    .await
                    .unwrap()
                    .0
            }
        };
        assert_eq!(get(0, 5, start).await, 5);
        // A follower that holds 5 (it missed entry 6) learns nothing from the fresh encoding
        // at 5, but too soon after it gets it all the same, at once, and asks again later.
        assert_eq!(get(5, 7, start + REMAKE / 2).await, 5);
        assert_eq!(positions(&encodings), [5]);
        // Once REMAKE has passed, a new encoding is made for it.
        assert_eq!(get(5, 7, start + REMAKE).await, 7);
        // Followers starting afresh share it.
        assert_eq!(get(0, 8, start + REMAKE).await, 7);
        // One that claims to hold more than the voter has gets the kept one, however long it
        // asks: no new encoding helps it.
        assert_eq!(get(u64::MAX, 9, start + REMAKE * 3).await, 7);
        assert_eq!(get(u64::MAX, 10, start + REMAKE * 5).await, 7);
        // One that holds 7 while nothing was applied since gets the kept 7.
        assert_eq!(get(7, 7, start + REMAKE * 7).await, 7);
        assert_eq!(positions(&encodings), [5, 7]);
    }

    #[tokio::test]
    async fn a_state_of_several_pages_is_encoded_again_only_after_fresh() {
        let encodings = Encodings::default();
        let start = Instant::now();
        let big = state_of(2 * PAGE);
        let get = |after: u64, at: u64, now: Instant| {
            let (encodings, big) = (&encodings, big.clone());
            async move {
                encodings
                    .get(None, after, move || (big, at), now)
                    .await
                    .unwrap()
                    .0
            }
        };
        assert_eq!(get(0, 1, start).await, 1);
        // A follower reading it page by page on a slow link is not pushed out by encodings
        // asked for every second: a behind follower gets the kept one until FRESH has passed.
        assert_eq!(get(1, 2, start + REMAKE * 5).await, 1);
        assert_eq!(get(1, 2, start + FRESH).await, 2);
        assert_eq!(positions(&encodings), [1, 2]);
    }

    #[tokio::test]
    async fn a_follower_stops_at_a_first_page_older_than_what_it_holds() {
        let bytes = serde_json::to_vec(&*state_of(2 * PAGE)).unwrap();
        let mut asked = 0;
        let refused = fetch(7, |_, offset| {
            asked += 1;
            let answer = page(facts(), 5, &bytes, offset);
            async move { answer }
        })
        .await
        .unwrap_err();
        assert!(refused.contains("nothing past index 7"), "{refused}");
        assert_eq!(asked, 1, "no page after the first");
    }

    #[test]
    fn pages_that_are_not_the_ones_asked_for_are_refused() {
        let state = state_of(PAGE + 1);
        let bytes = serde_json::to_vec(&*state).unwrap();
        let first = page(facts(), 5, &bytes, 0).unwrap();
        let mut assembly = Assembly::default();
        assembly.take(first.clone()).unwrap();
        let second = PAGE as u64;
        // Another encoding, a page out of order, a length that changed, bad data.
        for (what, bad) in [
            (
                "position",
                Page {
                    position: 6,
                    offset: second,
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
                    offset: second,
                    ..first.clone()
                },
            ),
            (
                "data",
                Page {
                    data: "!!".into(),
                    offset: second,
                    ..first.clone()
                },
            ),
        ] {
            assert!(assembly.take(bad).is_err(), "{what}");
        }
        let mut huge = first.clone();
        huge.total = MAX_STATE + 1;
        assert!(Assembly::default().take(huge).is_err());
        let mut short = first.clone();
        short.data = base64::engine::general_purpose::STANDARD.encode(b"x");
        assert!(
            Assembly::default().take(short).is_err(),
            "a short page that is not the last"
        );
        let mut empty = first;
        empty.data.clear();
        assert!(Assembly::default().take(empty).is_err(), "no progress");
        assert!(page(facts(), 5, &bytes, bytes.len() as u64 + 1).is_err());
    }
}
