//! Hands memory the node has freed back to the kernel. glibc's malloc returns freed memory on
//! its own only from the top of each arena; what is freed below a block still in use stays
//! resident. A node allocates most while its mesh forms (a connection to many members, their
//! streams and buffers) and holds far less once idle connections close, so without this the
//! freed memory of those minutes stays in its resident set for good: at 20 nodes, 1.3 MiB of
//! about 11 MiB of private memory (`BENCHMARKS.md`, "What grows with the mesh"). The daemon
//! calls [`trim`] once a [`TRIM_EVERY`]. Other C libraries (musl) return memory by themselves;
//! there it does nothing.
//!
//! And it keeps large buffers out of the arenas ([`configure`], at start): a node allocates
//! buffers of megabytes it mostly never writes (the QUIC endpoints' receive buffers, 3 MB each;
//! the packet thread's batches). Mapped on their own, the pages never written are never backed.
//! glibc maps a large allocation on its own (when no free block of the arena fits it) only
//! above a threshold that it raises each time such a mapping is freed; after formation freed
//! one, a later large buffer came from an arena, zeroed there page by page, and some nodes of
//! an idle 20-node mesh held 3 MiB more than the others (`BENCHMARKS.md`, "Large buffers mapped
//! on their own"). It also has every thread allocate from one arena, where glibc gives each
//! thread that allocates an arena of its own whose free space no other can use: at 20 nodes one
//! arena saved 0.4 MiB (the two async workers' arenas held 2.0 to 2.4 MiB each), and the shared
//! arena's lock cost the DNS server's threads no answers a second (each thread keeps a small
//! cache of freed blocks that needs no lock).

use std::time::Duration;

/// The size from which an allocation gets a mapping of its own: glibc's default, held fixed.
pub const MMAP_THRESHOLD: usize = 128 * 1024;

/// Sets the C library's allocator for a long-running node: an allocation of [`MMAP_THRESHOLD`]
/// or more that no free block of the arena fits gets a mapping of its own, and the threshold
/// stays there (setting it turns glibc's raising of it off); all threads allocate from one
/// arena. Call it first, before any thread starts.
pub fn configure() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: `mallopt` takes no pointer. glibc reads and raises these settings without a lock,
    // hence the call before other threads exist (first in `main`). A refusal (0) leaves the
    // default.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD as libc::c_int);
        libc::mallopt(libc::M_ARENA_MAX, 1);
    }
}

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

    /// Runs the check in a process of its own: in one shared with other tests, their freed
    /// blocks could be left in the arena it reads, or their freed mappings raise the threshold
    /// between the setting and the check.
    #[cfg(all(target_os = "linux", target_env = "gnu", target_pointer_width = "64"))]
    #[test]
    fn a_large_buffer_is_mapped_on_its_own_after_a_larger_one_was_freed() {
        const NAME: &str =
            "memory::tests::a_large_buffer_is_mapped_on_its_own_after_a_larger_one_was_freed";
        const ALONE: &str = "WEFT_MEMORY_TEST_ALONE";
        if std::env::var_os(ALONE).is_none() {
            let alone = std::process::Command::new(std::env::current_exe().expect("a path"))
                .args(["--exact", NAME, "--nocapture"])
                .env(ALONE, "1")
                .output()
                .expect("the test binary runs again");
            assert!(
                alone.status.success(),
                "the check failed in a process of its own:\n{}{}",
                String::from_utf8_lossy(&alone.stdout),
                String::from_utf8_lossy(&alone.stderr)
            );
            return;
        }
        configure();
        // Without the fixed threshold, freeing this mapping would raise it past 16 MiB.
        drop(std::hint::black_box(vec![1u8; 16 << 20]));
        let len = 8 << 20;
        let buffer = std::hint::black_box(vec![0u8; len]);
        // SAFETY: the pointer is a live allocation of the global allocator, which is malloc.
        let usable = unsafe { libc::malloc_usable_size(buffer.as_ptr().cast_mut().cast()) };
        // SAFETY: `sysconf` takes no pointer.
        let page = usize::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) }).expect("a size");
        // glibc maps whole pages for the block and its 8-byte header, the request rounded up
        // to 16 bytes and 8 more, and all is usable but 16 bytes; a block of the arena holds
        // only the rounded request (`len + 8` usable here).
        assert_eq!(usable, (len + 24).next_multiple_of(page) - 16);
    }

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
