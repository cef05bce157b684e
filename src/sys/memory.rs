//! The agent's own heap, kept from creeping.
//!
//! Found with heaptrack and /proc/<pid>/smaps on a run of 0.1 s cycles (docs/benchmarks.md#soak):
//! the live heap is flat (≈ 370 KiB from the first minute on), yet RSS grew ~100 bytes per cycle
//! for over an hour of 1 s cycles before levelling off about 1 MiB higher (the ~13 kB/min at 1 s
//! that was reported, watched for 30 minutes). The growth was in glibc's malloc
//! arenas: each thread that allocates (two runtime workers, the GPU thread) gets an arena of its
//! own, and every cycle's few thousand short-lived allocations, freed on another thread than the
//! one that made them, left free memory behind that the arenas kept resident. Two settings halve
//! it and end it sooner (the soak then shows RSS flat after ~4,000 cycles): one arena for the
//! whole process (the agent allocates little, so there is nothing to contend for), and returning
//! free pages to the kernel every [`TRIM_EVERY`] node cycles.

/// Node cycles between two trims: once a minute at a 1 s interval; a trim of this heap costs
/// tens of microseconds.
pub(crate) const TRIM_EVERY: u64 = 60;

/// One malloc arena for the process, and a fixed mmap threshold of 256 KiB: glibc otherwise
/// raises the threshold to the size of the largest block freed (up to 32 MiB), after which a
/// cycle's request buffer (1.8 MB at 1000 containers) comes from the heap and leaves it
/// fragmented and held; mapped, it goes back to the kernel once sent. One arena also keeps a
/// request built on one thread and compressed on another from being held twice (1000
/// containers: 50.7 → 38.4 MiB peak; docs/benchmarks.md#memory).
///
/// Call once at start, before the runtime's threads exist.
pub fn limit_arenas() {
    #[cfg(target_env = "gnu")]
    // SAFETY: mallopt only changes allocator parameters; both are documented glibc options.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
        libc::mallopt(libc::M_MMAP_THRESHOLD, 256 << 10);
    }
}

/// Gives free heap pages back to the kernel.
pub(crate) fn trim() {
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim has no preconditions.
    unsafe {
        libc::malloc_trim(0);
    }
}
