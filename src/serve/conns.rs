//! The endpoint's connections, bounded: at most [`MAX_CONNECTIONS`] live at once, and a new one
//! past the cap closes another. Why evict instead of refusing: refusing lets whoever holds the
//! slots (2,000 connections that never finish their headers) starve `/healthz` until their
//! timeouts run out; evicting lets the probe that just arrived in, and costs a legitimate client
//! at most a retry.
//!
//! Which one goes, in this order: the oldest connection that has been read from but has not sent
//! a complete request (a slow or stuck client); else the oldest not read from yet; else the oldest
//! served one (idle keep-alive). A connection that was just accepted has had no chance to send
//! its request yet, so it goes after the stuck ones: a probe accepted in the middle of a flood is
//! not closed before its first read.
//!
//! Accept errors are handled here too: out of descriptors (`EMFILE`, `ENFILE`) or memory, up to
//! 16 connections are closed (same order) to free some and accepting continues; with nothing to
//! close, accepting backs off (10 ms doubling to 1 s) instead of spinning. One log line when an
//! episode starts, one a minute while it lasts, one when it has been over for 10 s.

use parking_lot::Mutex;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::{Duration, Instant};
use tokio::task::AbortHandle;

/// Live connections at most. The endpoint serves a scraper and a few probes; each connection
/// holds at most one 8 KiB read buffer while it reads a request.
pub(crate) const MAX_CONNECTIONS: usize = 128;

/// Where a connection is: accepted, not read from yet.
pub(crate) const ACCEPTED: u8 = 0;
/// Read from, no complete request head yet.
pub(crate) const READING: u8 = 1;
/// At least one complete request head arrived.
pub(crate) const SERVED: u8 = 2;

struct Entry {
    abort: AbortHandle,
    state: Arc<AtomicU8>,
}

#[derive(Default)]
struct Inner {
    next_id: u64,
    live: BTreeMap<u64, Entry>,
    /// Evictions since the last log line about them, and when that was.
    evicted_unlogged: u64,
    last_evict_log: Option<Instant>,
}

/// The registry of live connections.
pub(crate) struct Conns {
    cap: usize,
    inner: Mutex<Inner>,
}

/// Removes its connection from the registry when the connection's task ends or is aborted.
pub(crate) struct Guard {
    conns: Arc<Conns>,
    id: u64,
}

impl Drop for Guard {
    fn drop(&mut self) {
        self.conns.inner.lock().live.remove(&self.id);
    }
}

impl Conns {
    pub(crate) fn new(cap: usize) -> Arc<Conns> {
        Arc::new(Conns {
            cap: cap.max(1),
            inner: Mutex::new(Inner::default()),
        })
    }

    pub(crate) fn len(&self) -> usize {
        self.inner.lock().live.len()
    }

    /// Admits a connection: evicts one first when at the cap, then registers the task `spawn`
    /// starts (under the lock, so the task's guard cannot run before its entry exists).
    pub(crate) fn admit(self: &Arc<Self>, spawn: impl FnOnce(Guard, Arc<AtomicU8>) -> AbortHandle) {
        let mut inner = self.inner.lock();
        let victim = if inner.live.len() >= self.cap {
            evict_locked(&mut inner, self.cap)
        } else {
            None
        };
        let id = inner.next_id;
        inner.next_id += 1;
        let state = Arc::new(AtomicU8::new(ACCEPTED));
        let guard = Guard {
            conns: self.clone(),
            id,
        };
        let abort = spawn(guard, state.clone());
        inner.live.insert(id, Entry { abort, state });
        drop(inner);
        // Outside the lock: the evicted task's guard takes it when the task is dropped.
        if let Some(v) = victim {
            v.abort();
        }
    }

    /// Closes one connection (in the order of the module doc); `false` when there is none.
    pub(crate) fn evict_one(&self) -> bool {
        let victim = evict_locked(&mut self.inner.lock(), self.cap);
        victim.map(|v| v.abort()).is_some()
    }
}

/// Takes the connection to close out of the registry; the caller aborts it after unlocking.
fn evict_locked(inner: &mut Inner, cap: usize) -> Option<AbortHandle> {
    let oldest_in = |want: u8| {
        inner
            .live
            .iter()
            .find(|(_, e)| e.state.load(Ordering::Relaxed) == want)
            .map(|(id, _)| *id)
    };
    let id = oldest_in(READING)
        .or_else(|| oldest_in(ACCEPTED))
        .or_else(|| oldest_in(SERVED))?;
    let victim = inner.live.remove(&id)?.abort;
    inner.evicted_unlogged += 1;
    let now = Instant::now();
    if inner
        .last_evict_log
        .is_none_or(|t| now.duration_since(t) >= Duration::from_secs(60))
    {
        tracing::warn!(
            max_connections = cap,
            closed = inner.evicted_unlogged,
            "local endpoint: too many connections; closing the oldest that sent no request (logged at most once a minute)"
        );
        inner.evicted_unlogged = 0;
        inner.last_evict_log = Some(now);
    }
    Some(victim)
}

/// What the accept loop does after an error.
pub(crate) struct AcceptErrors {
    backoff: Duration,
    /// Errors since the episode's last log line.
    unlogged: u64,
    /// When the current episode's errors were last logged, and the last error.
    logged_at: Option<Instant>,
    last_error: Option<Instant>,
}

const BACKOFF_START: Duration = Duration::from_millis(10);
const BACKOFF_MAX: Duration = Duration::from_secs(1);
/// An episode is over after this long without an error.
const EPISODE_QUIET: Duration = Duration::from_secs(10);
const EPISODE_REMINDER: Duration = Duration::from_secs(60);
/// Connections closed per accept that failed for want of descriptors.
const EVICT_ON_EXHAUSTION: usize = 16;

impl AcceptErrors {
    pub(crate) fn new() -> Self {
        AcceptErrors {
            backoff: BACKOFF_START,
            unlogged: 0,
            logged_at: None,
            last_error: None,
        }
    }

    /// A connection was accepted.
    pub(crate) fn ok(&mut self) {
        self.backoff = BACKOFF_START;
        if let Some(last) = self.last_error
            && last.elapsed() >= EPISODE_QUIET
        {
            tracing::info!(
                errors = self.unlogged,
                "local endpoint: accepting connections normally again"
            );
            self.last_error = None;
            self.logged_at = None;
            self.unlogged = 0;
        }
    }

    /// Handles one accept error; returns how long to wait before accepting again.
    pub(crate) fn failed(&mut self, e: &std::io::Error, conns: &Conns) -> Duration {
        let now = Instant::now();
        self.last_error = Some(now);
        self.unlogged += 1;
        if self
            .logged_at
            .is_none_or(|t| now.duration_since(t) >= EPISODE_REMINDER)
        {
            tracing::warn!(
                error = %e,
                errors = self.unlogged,
                live = conns.len(),
                "local endpoint: accept failed (logged at most once a minute)"
            );
            self.logged_at = Some(now);
            self.unlogged = 0;
        }
        let exhausted = matches!(
            e.raw_os_error(),
            Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
        );
        if !exhausted {
            // The peer went away between SYN and accept (ECONNABORTED and the like): nothing to
            // wait for.
            return Duration::ZERO;
        }
        // Free several at once: each accept now needs a descriptor, and a closed connection
        // gives its one back only when its task has been dropped.
        let mut freed = 0;
        while freed < EVICT_ON_EXHAUSTION && conns.evict_one() {
            freed += 1;
        }
        if freed > 0 {
            return Duration::ZERO;
        }
        let wait = self.backoff;
        self.backoff = (self.backoff * 2).min(BACKOFF_MAX);
        wait
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type Task = Option<tokio::task::JoinHandle<()>>;

    fn admit(conns: &Arc<Conns>, states: &mut Vec<Arc<AtomicU8>>, tasks: &mut Vec<Task>) {
        conns.admit(|guard, state| {
            states.push(state);
            let t = tokio::spawn(async move {
                let _g = guard;
                std::future::pending::<()>().await
            });
            let a = t.abort_handle();
            tasks.push(Some(t));
            a
        })
    }

    async fn closed(tasks: &mut [Task], i: usize) -> bool {
        let t = tasks[i].take().unwrap();
        t.await.unwrap_err().is_cancelled()
    }

    #[tokio::test]
    async fn cap_evicts_stuck_connections_first() {
        let conns = Conns::new(3);
        let (mut states, mut tasks) = (Vec::new(), Vec::new());
        for _ in 0..3 {
            admit(&conns, &mut states, &mut tasks);
        }
        // 0 was served, 1 is stuck reading, 2 was just accepted: the fourth closes 1.
        states[0].store(SERVED, Ordering::Relaxed);
        states[1].store(READING, Ordering::Relaxed);
        admit(&conns, &mut states, &mut tasks);
        assert_eq!(conns.len(), 3);
        assert!(closed(&mut tasks, 1).await);
        // Then the oldest not read from yet (2, before 3), then the served one.
        for i in [2, 3, 0] {
            assert!(conns.evict_one());
            assert!(closed(&mut tasks, i).await);
        }
        assert!(!conns.evict_one());
        assert_eq!(conns.len(), 0);
    }
}
