//! The [`Exporter`]: one lane per signal (metrics always; logs when asked for), the disk writer
//! thread they share, a sender task per lane and a watchdog; and the way it all stops.
//!
//! Producers never wait: [`Exporter::enqueue`] and [`Exporter::submit`] take the lane's lock for
//! a push and return. On shutdown the collector gets the grace period only while it answers
//! ([`Exporter::drain`] gives up at once when it is known to be unreachable); then everything
//! not yet on disk is written by the disk thread, within a bound, and what could not be is
//! counted as lost.

use super::Transport;
use super::disk::{self, DiskLane, Finish, Start};
use super::lane::Lane;
use super::retry::Policy;
use super::sender;
use super::shared::{DiskWake, LaneCell};
use super::signal::{LaneBudget, Signal};
use super::spool::FsyncPolicy;
use super::spool::lock::LockError;
use super::stats::{DiskHealth, ExportStats, OnSettled, Settled, SpoolState};
use bytes::Bytes;
use parking_lot::Mutex;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// Largest request built by merging queued batches while catching up: far below the 4 MiB a gRPC
/// server accepts by default (a collector that accepts less says so with a 413, and the lane
/// learns it).
pub(crate) const MERGE_LIMIT: usize = 1 << 20;

/// How long the start waits for the spool's lock before running on (memory-first).
const LOCK_WAIT: Duration = Duration::from_secs(5);
/// A spool that has not been opened (locked and scanned) by then is given up for this run.
const OPEN_TIMEOUT: Duration = Duration::from_secs(30);

/// Limits of the queue.
#[derive(Debug, Clone)]
pub struct QueueConfig {
    /// Memory budget of the metrics lane.
    pub memory_bytes: u64,
    /// `memory_bytes` is the default and grows with the samples ([`LaneBudget::memory_auto`]).
    pub memory_auto: bool,
    pub spool_dir: Option<PathBuf>,
    /// Disk budget of the metrics lane.
    pub spool_max_bytes: u64,
    pub fsync: FsyncPolicy,
    pub backoff_max: Duration,
    /// The logs lane, when the logs signal is on.
    pub logs: Option<LaneBudget>,
}

/// What was still queued when the exporter shut down.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Leftover {
    /// Batches in the spool for the next start.
    pub persisted: u64,
    /// Batches lost for want of a (writable, answering) spool; counted as dropped.
    pub lost: u64,
}

/// Why the exporter cannot start (exit code 2).
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    SpoolLocked(LockError),
}

struct Inner {
    lanes: [Option<Arc<LaneCell>>; 2],
    closed: watch::Sender<bool>,
    tasks: Mutex<Vec<tokio::task::JoinHandle<()>>>,
    finish: Arc<Finish>,
    wake: Arc<DiskWake>,
    has_writer: bool,
    disk: Arc<DiskHealth>,
}

/// Hands batches to the lanes. Cloning shares the queue.
#[derive(Clone)]
pub struct Exporter {
    inner: Arc<Inner>,
}

impl Exporter {
    /// Locks and opens the spool (waiting at most a few seconds for the disk), and starts the
    /// sender tasks and the watchdog on the current runtime. Fails only when another agent holds
    /// the spool.
    pub fn start(transport: Transport, cfg: QueueConfig) -> Result<Exporter, StartError> {
        Exporter::start_with(transport, None, cfg)
    }

    /// [`Exporter::start`] with the logs lane on a transport of its own (the logs' endpoint,
    /// protocol, headers and TLS may differ from the metrics'); `None`: the metrics' transport.
    pub fn start_with(
        transport: Transport,
        logs_transport: Option<Transport>,
        cfg: QueueConfig,
    ) -> Result<Exporter, StartError> {
        let health = Arc::new(DiskHealth::default());
        let wake = Arc::new(DiskWake::default());
        let spool_root = cfg.spool_dir.clone();
        let mut budgets = vec![(
            Signal::Metrics,
            LaneBudget {
                memory_bytes: cfg.memory_bytes,
                memory_auto: cfg.memory_auto,
                spool_max_bytes: cfg.spool_max_bytes,
            },
        )];
        if let Some(b) = cfg.logs {
            budgets.push((Signal::Logs, b));
        }
        let mut lanes: [Option<Arc<LaneCell>>; 2] = [None, None];
        let mut disk_lanes = Vec::new();
        for (signal, budget) in budgets {
            let spool = spool_root.is_some() && budget.spool_max_bytes > 0;
            let stats = Arc::new(ExportStats::new(signal, health.clone()));
            stats.set_spool_state(if spool {
                SpoolState::Opening
            } else {
                SpoolState::Off
            });
            let lane = Lane::new(signal, budget, spool, health.clone());
            let cell = Arc::new(LaneCell::new(lane, stats, wake.clone()));
            cell.with(|_, _| ());
            if spool {
                disk_lanes.push(DiskLane {
                    cell: cell.clone(),
                    budget,
                });
            }
            lanes[signal.index()] = Some(cell);
        }
        let finish = Arc::new(Finish::default());
        let has_writer = !disk_lanes.is_empty();
        if let (Some(root), true) = (spool_root, has_writer) {
            let started = disk::spawn(
                root.clone(),
                cfg.fsync,
                disk_lanes,
                health.clone(),
                wake.clone(),
                finish.clone(),
            );
            match started.recv_timeout(LOCK_WAIT) {
                Ok(Start::Held(e)) => return Err(StartError::SpoolLocked(e)),
                Ok(Start::Locked | Start::Unusable) => {}
                Err(_) => tracing::warn!(
                    dir = %root.display(),
                    "the spool's disk has not answered for {} s; starting with the queue in memory, the spool joins when it answers",
                    LOCK_WAIT.as_secs()
                ),
            }
        }
        let (closed, _) = watch::channel(false);
        let transport = Arc::new(transport);
        let logs_transport = logs_transport.map(Arc::new);
        let merge_cap = |b: u64| MERGE_LIMIT.min((b / 2) as usize).max(1);
        let mut tasks = Vec::new();
        for cell in lanes.iter().flatten() {
            let budget = cell.with(|l, _| l.budget);
            let transport = match (&logs_transport, cell.stats.signal) {
                (Some(t), Signal::Logs) => t.clone(),
                _ => transport.clone(),
            };
            let policy = Policy::new(
                transport.timeout(),
                cfg.backoff_max,
                merge_cap(budget.memory_bytes),
            );
            tasks.push(tokio::spawn(sender::run(
                cell.clone(),
                transport,
                policy,
                closed.subscribe(),
            )));
        }
        let inner = Arc::new(Inner {
            lanes,
            closed,
            tasks: Mutex::new(tasks),
            finish,
            wake,
            has_writer,
            disk: health,
        });
        tokio::spawn(watchdog(Arc::downgrade(&inner), inner.disk.clone()));
        Ok(Exporter { inner })
    }

    fn lane(&self, signal: Signal) -> Option<&Arc<LaneCell>> {
        self.inner.lanes[signal.index()].as_ref()
    }

    fn lanes(&self) -> impl Iterator<Item = &Arc<LaneCell>> {
        self.inner.lanes.iter().flatten()
    }

    /// The metrics lane's counters.
    pub fn stats(&self) -> Arc<ExportStats> {
        self.stats_of(Signal::Metrics)
            .expect("the metrics lane always exists")
    }

    /// A lane's counters, when the lane exists.
    pub fn stats_of(&self, signal: Signal) -> Option<Arc<ExportStats>> {
        self.lane(signal).map(|c| c.stats.clone())
    }

    /// The disk writer's health (shared by every lane).
    pub fn disk_health(&self) -> Arc<DiskHealth> {
        self.inner.disk.clone()
    }

    /// Queues an encoded metrics request. Never waits on the network or the disk.
    pub fn enqueue(&self, payload: Bytes) {
        self.submit(Signal::Metrics, payload, Bytes::new(), None);
    }

    /// Queues one encoded request of `signal`. `meta` is stored with it in the spool and handed
    /// back by [`Exporter::recovered`] after a restart (the logs source keeps its cursor
    /// positions there); `hook` learns once whether the batch was delivered, spooled (durable:
    /// the producer may move on) or dropped. A signal without a lane drops the batch (counted
    /// nowhere: it was never taken) and says so to the hook.
    pub fn submit(&self, signal: Signal, payload: Bytes, meta: Bytes, hook: Option<OnSettled>) {
        match self.lane(signal) {
            Some(cell) => cell.with(|l, now| l.push(payload, meta, 1, hook, now)),
            None => {
                if let Some(h) = hook {
                    h(Settled::Dropped(super::DropReason::QueueFull));
                }
            }
        }
    }

    /// The metas of the batches of `signal` found in the spool at start, oldest first (waiting
    /// until the spool has been scanned). The producer resumes after them: they will be
    /// delivered, or counted as dropped.
    pub async fn recovered(&self, signal: Signal) -> Vec<Bytes> {
        let Some(cell) = self.lane(signal) else {
            return Vec::new();
        };
        let deadline = Instant::now() + OPEN_TIMEOUT;
        while cell.with(|l, _| l.opening) && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        cell.with(|l, _| std::mem::take(&mut l.recovered_meta))
    }

    /// Whether the last attempt of some lane failed (the collector is unreachable or refusing).
    pub fn collector_failing(&self) -> bool {
        self.lanes().any(|c| c.with(|l, _| l.failing))
    }

    /// Waits until everything queued was delivered, `grace` passed, or the collector is known
    /// to be unreachable (then there is no point waiting); returns whether the queue is empty.
    pub async fn drain(&self, grace: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + grace;
        loop {
            if self.lanes().all(|c| c.with(|l, _| l.is_empty())) {
                return true;
            }
            if self.collector_failing() || tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Stops the senders (abandoning an attempt in progress; it is replayed next time), has the
    /// disk thread write everything not yet on disk (waiting at most `within`), and counts what
    /// could not be written as lost.
    pub async fn shutdown(&self, within: Duration) -> Leftover {
        let inner = &self.inner;
        let _ = inner.closed.send(true);
        let tasks: Vec<_> = inner.tasks.lock().drain(..).collect();
        for t in tasks {
            t.abort();
            let _ = t.await;
        }
        for cell in self.lanes() {
            cell.with(|l, now| {
                l.closing = true;
                l.settle_state(now);
            });
        }
        if inner.has_writer {
            inner.finish.ask();
            inner.wake.poke();
            let finish = inner.finish.clone();
            let _ = tokio::task::spawn_blocking(move || finish.wait(within)).await;
        }
        let mut left = Leftover::default();
        for cell in self.lanes() {
            let (kept, lost) = cell.with(|l, now| l.finish_shutdown(now));
            left.persisted += kept;
            left.lost += lost;
        }
        left
    }
}

/// Every half second while there is something to watch: sums up pending loss lines,
/// re-applies the memory budget (a disk that stopped answering lets it drop), gives up a spool
/// that never opened, and says when the disk stalls and when it answers again.
///
/// A queue that delivers promptly needs none of that, so the watchdog then sleeps until a lane
/// needs watching or a disk operation starts (both poke [`DiskHealth::watchdog`]): an idle agent
/// should not wake twice a second for nothing (each wake is a thread switch or two, a tenth of
/// an idle cycle's CPU on a small VM).
async fn watchdog(inner: std::sync::Weak<Inner>, health: Arc<DiskHealth>) {
    let started = Instant::now();
    let mut stalled_since: Option<Instant> = None;
    let mut closed = match inner.upgrade() {
        Some(i) => i.closed.subscribe(),
        None => return,
    };
    let mut idle = false;
    loop {
        if idle {
            tokio::select! {
                _ = health.watchdog.notified() => {}
                r = closed.changed() => if r.is_err() { return },
            }
        } else {
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        let Some(inner) = inner.upgrade() else { return };
        if *inner.closed.borrow() {
            return;
        }
        let mut watched = false;
        for cell in inner.lanes.iter().flatten() {
            let (gave_up, watch) = cell.with(|l, now| {
                l.tick(now, false);
                let gave_up = l.opening && started.elapsed() > OPEN_TIMEOUT;
                if gave_up {
                    l.spool_lost("the spool was not opened in time", now);
                } else {
                    l.settle_state(now);
                }
                (gave_up, l.watched())
            });
            watched |= watch;
            if gave_up {
                let detail = format!(
                    "the spool's disk did not answer within {} s of the start",
                    OPEN_TIMEOUT.as_secs()
                );
                tracing::error!(signal = %cell.stats.signal.name(), error = %detail, "spool cannot be used: running memory-only");
                cell.stats.set_spool_state(SpoolState::Unusable(detail));
            }
        }
        match (inner.disk.stalled(), stalled_since) {
            (Some((d, op)), None) => {
                stalled_since = Some(Instant::now() - d);
                tracing::error!(operation = %op, seconds = d.as_secs_f64(), "spool disk stalled; sampling and delivery from memory go on, batches wait in memory");
            }
            (None, Some(t)) => {
                stalled_since = None;
                tracing::info!(
                    seconds = t.elapsed().as_secs_f64(),
                    "spool disk answers again"
                );
            }
            _ => {}
        }
        // A lane that comes to need watching after its turn above pokes the watchdog, so the
        // wait below returns at once.
        idle = !watched && stalled_since.is_none() && inner.disk.busy_for().is_none();
    }
}
