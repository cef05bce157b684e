//! Bounds: how much memory log lines may hold, and how much one container may send.
//!
//! [`Memory`] is one budget shared by every follower: the bytes of lines being assembled and of
//! finished lines not yet handed to the sink are charged to it, so a thousand busy containers
//! cannot grow the agent past it; a line that cannot be charged is cut (or dropped when nothing of
//! it fits) and counted. [`Budget`] is each container's own allowance of lines and bytes per
//! interval, so one server spamming its console cannot crowd out the others: past it, lines are
//! read (Docker's stream is never paused) and dropped, counted per container, and the episode is
//! logged once when it starts and once when it ends.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// The shared memory budget for lines in the source.
#[derive(Debug)]
pub(crate) struct Memory {
    used: AtomicUsize,
    peak: AtomicUsize,
    limit: usize,
}

impl Memory {
    pub(crate) fn new(limit: usize) -> Arc<Memory> {
        Arc::new(Memory {
            used: AtomicUsize::new(0),
            peak: AtomicUsize::new(0),
            limit,
        })
    }

    /// Takes as much of `n` as fits; returns what was taken.
    pub(crate) fn charge_upto(&self, n: usize) -> usize {
        let mut cur = self.used.load(Ordering::Relaxed);
        loop {
            let take = n.min(self.limit.saturating_sub(cur));
            if take == 0 {
                return 0;
            }
            match self.used.compare_exchange_weak(
                cur,
                cur + take,
                Ordering::AcqRel,
                Ordering::Relaxed,
            ) {
                Ok(_) => {
                    self.peak.fetch_max(cur + take, Ordering::Relaxed);
                    return take;
                }
                Err(v) => cur = v,
            }
        }
    }

    pub(crate) fn release(&self, n: usize) {
        let prev = self.used.fetch_sub(n, Ordering::AcqRel);
        debug_assert!(prev >= n, "released more than charged");
    }

    pub(crate) fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }

    pub(crate) fn peak(&self) -> usize {
        self.peak.load(Ordering::Relaxed)
    }

    pub(crate) fn limit(&self) -> usize {
        self.limit
    }
}

/// Bytes charged to [`Memory`], given back when dropped.
#[derive(Debug)]
pub(crate) struct Charge {
    mem: Arc<Memory>,
    n: usize,
}

impl Charge {
    pub(crate) fn new(mem: &Arc<Memory>, n: usize) -> Charge {
        Charge {
            mem: mem.clone(),
            n,
        }
    }
}

impl Charge {
    pub(crate) fn bytes(&self) -> usize {
        self.n
    }

    /// Takes over `other`'s bytes.
    pub(crate) fn absorb(&mut self, mut other: Charge) {
        self.n += std::mem::take(&mut other.n);
    }
}

impl Drop for Charge {
    fn drop(&mut self) {
        if self.n > 0 {
            self.mem.release(self.n);
        }
    }
}

/// What one container has read, sent and dropped since it was first followed by this process.
#[derive(Debug, Default)]
pub struct Counters {
    /// Lines read from Docker (skipped replays after a reconnect not included).
    pub lines: AtomicU64,
    pub bytes: AtomicU64,
    /// Lines the sink took for good (delivered or spooled).
    pub sent: AtomicU64,
    /// Lines dropped over the container's budget.
    pub dropped_budget: AtomicU64,
    /// Lines dropped because the shared memory budget was full.
    pub dropped_memory: AtomicU64,
    /// Lines the sink refused or gave up on.
    pub dropped_sink: AtomicU64,
    /// Lines cut at the line bound (kept up to it, marked).
    pub cut: AtomicU64,
    /// Frames or prefixes that did not decode (the stream was resynchronised).
    pub decode_errors: AtomicU64,
}

impl Counters {
    pub(crate) fn add(c: &AtomicU64, n: u64) {
        c.fetch_add(n, Ordering::Relaxed);
    }

    pub fn get(c: &AtomicU64) -> u64 {
        c.load(Ordering::Relaxed)
    }
}

/// One container's allowance of lines and bytes per interval.
pub(crate) struct Budget {
    interval: Duration,
    max_lines: u64,
    max_bytes: u64,
    window_start: Instant,
    lines: u64,
    bytes: u64,
    /// Drops in the current episode (lines, bytes); `None` when not dropping.
    episode: Option<(u64, u64, Instant)>,
    dropped_in_window: bool,
}

impl Budget {
    pub(crate) fn new(interval: Duration, max_lines: u64, max_bytes: u64, now: Instant) -> Budget {
        Budget {
            interval,
            max_lines,
            max_bytes,
            window_start: now,
            lines: 0,
            bytes: 0,
            episode: None,
            dropped_in_window: false,
        }
    }

    /// Whether a line of `bytes` may go; `container` names it in the episode's log lines.
    pub(crate) fn admit(&mut self, bytes: usize, now: Instant, container: &str) -> bool {
        if now.duration_since(self.window_start) >= self.interval {
            if !self.dropped_in_window
                && let Some((l, b, since)) = self.episode.take()
            {
                tracing::info!(
                    container,
                    dropped_lines = l,
                    dropped_bytes = b,
                    seconds = now.duration_since(since).as_secs(),
                    "container back under its log budget"
                );
            }
            self.window_start = now;
            self.lines = 0;
            self.bytes = 0;
            self.dropped_in_window = false;
        }
        let bytes = bytes as u64;
        if self.lines < self.max_lines && self.bytes.saturating_add(bytes) <= self.max_bytes {
            self.lines += 1;
            self.bytes += bytes;
            return true;
        }
        self.dropped_in_window = true;
        match &mut self.episode {
            Some((l, b, _)) => {
                *l += 1;
                *b += bytes;
            }
            None => {
                tracing::warn!(
                    container,
                    max_lines = self.max_lines,
                    max_bytes = self.max_bytes,
                    interval_s = self.interval.as_secs_f64(),
                    "container over its log budget: dropping lines until it calms down"
                );
                self.episode = Some((1, bytes, now));
            }
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_charges_and_releases() {
        let m = Memory::new(100);
        assert_eq!(m.charge_upto(60), 60);
        assert_eq!(m.charge_upto(41), 40);
        m.release(40);
        {
            let _c = Charge::new(&m, 40);
            assert_eq!(m.charge_upto(40), 40);
            assert_eq!(m.used(), 100);
            assert_eq!(m.charge_upto(1), 0);
        }
        assert_eq!(m.used(), 60);
        assert_eq!(m.peak(), 100);
        m.release(60);
        assert_eq!(m.used(), 0);
    }

    #[test]
    fn budget_per_interval_with_episodes() {
        let t0 = Instant::now();
        let mut b = Budget::new(Duration::from_secs(10), 3, 1000, t0);
        assert!(b.admit(10, t0, "c"));
        assert!(b.admit(10, t0, "c"));
        assert!(b.admit(10, t0, "c"));
        assert!(!b.admit(10, t0, "c"));
        assert_eq!(b.episode.map(|e| e.0), Some(1));
        // Next window: allowed again, the episode still open (it dropped in the last window).
        let t1 = t0 + Duration::from_secs(10);
        assert!(b.admit(10, t1, "c"));
        assert!(b.episode.is_some());
        // A whole window without drops ends it.
        assert!(b.admit(10, t1 + Duration::from_secs(10), "c"));
        assert!(b.episode.is_none());
        // Bytes count too.
        let mut b = Budget::new(Duration::from_secs(1), 100, 25, t0);
        assert!(b.admit(20, t0, "c"));
        assert!(!b.admit(20, t0, "c"));
        assert!(b.admit(5, t0, "c"));
    }
}
