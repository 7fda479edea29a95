//! The randomness the ledger's decisions draw: raft's election timeouts, new raft node and
//! cluster ids, which peers are asked first. In the daemon it is the thread's own generator
//! (`rand`'s `ThreadRng`, a CSPRNG seeded from the OS). The ledger simulation seeds it for its
//! thread ([`seed_thread`]), together with tokio's scheduler, so that a seed replays its whole
//! run, not only its schedule. Secrets (keys, nonces, MACs) never draw from it: they come from
//! the OS (`OsRng`), in tests too.

use std::cell::RefCell;

use rand::RngCore;
#[cfg(test)]
use rand::SeedableRng as _;
use rand::rngs::StdRng;

thread_local! {
    /// This thread's seeded generator, while a simulated run holds it.
    static SEEDED: RefCell<Option<StdRng>> = const { RefCell::new(None) };
}

/// A generator that draws from this thread's chance, as `rand::thread_rng()` draws from the
/// thread's generator: a handle, cheap to make wherever a draw is needed.
#[derive(Debug, Default, Clone, Copy)]
pub struct Chance;

impl Chance {
    fn draw<T>(f: impl FnOnce(&mut dyn RngCore) -> T) -> T {
        SEEDED.with_borrow_mut(|seeded| match seeded {
            Some(rng) => f(rng),
            None => f(&mut rand::thread_rng()),
        })
    }
}

impl RngCore for Chance {
    fn next_u32(&mut self) -> u32 {
        Chance::draw(|rng| rng.next_u32())
    }

    fn next_u64(&mut self) -> u64 {
        Chance::draw(|rng| rng.next_u64())
    }

    fn fill_bytes(&mut self, dest: &mut [u8]) {
        Chance::draw(|rng| rng.fill_bytes(dest));
    }

    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand::Error> {
        Chance::draw(|rng| rng.try_fill_bytes(dest))
    }
}

/// Seeds this thread's chance with `seed`, or gives it back its own generator (`None`).
#[cfg(test)]
pub fn seed_thread(seed: Option<u64>) {
    SEEDED.set(seed.map(StdRng::seed_from_u64));
}

#[cfg(test)]
mod tests {
    use rand::Rng as _;

    use super::{Chance, seed_thread};

    #[test]
    fn a_seeded_thread_draws_the_same_numbers_again_and_its_own_once_unseeded() {
        let draw = || -> Vec<u64> { (0..8).map(|_| Chance.r#gen()).collect() };
        seed_thread(Some(7));
        let first = draw();
        seed_thread(Some(7));
        assert_eq!(draw(), first);
        seed_thread(None);
        assert_ne!(draw(), first);
    }
}
