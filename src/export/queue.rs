//! The delivery queue: a byte-bounded FIFO in memory that spills to the on-disk spool, and the
//! sender task that drains it oldest first.
//!
//! Order is kept by one invariant: everything on disk is older than everything in memory. When
//! memory passes its budget the *oldest* memory batches move to the spool's tail; the sender reads
//! the spool before memory. The batch being sent ("in flight") is either a read of the spool head
//! (it stays on disk until acknowledged) or, when the spool is empty, taken from memory; in the
//! latter case it is written to the spool before anything else spills, so it stays first.
//!
//! Counting is exact: every enqueued batch ends as sent or dropped (spool full, not retryable,
//! unwritable spool), or is still queued. A merged send counts the batches it carried.

use super::spool::{Cursor, FsyncPolicy, Spool};
use super::{Accepted, SendError, Transport};
use crate::otlp::metrics::agent::DeliveryCounts;
use bytes::{Bytes, BytesMut};
use parking_lot::Mutex;
use std::collections::VecDeque;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::{Notify, watch};

/// Largest request built by merging queued batches while catching up: far below the 4 MiB a gRPC
/// server accepts by default, so a merged request is never refused for its size.
pub(crate) const MERGE_LIMIT: usize = 1 << 20;

/// Counters the agent reports about its own delivery.
#[derive(Debug, Default)]
pub struct ExportStats {
    /// Batches (samples) delivered.
    pub(crate) sent: AtomicU64,
    /// Failed attempts that will be repeated.
    pub(crate) retried: AtomicU64,
    /// Batches given up on: spool full (oldest first), refused as not retryable, unwritable.
    pub(crate) dropped: AtomicU64,
    /// Data points a collector rejected inside accepted requests (OTLP partial success).
    pub(crate) rejected: AtomicU64,
    pub(crate) memory_batches: AtomicU64,
    pub(crate) memory_bytes: AtomicU64,
    pub(crate) disk_batches: AtomicU64,
    pub(crate) disk_bytes: AtomicU64,
    /// Unix seconds of the last successful send (0 = never).
    pub(crate) last_success: AtomicU64,
    /// Unix seconds since when every attempt has failed (0 = the last attempt succeeded).
    pub(crate) failing_since: AtomicU64,
    /// The reason of the last failure, for `/readyz`.
    pub(crate) last_error: Mutex<Option<String>>,
}

impl ExportStats {
    /// The counters the self-metrics report.
    pub(crate) fn counts(&self) -> DeliveryCounts {
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        DeliveryCounts {
            sent: load(&self.sent),
            retried: load(&self.retried),
            dropped: load(&self.dropped),
            rejected: load(&self.rejected),
            memory_batches: load(&self.memory_batches),
            memory_bytes: load(&self.memory_bytes),
            disk_batches: load(&self.disk_batches),
            disk_bytes: load(&self.disk_bytes),
        }
    }
}

/// What was still queued when the exporter shut down.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Leftover {
    /// Batches written to the spool for the next start.
    pub(crate) persisted: u64,
    /// Batches lost for want of a (writable) spool.
    pub(crate) lost: u64,
}

/// Limits of the queue.
#[derive(Debug, Clone)]
pub struct QueueConfig {
    pub memory_bytes: u64,
    pub spool_dir: Option<std::path::PathBuf>,
    pub spool_max_bytes: u64,
    pub fsync: FsyncPolicy,
    pub backoff_max: Duration,
}

struct InFlight {
    payload: Bytes,
    batches: u64,
    /// Where it lies in the spool, when it is there.
    disk: Option<Cursor>,
    /// Its spool segment was dropped to make room: do not retry; count it when the attempt ends.
    cancelled: bool,
}

struct Backlog {
    mem: VecDeque<Bytes>,
    mem_bytes: u64,
    spool: Option<Spool>,
    inflight: Option<InFlight>,
}

struct Shared {
    state: Mutex<Backlog>,
    wake: Notify,
    closed: watch::Sender<bool>,
    stats: Arc<ExportStats>,
    memory_budget: u64,
    merge_limit: usize,
}

/// Hands batches to the sender task. Cloning shares the queue.
#[derive(Clone)]
pub struct Exporter {
    shared: Arc<Shared>,
    task: Arc<Mutex<Option<tokio::task::JoinHandle<()>>>>,
}

fn now_secs() -> u64 {
    crate::sys::clock::now_nanos() / 1_000_000_000
}

impl Backlog {
    fn publish(&self, stats: &ExportStats) {
        let (fb, fn_) = match &self.inflight {
            Some(f) if !f.cancelled && f.disk.is_none() => (f.payload.len() as u64, f.batches),
            _ => (0, 0),
        };
        // The in-flight buffer is memory even when it was read from disk.
        let held = self.inflight.as_ref().map_or(0, |f| f.payload.len() as u64);
        stats
            .memory_batches
            .store(self.mem.len() as u64 + fn_, Ordering::Relaxed);
        stats
            .memory_bytes
            .store(self.mem_bytes + held.max(fb), Ordering::Relaxed);
        let (db, dn) = self
            .spool
            .as_ref()
            .map_or((0, 0), |s| (s.bytes(), s.records()));
        stats.disk_batches.store(dn, Ordering::Relaxed);
        stats.disk_bytes.store(db, Ordering::Relaxed);
    }

    fn held_bytes(&self) -> u64 {
        self.mem_bytes + self.inflight.as_ref().map_or(0, |f| f.payload.len() as u64)
    }

    /// Writes a memory-sourced in-flight batch to the (empty) spool so it stays first.
    fn persist_inflight(&mut self, stats: &ExportStats) {
        let (Some(f), Some(spool)) = (self.inflight.as_mut(), self.spool.as_mut()) else {
            return;
        };
        if f.disk.is_some() || f.cancelled {
            return;
        }
        let a = spool.append(&f.payload, f.batches);
        stats.dropped.fetch_add(a.dropped, Ordering::Relaxed);
        if a.stored {
            let (seg, end) = spool.tail_position().expect("just written");
            f.disk = Some(Cursor {
                seg,
                end,
                batches: f.batches,
            });
            spool.pinned = Some(seg);
        }
    }

    /// Appends one batch to the spool (or drops it without one), counting what that dropped.
    fn spill(&mut self, payload: Bytes, batches: u64, stats: &ExportStats) {
        let Some(spool) = self.spool.as_mut() else {
            stats.dropped.fetch_add(batches, Ordering::Relaxed);
            tracing::warn!("memory queue full and no spool: dropped the oldest batch");
            return;
        };
        let a = spool.append(&payload, batches);
        let mut dropped = a.dropped;
        if a.pinned_gone
            && let Some(f) = self.inflight.as_mut()
        {
            // Its records were in the dropped segment; the sender counts them.
            if let Some(c) = f.disk {
                dropped = dropped.saturating_sub(c.batches);
            }
            f.cancelled = true;
        }
        if !a.stored {
            dropped += batches;
        }
        stats.dropped.fetch_add(dropped, Ordering::Relaxed);
    }

    /// Moves the oldest memory batches to disk until memory is within its budget.
    fn rebalance(&mut self, budget: u64, stats: &ExportStats) {
        while self.held_bytes() > budget && !self.mem.is_empty() {
            self.persist_inflight(stats);
            let b = self.mem.pop_front().expect("not empty");
            self.mem_bytes -= b.len() as u64;
            self.spill(b, 1, stats);
        }
        if let Some(s) = self.spool.as_mut() {
            s.sync_if_batch();
        }
    }

    /// Takes the next request to send: the spool head, else memory, merged up to `limit`. A
    /// read from disk is held in memory too, so it takes what the budget leaves (at least one
    /// record), and memory spills if that one record does not fit.
    fn take(&mut self, limit: usize, budget: u64, stats: &ExportStats) -> bool {
        let room = budget.saturating_sub(self.mem_bytes) as usize;
        if let Some(spool) = self.spool.as_mut()
            && !spool.is_empty()
            && let Some((recs, cursor)) = spool.peek(limit.min(room))
        {
            self.inflight = Some(InFlight {
                payload: concat(&recs),
                batches: cursor.batches,
                disk: Some(cursor),
                cancelled: false,
            });
            self.rebalance(budget, stats);
            return true;
        }
        let mut recs = Vec::new();
        let mut size = 0;
        while let Some(front) = self.mem.front() {
            if !recs.is_empty() && size + front.len() > limit {
                break;
            }
            let b = self.mem.pop_front().expect("front");
            self.mem_bytes -= b.len() as u64;
            size += b.len();
            recs.push(b);
        }
        if recs.is_empty() {
            return false;
        }
        self.inflight = Some(InFlight {
            payload: concat(&recs),
            batches: recs.len() as u64,
            disk: None,
            cancelled: false,
        });
        true
    }

    fn is_empty(&self) -> bool {
        self.mem.is_empty()
            && self.inflight.is_none()
            && self.spool.as_ref().is_none_or(|s| s.is_empty())
    }
}

/// Encoded requests concatenated are one valid request (protobuf merges repeated fields).
fn concat(recs: &[Bytes]) -> Bytes {
    if recs.len() == 1 {
        return recs[0].clone();
    }
    let mut b = BytesMut::with_capacity(recs.iter().map(|r| r.len()).sum());
    for r in recs {
        b.extend_from_slice(r);
    }
    b.freeze()
}

/// Opens the spool, logging what recovery found; `None` when it is off or unusable.
fn open_spool(cfg: &QueueConfig) -> Option<Spool> {
    let dir: &Path = cfg.spool_dir.as_deref()?;
    if cfg.spool_max_bytes == 0 {
        return None;
    }
    match Spool::open(dir, cfg.spool_max_bytes, cfg.fsync) {
        Ok((spool, rec)) => {
            if rec.records > 0 || rec.skipped_spans > 0 {
                tracing::info!(
                    dir = %dir.display(),
                    batches = rec.records,
                    bytes = rec.bytes,
                    skipped_spans = rec.skipped_spans,
                    skipped_bytes = rec.skipped_bytes,
                    "spool opened: replaying undelivered batches first"
                );
            }
            Some(spool)
        }
        Err(e) => {
            tracing::error!(dir = %dir.display(), error = %e, "cannot open the spool; queueing in memory only");
            None
        }
    }
}

impl Exporter {
    /// Opens the spool and starts the sender task on the current runtime.
    pub fn start(transport: Transport, cfg: QueueConfig) -> Self {
        let spool = open_spool(&cfg);
        let stats = Arc::new(ExportStats::default());
        let state = Backlog {
            mem: VecDeque::new(),
            mem_bytes: 0,
            spool,
            inflight: None,
        };
        state.publish(&stats);
        let (closed, _) = watch::channel(false);
        let shared = Arc::new(Shared {
            state: Mutex::new(state),
            wake: Notify::new(),
            closed,
            stats,
            memory_budget: cfg.memory_bytes,
            merge_limit: MERGE_LIMIT.min((cfg.memory_bytes / 2) as usize).max(1),
        });
        let task = tokio::spawn(sender(shared.clone(), transport, cfg.backoff_max));
        Exporter {
            shared,
            task: Arc::new(Mutex::new(Some(task))),
        }
    }

    pub(crate) fn stats(&self) -> Arc<ExportStats> {
        self.shared.stats.clone()
    }

    /// Queues an encoded request. Never waits on the network: past the memory budget the oldest
    /// batches move to the spool (a local append), past the spool's budget the oldest are dropped
    /// and counted.
    pub fn enqueue(&self, payload: Bytes) {
        let sh = &self.shared;
        let mut q = sh.state.lock();
        q.mem_bytes += payload.len() as u64;
        q.mem.push_back(payload);
        q.rebalance(sh.memory_budget, &sh.stats);
        q.publish(&sh.stats);
        drop(q);
        sh.wake.notify_one();
    }

    /// Waits until everything queued was delivered or `grace` has passed; returns whether the
    /// queue is empty.
    pub async fn drain(&self, grace: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + grace;
        loop {
            if self.shared.state.lock().is_empty() {
                return true;
            }
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Stops the sender (abandoning an attempt in progress) and writes whatever is still in
    /// memory to the spool.
    pub(crate) async fn shutdown(&self) -> Leftover {
        let sh = &self.shared;
        let _ = sh.closed.send(true);
        sh.wake.notify_one();
        let task = self.task.lock().take();
        if let Some(t) = task {
            let _ = tokio::time::timeout(Duration::from_secs(5), t).await;
        }
        let mut q = sh.state.lock();
        let mut persisted = 0;
        let mut lost = 0;
        let stats = &sh.stats;
        if let Some(f) = q.inflight.take() {
            if f.cancelled {
                stats.dropped.fetch_add(f.batches, Ordering::Relaxed);
            } else if f.disk.is_some() {
                if let Some(s) = q.spool.as_mut() {
                    s.pinned = None;
                }
            } else if let Some(s) = q.spool.as_mut() {
                let a = s.append(&f.payload, f.batches);
                stats.dropped.fetch_add(a.dropped, Ordering::Relaxed);
                if a.stored {
                    persisted += f.batches;
                } else {
                    lost += f.batches;
                }
            } else {
                lost += f.batches;
            }
        }
        while let Some(b) = q.mem.pop_front() {
            q.mem_bytes -= b.len() as u64;
            match q.spool.as_mut() {
                Some(s) => {
                    let a = s.append(&b, 1);
                    debug_assert!(!a.pinned_gone);
                    stats.dropped.fetch_add(a.dropped, Ordering::Relaxed);
                    if a.stored {
                        persisted += 1;
                    } else {
                        lost += 1;
                    }
                }
                None => lost += 1,
            }
        }
        stats.dropped.fetch_add(lost, Ordering::Relaxed);
        if let Some(s) = q.spool.as_mut() {
            s.sync();
            s.write_ack();
        }
        q.publish(stats);
        Leftover { persisted, lost }
    }
}

/// Exponential backoff with jitter: a random time in [backoff/2, backoff].
fn jittered(backoff: Duration) -> Duration {
    let half = backoff.as_secs_f64() / 2.0;
    Duration::from_secs_f64(half + fastrand::f64() * half)
}

/// Classifies and accounts for the end of one attempt; returns the retry delay hint when the
/// batch stays in flight.
enum Next {
    Continue,
    Retry(Option<Duration>),
}

fn finish(shared: &Shared, result: Result<Accepted, SendError>) -> Next {
    let stats = &shared.stats;
    let mut q = shared.state.lock();
    let Some(f) = q.inflight.take() else {
        return Next::Continue;
    };
    let next = match result {
        Ok(accepted) => {
            stats
                .rejected
                .fetch_add(accepted.rejected, Ordering::Relaxed);
            if let (Some(c), Some(s)) = (f.disk, q.spool.as_mut())
                && !f.cancelled
            {
                s.commit(c);
            }
            stats.sent.fetch_add(f.batches, Ordering::Relaxed);
            stats.last_success.store(now_secs(), Ordering::Relaxed);
            if stats.failing_since.swap(0, Ordering::Relaxed) != 0 {
                tracing::info!("collector reachable again; delivering queued batches");
            }
            *stats.last_error.lock() = None;
            Next::Continue
        }
        Err(SendError::Permanent { reason }) => {
            if let (Some(c), Some(s)) = (f.disk, q.spool.as_mut())
                && !f.cancelled
            {
                s.commit(c);
            }
            stats.dropped.fetch_add(f.batches, Ordering::Relaxed);
            let _ = stats.failing_since.compare_exchange(
                0,
                now_secs(),
                Ordering::Relaxed,
                Ordering::Relaxed,
            );
            tracing::error!(batches = f.batches, %reason, "collector refused a batch; dropped (not retryable)");
            *stats.last_error.lock() = Some(reason);
            Next::Continue
        }
        Err(SendError::Retryable {
            reason,
            retry_after,
        }) => {
            stats.retried.fetch_add(1, Ordering::Relaxed);
            let first = stats
                .failing_since
                .compare_exchange(0, now_secs(), Ordering::Relaxed, Ordering::Relaxed)
                .is_ok();
            let mut last = stats.last_error.lock();
            if first || last.as_deref() != Some(reason.as_str()) {
                tracing::warn!(%reason, "export failed; retrying with backoff");
            }
            *last = Some(reason);
            drop(last);
            if f.cancelled {
                stats.dropped.fetch_add(f.batches, Ordering::Relaxed);
                Next::Continue
            } else {
                q.inflight = Some(f);
                Next::Retry(retry_after)
            }
        }
    };
    q.publish(stats);
    next
}

async fn sender(shared: Arc<Shared>, transport: Transport, backoff_max: Duration) {
    const BACKOFF_START: Duration = Duration::from_millis(500);
    let mut backoff = BACKOFF_START;
    let mut closed = shared.closed.subscribe();
    loop {
        if *closed.borrow() {
            return;
        }
        let payload = {
            let mut q = shared.state.lock();
            if q.inflight.as_ref().is_some_and(|f| f.cancelled) {
                let f = q.inflight.take().expect("checked");
                shared.stats.dropped.fetch_add(f.batches, Ordering::Relaxed);
            }
            if q.inflight.is_none()
                && q.take(shared.merge_limit, shared.memory_budget, &shared.stats)
            {
                q.publish(&shared.stats);
            }
            q.inflight.as_ref().map(|f| f.payload.clone())
        };
        let Some(payload) = payload else {
            tokio::select! {
                _ = shared.wake.notified() => {}
                _ = closed.wait_for(|c| *c) => return,
            }
            continue;
        };
        let result = tokio::select! {
            r = transport.send(payload) => r,
            _ = closed.wait_for(|c| *c) => return,
        };
        match finish(&shared, result) {
            Next::Continue => {
                if shared.stats.failing_since.load(Ordering::Relaxed) == 0 {
                    backoff = BACKOFF_START;
                }
            }
            Next::Retry(retry_after) => {
                let wait = retry_after
                    .unwrap_or_else(|| jittered(backoff))
                    .min(backoff_max);
                backoff = (backoff * 2).min(backoff_max);
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = closed.wait_for(|c| *c) => return,
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(dir: Option<&Path>, mem: u64, disk: u64) -> QueueConfig {
        QueueConfig {
            memory_bytes: mem,
            spool_dir: dir.map(Path::to_path_buf),
            spool_max_bytes: disk,
            fsync: FsyncPolicy::Never,
            backoff_max: Duration::from_millis(50),
        }
    }

    fn state(c: &QueueConfig) -> Backlog {
        Backlog {
            mem: VecDeque::new(),
            mem_bytes: 0,
            spool: open_spool(c),
            inflight: None,
        }
    }

    fn push(q: &mut Backlog, c: &QueueConfig, stats: &ExportStats, b: Bytes) {
        q.mem_bytes += b.len() as u64;
        q.mem.push_back(b);
        q.rebalance(c.memory_bytes, stats);
    }

    /// Sends everything, successfully, one take at a time; returns the payloads in order.
    fn deliver_all(q: &mut Backlog) -> Vec<Bytes> {
        let mut out = Vec::new();
        let stats = ExportStats::default();
        while q.take(1 << 20, 1 << 30, &stats) {
            let f = q.inflight.take().unwrap();
            if let (Some(c), Some(s)) = (f.disk, q.spool.as_mut()) {
                s.commit(c);
            }
            out.push(f.payload);
        }
        out
    }

    fn rec(i: u32) -> Bytes {
        Bytes::from(vec![(i % 200) as u8; 300])
    }

    #[test]
    fn spills_oldest_to_disk_and_keeps_order_with_a_batch_in_flight() {
        let d = tempfile::tempdir().unwrap();
        let c = cfg(Some(d.path()), 1000, 1 << 20);
        let stats = ExportStats::default();
        let mut q = state(&c);
        push(&mut q, &c, &stats, rec(0));
        assert!(q.take(300, 1000, &stats)); // in flight from memory, spool empty
        for i in 1..20 {
            push(&mut q, &c, &stats, rec(i));
            assert!(q.held_bytes() <= 1000);
        }
        // The in-flight one was written to disk first: it fails once, stays in flight, then all
        // arrive in order.
        let f = q.inflight.take().unwrap();
        assert!(f.disk.is_some());
        assert_eq!(f.payload, rec(0));
        q.spool.as_mut().unwrap().commit(f.disk.unwrap());
        let got: Vec<u8> = deliver_all(&mut q)
            .iter()
            .flat_map(|p| p.chunks(300).map(|c| c[0]).collect::<Vec<_>>())
            .collect();
        assert_eq!(got, (1..20u8).collect::<Vec<_>>());
        assert_eq!(stats.dropped.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn memory_only_drops_oldest_and_counts() {
        let c = cfg(None, 1000, 0);
        let stats = ExportStats::default();
        let mut q = state(&c);
        for i in 0..10 {
            push(&mut q, &c, &stats, rec(i));
        }
        assert_eq!(stats.dropped.load(Ordering::Relaxed), 7);
        let got: Vec<u8> = deliver_all(&mut q)
            .iter()
            .flat_map(|p| p.chunks(300).map(|c| c[0]).collect::<Vec<_>>())
            .collect();
        assert_eq!(got, vec![7, 8, 9]);
    }

    #[test]
    fn a_dropped_in_flight_segment_is_counted_once() {
        let d = tempfile::tempdir().unwrap();
        // 16 KiB segments, 32 KiB spool, memory 600 bytes: nearly everything goes to disk.
        let c = cfg(Some(d.path()), 600, 32 << 10);
        let stats = ExportStats::default();
        let mut q = state(&c);
        let mut total = 0u64;
        for i in 0..5 {
            push(&mut q, &c, &stats, rec(i));
            total += 1;
        }
        assert!(q.take(300, 600, &stats));
        assert!(q.inflight.as_ref().unwrap().disk.is_some());
        for i in 5..400 {
            push(&mut q, &c, &stats, rec(i));
            total += 1;
        }
        let f = q.inflight.take().unwrap();
        assert!(f.cancelled, "the oldest segment, in flight, was dropped");
        stats.dropped.fetch_add(f.batches, Ordering::Relaxed);
        let delivered = deliver_all(&mut q)
            .iter()
            .map(|p| p.len() as u64 / 300)
            .sum::<u64>();
        assert_eq!(delivered + stats.dropped.load(Ordering::Relaxed), total);
    }
}
