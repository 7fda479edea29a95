//! The replay window of a receiving session: accepts each counter once, and only counters no
//! older than [`WINDOW`] behind the newest accepted one (RFC 6479's ring of bitmap blocks, as
//! WireGuard does it). Pure and allocation-free; the receive path asks it only after a frame's
//! tag verified.

/// Bits per bitmap block.
const BLOCK_BITS: u64 = 64;
/// Blocks in the ring (a power of two).
const BLOCKS: usize = 64;
/// How far behind the newest accepted counter an older one may still be accepted: 4,032
/// packets (the issue asks for at least 2,048). One block of the ring is the one being
/// recycled, hence one block less than the ring.
pub const WINDOW: u64 = (BLOCKS as u64 - 1) * BLOCK_BITS;

/// Counters seen by one receiving session.
#[derive(Debug, Clone)]
pub struct ReplayWindow {
    /// The newest accepted counter, once one is.
    top: Option<u64>,
    bitmap: [u64; BLOCKS],
}

impl Default for ReplayWindow {
    fn default() -> Self {
        ReplayWindow {
            top: None,
            bitmap: [0; BLOCKS],
        }
    }
}

impl ReplayWindow {
    /// Accepts `counter` (and remembers it) unless it was seen or is too old.
    pub fn accept(&mut self, counter: u64) -> bool {
        let block = counter / BLOCK_BITS;
        match self.top {
            Some(top) if counter <= top => {
                if top - counter >= WINDOW {
                    return false;
                }
            }
            top => {
                // Newer than anything so far: recycle the blocks between the old top and this
                // one (all of them on a jump of a whole ring or more, or at the first counter).
                let (first, count) = match top {
                    Some(top) => {
                        let current = top / BLOCK_BITS;
                        (current + 1, (block - current).min(BLOCKS as u64))
                    }
                    None => (0, BLOCKS as u64),
                };
                for i in 0..count {
                    self.bitmap[slot(first + i)] = 0;
                }
                self.top = Some(counter);
            }
        }
        let bit = 1u64 << (counter % BLOCK_BITS);
        let entry = &mut self.bitmap[slot(block)];
        if *entry & bit != 0 {
            return false;
        }
        *entry |= bit;
        true
    }
}

fn slot(block: u64) -> usize {
    (block % BLOCKS as u64) as usize
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use proptest::prelude::*;

    use super::*;

    /// The rule the window implements, with unbounded memory.
    #[derive(Default)]
    struct Model {
        top: Option<u64>,
        seen: HashSet<u64>,
    }

    impl Model {
        fn accept(&mut self, counter: u64) -> bool {
            let fresh = !self.seen.contains(&counter);
            let recent = self
                .top
                .is_none_or(|top| counter > top || top - counter < WINDOW);
            if fresh && recent {
                self.seen.insert(counter);
                self.top = Some(self.top.map_or(counter, |t| t.max(counter)));
                true
            } else {
                false
            }
        }
    }

    #[test]
    fn the_window_is_at_least_2048_packets() {
        let mut window = ReplayWindow::default();
        assert!(window.accept(10_000));
        assert!(window.accept(10_000 - 2048), "2048 behind is accepted");
        assert!(!window.accept(10_000 - 2048), "once");
        assert!(!window.accept(10_000 - WINDOW), "beyond the window");
        assert!(window.accept(10_000 - WINDOW + 1));
    }

    #[test]
    fn a_long_jump_forgets_the_old_window_without_accepting_it_twice() {
        let mut window = ReplayWindow::default();
        assert!(window.accept(5));
        assert!(window.accept(1_000_000));
        assert!(!window.accept(5));
        assert!(!window.accept(1_000_000));
        assert!(window.accept(999_999));
    }

    fn counters() -> impl Strategy<Value = Vec<u64>> {
        // Mostly close together (duplicates, reordering), with jumps across the window.
        proptest::collection::vec(
            prop_oneof![
                8 => 0u64..6000,
                1 => 0u64..40_000,
                1 => (u64::MAX - 10_000)..u64::MAX,
            ],
            1..600,
        )
    }

    proptest! {
        #[test]
        fn the_window_agrees_with_the_reference_model(counters in counters()) {
            let mut window = ReplayWindow::default();
            let mut model = Model::default();
            for counter in counters {
                prop_assert_eq!(window.accept(counter), model.accept(counter), "counter {}", counter);
            }
        }

        #[test]
        fn a_delivered_stream_replayed_in_any_order_is_refused_entirely(
            start in 0u64..1_000_000,
            shuffle in Just(()).prop_perturb(|_, mut rng| {
                let mut order: Vec<u64> = (0..300).collect();
                for i in (1..order.len()).rev() {
                    let j = (rng.next_u64() % (i as u64 + 1)) as usize;
                    order.swap(i, j);
                }
                order
            }),
        ) {
            let mut window = ReplayWindow::default();
            for offset in &shuffle {
                prop_assert!(window.accept(start + offset));
            }
            for offset in shuffle.iter().rev() {
                prop_assert!(!window.accept(start + offset));
            }
        }
    }
}
