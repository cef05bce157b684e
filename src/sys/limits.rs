//! Process limits the agent adjusts for itself.

/// Raises the soft limit on open descriptors to the hard one and returns the new soft limit. The
/// samplers keep one descriptor per file they re-read (about 10 per container with cgroup v1,
/// plus one per process for disk bytes), so a node with a few hundred containers passes the usual
/// soft limit of 1024; past it every new container would fail with EMFILE.
pub(crate) fn raise_fd_limit() -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain getrlimit/setrlimit on a valid struct.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
    lim.rlim_cur
}

/// The current soft limit on open descriptors.
pub(crate) fn fd_limit() -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain getrlimit on a valid struct.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } == 0 {
        lim.rlim_cur
    } else {
        1024
    }
}

/// Tunes glibc's malloc for a process that builds one large request per cycle:
///
/// - **one arena**: by default every thread that allocates gets its own (up to 8 per core), so a
///   cycle's transient request, built on one worker thread and compressed and sent on another,
///   is held twice: at 1000 containers the peak went from 50.7 to 38.4 MiB with one arena, at no
///   measurable CPU cost;
/// - **a fixed mmap threshold of 256 KiB**: glibc otherwise raises it to the size of the largest
///   block freed (up to 32 MiB), after which the request buffer (1.8 MB at 1000 containers) comes
///   from the heap and leaves it fragmented and held; mapped, it goes back to the system when the
///   request has been sent (docs/benchmarks.md#memory).
///
/// Call before any thread starts.
pub(crate) fn limit_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets tuning parameters; both are documented glibc options.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
        libc::mallopt(libc::M_MMAP_THRESHOLD, 256 << 10);
    }
}
