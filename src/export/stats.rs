//! Accounting: what happened to every batch, counted exactly and logged once.
//!
//! Every batch a lane takes in (or finds in its spool at start) ends as *sent* or *dropped*, or is
//! still *queued*: `enqueued + recovered = sent + dropped + queued` holds after every change,
//! because all of them are updated together under the lane's lock and published as one snapshot.
//! A drop always has a [`DropReason`] and a cause; [`LossLog`] writes each loss to the log once
//! (the first of an episode at once, the rest of a burst summed up per reason at most every
//! [`LOSS_LOG_EVERY`]), so the sum of `batches=` over the `batches dropped` lines equals the
//! dropped counter.

use super::signal::Signal;
use crate::otlp::metrics::agent::DeliveryCounts;
use parking_lot::Mutex;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Why batches were given up on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DropReason {
    /// The spool's budget or its filesystem was full: the oldest spooled batches made room.
    SpoolFull,
    /// A spooled batch could not be read back (damage, I/O error, its file or directory removed).
    Unreadable,
    /// The collector refused it (not retryable, or too large even after splitting).
    Rejected,
    /// The memory budget was full and the batch could not be spooled (no spool, an unwritable
    /// or stalled disk).
    QueueFull,
    /// At shutdown it was neither delivered nor spooled.
    Shutdown,
}

impl DropReason {
    pub const ALL: [DropReason; 5] = [
        DropReason::SpoolFull,
        DropReason::Unreadable,
        DropReason::Rejected,
        DropReason::QueueFull,
        DropReason::Shutdown,
    ];

    pub fn name(self) -> &'static str {
        match self {
            DropReason::SpoolFull => "spool_full",
            DropReason::Unreadable => "unreadable",
            DropReason::Rejected => "rejected",
            DropReason::QueueFull => "queue_full",
            DropReason::Shutdown => "shutdown",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// What became of a batch handed to [`super::Exporter::submit`]; told once to its hook.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settled {
    /// The collector accepted it.
    Delivered,
    /// It is in the spool: it survives a crash and will be delivered (or counted as dropped).
    Spooled,
    /// It was given up on (counted and logged by the queue).
    Dropped(DropReason),
}

impl Settled {
    /// Whether the producer may forget the batch (advance its cursor past it).
    pub fn is_durable(self) -> bool {
        !matches!(self, Settled::Dropped(_))
    }
}

/// Called once when a batch is delivered, spooled or dropped, whichever comes first. It runs on
/// the queue's own threads after its locks are released: it must not block.
pub type OnSettled = Box<dyn FnOnce(Settled) + Send>;

/// The counters of one lane, always consistent with each other.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Counts {
    /// Batches handed to the lane by this process.
    pub enqueued: u64,
    /// Batches found in the spool at start.
    pub recovered: u64,
    pub sent: u64,
    /// Failed attempts that will be repeated.
    pub retried: u64,
    /// Dropped batches by [`DropReason`] (in the order of [`DropReason::ALL`]).
    pub dropped: [u64; 5],
    /// Items (data points, log records) a collector rejected inside requests it accepted (OTLP
    /// partial success): not retried; the batches count as sent.
    pub rejected_items: u64,
    /// Batches held in memory (queued, being sent, or written ahead and still cached).
    pub memory_batches: u64,
    pub memory_bytes: u64,
    /// Batches only on disk.
    pub disk_batches: u64,
    /// Bytes of the spool's segment files (what `spool_max_bytes` bounds).
    pub disk_bytes: u64,
    /// Unix seconds since every attempt has failed (0: the last one succeeded).
    pub failing_since: u64,
    /// Unix seconds of the last successful send (0: never).
    pub last_success: u64,
}

impl Counts {
    pub fn dropped_total(&self) -> u64 {
        self.dropped.iter().sum()
    }

    pub fn queued(&self) -> u64 {
        self.memory_batches + self.disk_batches
    }

    /// `enqueued + recovered = sent + dropped + queued`.
    pub fn balanced(&self) -> bool {
        self.enqueued + self.recovered == self.sent + self.dropped_total() + self.queued()
    }

    pub(crate) fn drop(&mut self, reason: DropReason, batches: u64) {
        self.dropped[reason.index()] += batches;
    }
}

/// The state of a lane's spool, for `/readyz` and `check`.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize)]
#[serde(rename_all = "snake_case", tag = "state", content = "detail")]
pub enum SpoolState {
    /// No spool configured (console and `none` exporters, or `spool_max_bytes` 0).
    #[default]
    Off,
    /// Being locked and scanned.
    Opening,
    Ready,
    /// Configured but not usable; the lane runs memory-only. The detail says why.
    Unusable(String),
}

/// How the disk writer is doing, shared by every lane: a disk that hangs shows here.
#[derive(Debug, Default)]
pub struct DiskHealth {
    /// Milliseconds (on [`DiskHealth::now_ms`]'s clock) when the operation in progress started;
    /// 0 when idle.
    busy_since_ms: AtomicU64,
    /// What it is doing (`write segment …`, `fsync`, …).
    op: Mutex<String>,
    /// The last disk error, cleared by the next success.
    pub(crate) last_error: Mutex<Option<String>>,
    /// Wakes the queue's watchdog, which sleeps while nothing needs watching: a disk operation
    /// starting (it may stall) or a lane that needs it ([`LaneCell::with`]) pokes it.
    ///
    /// [`LaneCell::with`]: super::shared::LaneCell::with
    pub(crate) watchdog: tokio::sync::Notify,
}

/// A disk operation slower than this makes `/readyz` fail and lets the queue drop what waits for
/// it rather than grow past its memory budget.
pub const DISK_STALL_AFTER: Duration = Duration::from_secs(5);

fn epoch() -> Instant {
    static EPOCH: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

impl DiskHealth {
    pub(crate) fn now_ms() -> u64 {
        epoch().elapsed().as_millis() as u64 + 1
    }

    pub(crate) fn begin(&self, op: impl Into<String>) {
        *self.op.lock() = op.into();
        self.busy_since_ms.store(Self::now_ms(), Ordering::Release);
        self.watchdog.notify_one();
    }

    pub(crate) fn end(&self) {
        self.busy_since_ms.store(0, Ordering::Release);
    }

    /// How long the operation in progress has been running.
    pub fn busy_for(&self) -> Option<Duration> {
        match self.busy_since_ms.load(Ordering::Acquire) {
            0 => None,
            t => Some(Duration::from_millis(Self::now_ms().saturating_sub(t))),
        }
    }

    /// The operation in progress when it has run past [`DISK_STALL_AFTER`].
    pub fn stalled(&self) -> Option<(Duration, String)> {
        self.busy_for()
            .filter(|d| *d >= DISK_STALL_AFTER)
            .map(|d| (d, self.op.lock().clone()))
    }
}

/// Counters a lane reports about its delivery: `/readyz`, the self-metrics and (later) the
/// control plane's health report read them.
#[derive(Debug)]
pub struct ExportStats {
    pub signal: Signal,
    counts: Mutex<Counts>,
    spool: Mutex<SpoolState>,
    /// The reason of the last failed attempt, for `/readyz`.
    pub(crate) last_error: Mutex<Option<String>>,
    pub(crate) disk: Arc<DiskHealth>,
}

impl Default for ExportStats {
    fn default() -> Self {
        ExportStats::new(Signal::Metrics, Arc::default())
    }
}

impl ExportStats {
    pub(crate) fn new(signal: Signal, disk: Arc<DiskHealth>) -> Self {
        ExportStats {
            signal,
            counts: Mutex::default(),
            spool: Mutex::default(),
            last_error: Mutex::default(),
            disk,
        }
    }

    /// One consistent snapshot of the counters.
    pub fn snapshot(&self) -> Counts {
        *self.counts.lock()
    }

    pub(crate) fn publish(&self, c: Counts) {
        *self.counts.lock() = c;
    }

    pub fn spool_state(&self) -> SpoolState {
        self.spool.lock().clone()
    }

    pub(crate) fn set_spool_state(&self, s: SpoolState) {
        *self.spool.lock() = s;
    }

    pub fn last_error(&self) -> Option<String> {
        self.last_error.lock().clone()
    }

    /// The disk operation in progress, when it has been stalled past [`DISK_STALL_AFTER`].
    pub fn disk_stalled(&self) -> Option<(Duration, String)> {
        self.disk.stalled()
    }

    /// The counters the self-metrics report.
    pub(crate) fn counts(&self) -> DeliveryCounts {
        let c = self.snapshot();
        DeliveryCounts {
            sent: c.sent,
            retried: c.retried,
            dropped: DropReason::ALL.map(|r| (r.name(), c.dropped[r.index()])),
            rejected: c.rejected_items,
            memory_batches: c.memory_batches,
            memory_bytes: c.memory_bytes,
            disk_batches: c.disk_batches,
            disk_bytes: c.disk_bytes,
        }
    }

    /// What `/readyz` shows about this lane.
    pub fn to_json(&self) -> serde_json::Value {
        let c = self.snapshot();
        let dropped: serde_json::Map<String, serde_json::Value> = DropReason::ALL
            .iter()
            .map(|r| (r.name().to_string(), c.dropped[r.index()].into()))
            .collect();
        let stall = self.disk_stalled();
        serde_json::json!({
            "failing_since": c.failing_since,
            "last_success": c.last_success,
            "last_error": self.last_error(),
            "queue": {
                "memory_batches": c.memory_batches,
                "memory_bytes": c.memory_bytes,
                "disk_batches": c.disk_batches,
                "disk_bytes": c.disk_bytes,
            },
            "enqueued": c.enqueued,
            "recovered": c.recovered,
            "sent": c.sent,
            "retried": c.retried,
            "dropped": c.dropped_total(),
            "dropped_by_reason": dropped,
            "rejected_items": c.rejected_items,
            "spool": {
                "state": self.spool_state(),
                "stalled": stall.is_some(),
                "stalled_for_sec": stall.as_ref().map(|s| s.0.as_secs_f64()),
                "stalled_in": stall.map(|s| s.1),
                "last_error": self.disk.last_error.lock().clone(),
            },
        })
    }
}

/// How often a burst of losses of one reason is summed up into one line.
pub(crate) const LOSS_LOG_EVERY: Duration = Duration::from_secs(30);

#[derive(Debug, Default)]
struct Pending {
    batches: u64,
    events: u64,
    cause: String,
}

/// Writes every loss to the log exactly once: the first of a reason at once, later ones summed up
/// per reason at most every [`LOSS_LOG_EVERY`]. Lines are returned to the caller to emit after
/// its lock is released.
#[derive(Debug, Default)]
pub(crate) struct LossLog {
    last: [Option<Instant>; 5],
    pending: [Option<Pending>; 5],
}

/// One `batches dropped` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LossLine {
    pub(crate) reason: DropReason,
    pub(crate) batches: u64,
    pub(crate) events: u64,
    pub(crate) cause: String,
}

impl LossLine {
    pub(crate) fn emit(&self, signal: Signal) {
        let (signal, reason, batches, events, cause) = (
            signal.name(),
            self.reason.name(),
            self.batches,
            self.events,
            &self.cause,
        );
        match self.reason {
            DropReason::SpoolFull | DropReason::QueueFull => {
                tracing::warn!(signal = %signal, reason = %reason, batches, events, %cause, "batches dropped")
            }
            _ => {
                tracing::error!(signal = %signal, reason = %reason, batches, events, %cause, "batches dropped")
            }
        }
    }
}

impl LossLog {
    pub(crate) fn record(
        &mut self,
        reason: DropReason,
        batches: u64,
        cause: &str,
        now: Instant,
        out: &mut Vec<LossLine>,
    ) {
        if batches == 0 {
            return;
        }
        let i = reason.index();
        let quiet = self.last[i].is_none_or(|t| now.duration_since(t) >= LOSS_LOG_EVERY);
        if quiet && self.pending[i].is_none() {
            self.last[i] = Some(now);
            out.push(LossLine {
                reason,
                batches,
                events: 1,
                cause: cause.to_string(),
            });
            return;
        }
        let p = self.pending[i].get_or_insert_with(Pending::default);
        p.batches += batches;
        p.events += 1;
        p.cause = cause.to_string();
    }

    /// Whether losses wait to be summed up in a later line (the watchdog must come back).
    pub(crate) fn pending(&self) -> bool {
        self.pending.iter().any(Option::is_some)
    }

    /// The summed-up lines whose time has come (all of them with `flush`).
    pub(crate) fn tick(&mut self, now: Instant, flush: bool, out: &mut Vec<LossLine>) {
        for reason in DropReason::ALL {
            let i = reason.index();
            let due = flush || self.last[i].is_none_or(|t| now.duration_since(t) >= LOSS_LOG_EVERY);
            if due && let Some(p) = self.pending[i].take() {
                self.last[i] = Some(now);
                out.push(LossLine {
                    reason,
                    batches: p.batches,
                    events: p.events,
                    cause: p.cause,
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_loss_is_in_exactly_one_line() {
        let mut log = LossLog::default();
        let mut out = Vec::new();
        let t0 = Instant::now();
        log.record(DropReason::SpoolFull, 3, "a", t0, &mut out);
        log.record(DropReason::SpoolFull, 2, "b", t0, &mut out);
        log.record(
            DropReason::SpoolFull,
            4,
            "c",
            t0 + Duration::from_secs(1),
            &mut out,
        );
        log.record(DropReason::Rejected, 1, "r", t0, &mut out);
        assert_eq!(out.len(), 2);
        log.tick(t0 + Duration::from_secs(2), false, &mut out);
        assert_eq!(out.len(), 2, "not yet due");
        log.tick(t0 + LOSS_LOG_EVERY, false, &mut out);
        assert_eq!(out.len(), 3);
        assert_eq!(
            (out[2].batches, out[2].events, out[2].cause.as_str()),
            (6, 2, "c")
        );
        log.record(DropReason::SpoolFull, 5, "d", t0 + LOSS_LOG_EVERY, &mut out);
        log.tick(t0 + LOSS_LOG_EVERY, true, &mut out);
        let total: u64 = out.iter().map(|l| l.batches).sum();
        assert_eq!(total, 3 + 2 + 4 + 1 + 5);
    }
}
