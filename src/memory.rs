//! Hands memory the node has freed back to the kernel. glibc's malloc returns freed memory on
//! its own only from the top of each arena; what is freed below a block still in use stays
//! resident. A node allocates most while its mesh forms (a connection to many members, their
//! streams and buffers) and holds far less once idle connections close, so without this the
//! freed memory of those minutes stays in its resident set for good: at 20 nodes, 1.3 MiB of
//! about 11 MiB of private memory (`BENCHMARKS.md`, "What grows with the mesh"). The daemon
//! calls [`trim`] once a [`TRIM_EVERY`]. Other C libraries (musl) return memory by themselves;
//! there it does nothing.

use std::time::Duration;

/// How often the daemon hands freed memory back.
pub const TRIM_EVERY: Duration = Duration::from_secs(60);

/// Releases the free pages of every malloc arena to the kernel (glibc's `malloc_trim`). It
/// walks the arenas' free lists: 75 to 135 µs a call in the nodes of a 20-node mesh.
pub fn trim() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: `malloc_trim` takes no pointer and touches only the allocator's own free memory;
    // glibc documents it as safe to call from any thread at any time.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trimming_leaves_live_memory_whole() {
        let live: Vec<Vec<u8>> = (0..64u8).map(|i| vec![i; 4096]).collect();
        drop((0..256).map(|_| vec![0u8; 16 * 1024]).collect::<Vec<_>>());
        trim();
        for (i, block) in live.iter().enumerate() {
            assert!(block.iter().all(|b| usize::from(*b) == i));
        }
    }
}
