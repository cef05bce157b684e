//! The disk writer: one thread that does every spool operation (lock, scan, writes, fsyncs,
//! reads, `ack` updates, deletes) for every lane, so a disk that hangs blocks this thread and
//! nothing else. Sampling, `/healthz` and delivery from memory go on; the hand-off is bounded
//! because the thread takes one batch at a time from the lanes (what waits for it stays in the
//! lane, under the lane's memory budget), and [`DiskHealth`] shows how long the operation in
//! progress has been running.
//!
//! Failure paths, each counted by the lane: a full filesystem (`ENOSPC`) makes room by dropping
//! the oldest segment, like the budget does; any other failed write leaves the batch in memory
//! and is tried again a second later; a directory or segment that disappears is re-created, and
//! what was only in it is lost; a record that cannot be read back is lost alone.

use super::shared::{DiskWake, LaneCell};
use super::signal::LaneBudget;
use super::spool::lock::{self, LockError, SpoolLock};
use super::spool::record::{self, Damage, ReadBack};
use super::spool::{self, FsyncPolicy, Spool, Vanished};
use super::stats::{DiskHealth, SpoolState};
use parking_lot::{Condvar, Mutex};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// How long the writer sleeps, unpoked, while nothing is on disk: a safety net, not a poll.
const QUIET_WAIT: Duration = Duration::from_secs(30);

/// Writes taken from one lane before the others get a turn.
const WRITES_PER_TURN: usize = 8;
/// After a failed write (other than a full filesystem), the next try waits this long.
const WRITE_RETRY: Duration = Duration::from_secs(1);

/// How the start went, for the caller that waits on it.
#[derive(Debug)]
pub(crate) enum Start {
    /// Locked: the spool is ours (its lanes open on this thread next).
    Locked,
    /// Another agent holds it: exit 2.
    Held(LockError),
    /// Not usable (not writable, …): memory only, already logged.
    Unusable,
}

pub(crate) struct DiskLane {
    pub(crate) cell: Arc<LaneCell>,
    pub(crate) budget: LaneBudget,
}

/// Tells the thread to finish and learns when it did.
#[derive(Default)]
pub(crate) struct Finish {
    asked: AtomicBool,
    done: Mutex<bool>,
    cv: Condvar,
}

impl Finish {
    pub(crate) fn ask(&self) {
        self.asked.store(true, Ordering::Release);
    }

    /// Waits until the thread has written everything it could, or `timeout`.
    pub(crate) fn wait(&self, timeout: Duration) -> bool {
        let mut d = self.done.lock();
        if !*d {
            let _ = self.cv.wait_for(&mut d, timeout);
        }
        *d
    }

    fn set_done(&self) {
        *self.done.lock() = true;
        self.cv.notify_all();
    }
}

struct Writer {
    root: PathBuf,
    fsync: FsyncPolicy,
    lanes: Vec<DiskLane>,
    spools: Vec<Option<Spool>>,
    health: Arc<DiskHealth>,
    wake: Arc<DiskWake>,
    finish: Arc<Finish>,
    lock: Option<SpoolLock>,
    write_blocked_until: Vec<Option<Instant>>,
    last_check: Instant,
}

/// Starts the writer thread for the spool at `root`; the receiver gets the lock's outcome.
pub(crate) fn spawn(
    root: PathBuf,
    fsync: FsyncPolicy,
    lanes: Vec<DiskLane>,
    health: Arc<DiskHealth>,
    wake: Arc<DiskWake>,
    finish: Arc<Finish>,
) -> std::sync::mpsc::Receiver<Start> {
    let (tx, rx) = std::sync::mpsc::channel();
    let n = lanes.len();
    let w = Writer {
        root,
        fsync,
        lanes,
        spools: (0..n).map(|_| None).collect(),
        health,
        wake,
        finish,
        lock: None,
        write_blocked_until: vec![None; n],
        last_check: Instant::now(),
    };
    let spawned = std::thread::Builder::new()
        .name("spool-writer".into())
        .spawn(move || w.run(tx));
    if let Err(e) = spawned {
        tracing::error!(error = %e, "cannot start the spool writer thread; queueing in memory only");
    }
    rx
}

fn describe(e: &std::io::Error) -> String {
    match e.raw_os_error() {
        Some(libc::ENOSPC) => format!("{e} (ENOSPC)"),
        Some(libc::EROFS) => format!("{e} (EROFS)"),
        Some(libc::EACCES) => format!("{e} (EACCES)"),
        Some(libc::EIO) => format!("{e} (EIO)"),
        _ => e.to_string(),
    }
}

impl Writer {
    fn io<T>(&self, op: String, f: impl FnOnce() -> T) -> T {
        self.health.begin(op);
        let r = f();
        self.health.end();
        r
    }

    fn give_up_all(&mut self, detail: &str) {
        for (i, l) in self.lanes.iter().enumerate() {
            self.spools[i] = None;
            l.cell.with(|lane, now| lane.spool_lost(detail, now));
            l.cell
                .stats
                .set_spool_state(SpoolState::Unusable(detail.to_string()));
        }
    }

    fn run(mut self, started: std::sync::mpsc::Sender<Start>) {
        let root = self.root.clone();
        let locked = self.io(format!("lock {}", root.display()), || {
            std::fs::create_dir_all(&root)
                .map_err(|e| LockError::Io {
                    dir: root.clone(),
                    source: e,
                })
                .and_then(|_| lock::lock(&root))
        });
        match locked {
            Ok(l) => {
                self.lock = Some(l);
                let _ = started.send(Start::Locked);
            }
            Err(e @ LockError::Held { .. }) => {
                let detail = e.to_string();
                // If the starter stopped waiting, it runs on: memory only, said once.
                if started.send(Start::Held(e)).is_err() {
                    tracing::error!(error = %detail, "spool: running memory-only");
                }
                self.give_up_all(&detail);
                self.finish.set_done();
                return;
            }
            Err(e) => {
                let detail = e.to_string();
                tracing::error!(error = %detail, "spool cannot be used: running memory-only; an outage longer than the memory budget loses the oldest batches (counted)");
                self.give_up_all(&detail);
                let _ = started.send(Start::Unusable);
                self.finish.set_done();
                return;
            }
        }
        let metrics_dir = root.join(super::Signal::Metrics.name());
        self.io(format!("migrate {}", root.display()), || {
            spool::migrate_flat_layout(&root, &metrics_dir)
        });
        for i in 0..self.lanes.len() {
            self.open_lane(i);
        }
        self.main_loop();
    }

    fn open_lane(&mut self, i: usize) {
        let (cell, budget) = (self.lanes[i].cell.clone(), self.lanes[i].budget);
        let signal = cell.stats.signal;
        let dir = self.root.join(signal.name());
        let opened = self.io(format!("open {}", dir.display()), || {
            Spool::open(&dir, budget.spool_max_bytes, self.fsync)
        });
        match opened {
            Ok(o) => {
                let (records, batches) = (
                    o.found.len(),
                    o.found.iter().map(|f| f.batches).sum::<u64>(),
                );
                let bytes = o.spool.bytes();
                let usable = cell.with(|lane, now| {
                    if !lane.spool_usable {
                        return false;
                    }
                    lane.spool_bytes = bytes;
                    lane.recovered(o.found, now);
                    true
                });
                if !usable {
                    return;
                }
                if records > 0 || o.skipped_spans > 0 {
                    tracing::info!(
                        dir = %dir.display(),
                        records,
                        batches,
                        bytes,
                        skipped_spans = o.skipped_spans,
                        skipped_bytes = o.skipped_bytes,
                        "spool opened: replaying undelivered batches first"
                    );
                }
                cell.stats.set_spool_state(SpoolState::Ready);
                self.spools[i] = Some(o.spool);
            }
            Err(e) => {
                let detail = format!("{}: {}", dir.display(), describe(&e));
                tracing::error!(signal = %signal.name(), error = %detail, "spool cannot be used: running memory-only; an outage longer than the memory budget loses the oldest batches (counted)");
                cell.with(|lane, now| lane.spool_lost(&detail, now));
                cell.stats.set_spool_state(SpoolState::Unusable(detail));
            }
        }
    }

    fn main_loop(mut self) {
        loop {
            let finishing = self.finish.asked.load(Ordering::Acquire);
            // Before any write: after a quiet wait the directory may have gone meanwhile.
            if self.last_check.elapsed() >= Duration::from_secs(1) {
                self.last_check = Instant::now();
                for i in 0..self.lanes.len() {
                    self.check_vanished(i);
                }
            }
            let mut busy = false;
            for i in 0..self.lanes.len() {
                if self.spools[i].is_some() {
                    busy |= self.step(i, finishing);
                }
            }
            if busy {
                continue;
            }
            for i in 0..self.lanes.len() {
                self.sync_if_dirty(i);
            }
            if finishing {
                // Close the spool and let go of its lock before saying done: once `shutdown`
                // returns, another exporter on the same spool (a restart in the same process)
                // must be able to take it. Dropping them after `set_done`, on the way out, raced
                // that start (seen once as `SpoolLocked` in the logs-sink test).
                self.spools.iter_mut().for_each(|s| *s = None);
                self.lock = None;
                self.finish.set_done();
                return;
            }
            // Nothing on disk, nothing to sync, no lane going through the disk (a failed write
            // to retry is one): nothing to check either until a lane pokes (a vanished directory
            // would lose nothing). An idle agent's writer sleeps instead of waking twice a second.
            let quiet = (0..self.lanes.len()).all(|i| {
                self.spools[i].as_ref().is_none_or(|s| !s.is_dirty())
                    && self.lanes[i]
                        .cell
                        .with(|l, _| l.nothing_on_disk() && !l.watched())
            });
            self.wake.wait(if quiet {
                QUIET_WAIT
            } else {
                Duration::from_millis(500)
            });
        }
    }

    fn sync_if_dirty(&mut self, i: usize) {
        let Some(spool) = self.spools[i].as_mut() else {
            return;
        };
        if spool.is_dirty() {
            let op = format!("fsync {}", spool.dir().display());
            self.health.begin(op);
            let r = spool.sync();
            self.health.end();
            if let Err(e) = r {
                tracing::warn!(dir = %spool.dir().display(), error = %describe(&e), "spool fsync failed");
            }
        }
    }

    /// One turn for lane `i`: move the `ack`, serve a read, write a few batches.
    fn step(&mut self, i: usize, finishing: bool) -> bool {
        let cell = self.lanes[i].cell.clone();
        let mut did = false;
        if let Some(head) = cell.with(|l, _| l.plan_commit()) {
            did = true;
            let spool = self.spools[i].as_mut().expect("open");
            let op = format!("ack {}", spool.dir().display());
            self.health.begin(op);
            let r = spool.advance(head);
            self.health.end();
            if let Err(e) = r {
                tracing::warn!(dir = %spool.dir().display(), error = %describe(&e), "cannot record the spool position; some batches may be sent twice after a restart");
            }
            cell.with(|l, _| l.spool_bytes = spool.bytes());
        }
        let read = if finishing {
            None
        } else {
            cell.with(|l, _| l.read_want.map(|_| l.plan_read()))
        };
        if let Some(plan) = read {
            did = true;
            let spool = self.spools[i].as_mut().expect("open");
            let op = format!("read {}", spool.dir().display());
            self.health.begin(op);
            let results = plan
                .into_iter()
                .map(|r| {
                    let res = spool.read(r.seg, r.off, r.len).map(|d| d.payload);
                    let dir = spool.dir().to_path_buf();
                    let res = res.map_err(|e| match e {
                        Damage::Io(e) if e.kind() == std::io::ErrorKind::NotFound => {
                            ReadBack::Missing { seg: r.seg, dir }
                        }
                        damage => ReadBack::Damaged {
                            seg: r.seg,
                            off: r.off,
                            dir,
                            damage,
                        },
                    });
                    (r, res)
                })
                .collect();
            self.health.end();
            cell.with(|l, now| l.read_done(results, now));
        }
        if self.write_blocked_until[i].is_some_and(|t| Instant::now() < t) {
            return did;
        }
        if !cell.with(|l, _| l.wants_write()) {
            return did;
        }
        // Before any pick: batches a vanished directory sends back to memory are older than
        // whatever would be picked now, and must be written first.
        if self.check_vanished(i) && self.spools[i].is_none() {
            return true;
        }
        for _ in 0..WRITES_PER_TURN {
            let Some(job) = cell.with(|l, _| l.next_write()) else {
                break;
            };
            did = true;
            if !self.write_one(i, job) {
                break;
            }
        }
        did
    }

    /// Writes one batch; false when writing should pause.
    fn write_one(
        &mut self,
        i: usize,
        (seq, payload, meta, batches): (u64, bytes::Bytes, bytes::Bytes, u64),
    ) -> bool {
        let cell = self.lanes[i].cell.clone();
        let rec = record::encode(&payload, &meta, batches);
        drop(payload);
        let need = rec.len() as u64;
        let Some(spool) = self.spools[i].as_mut() else {
            return false;
        };
        if need > spool.max_bytes() {
            cell.with(|l, now| l.unspoolable(seq, now));
            return true;
        }
        while spool.bytes() + need > spool.max_bytes()
            && let Some(old) = spool.oldest_segment()
        {
            let cause = format!(
                "spool_max_bytes ({}) reached in {}",
                spool.max_bytes(),
                spool.dir().display()
            );
            cell.with(|l, now| l.drop_segment(old, &cause, now));
            spool.remove_segment(old);
        }
        let mut made_room = 0;
        loop {
            let op = format!("write {}", spool.dir().display());
            self.health.begin(op);
            let r = spool.append(&rec);
            self.health.end();
            match r {
                Ok((seg, off)) => {
                    let bytes = spool.bytes();
                    let was_failing = cell.with(|l, now| {
                        let was = l.write_error.is_some();
                        l.spool_bytes = bytes;
                        l.stored(seq, seg, off, need, batches, now);
                        was
                    });
                    if was_failing {
                        tracing::info!(dir = %spool.dir().display(), "spool writable again");
                    }
                    *self.health.last_error.lock() = None;
                    self.write_blocked_until[i] = None;
                    return true;
                }
                Err(e)
                    if matches!(e.raw_os_error(), Some(libc::ENOSPC | libc::EDQUOT))
                        && made_room < 64
                        && spool.oldest_segment().is_some() =>
                {
                    made_room += 1;
                    let old = spool.oldest_segment().expect("checked");
                    let cause = format!(
                        "the filesystem of {} is full ({}) at {} bytes of spool",
                        spool.dir().display(),
                        describe(&e),
                        spool.bytes()
                    );
                    cell.with(|l, now| l.drop_segment(old, &cause, now));
                    spool.remove_segment(old);
                    cell.with(|l, _| l.spool_bytes = spool.bytes());
                }
                Err(e) => {
                    let msg = format!("{}: {}", spool.dir().display(), describe(&e));
                    let first = cell.with(|l, now| {
                        let first = l.write_error.is_none();
                        l.write_failed(seq, msg.clone(), now);
                        first
                    });
                    if first {
                        tracing::error!(error = %msg, "spool write failed; batches stay in memory and the write is retried every second");
                    }
                    *self.health.last_error.lock() = Some(msg);
                    self.write_blocked_until[i] = Some(Instant::now() + WRITE_RETRY);
                    return false;
                }
            }
        }
    }

    /// Finds a directory or tail segment removed behind our back; re-creates the directory.
    /// Returns whether something had vanished.
    fn check_vanished(&mut self, i: usize) -> bool {
        let Some(spool) = self.spools[i].as_mut() else {
            return false;
        };
        let cell = self.lanes[i].cell.clone();
        let Some(v) = spool.vanished() else {
            return false;
        };
        match v {
            Vanished::Segment(id, cause) => {
                cell.with(|l, now| l.vanished(Some(id), &cause, now));
                spool.remove_segment(id);
                cell.with(|l, _| l.spool_bytes = spool.bytes());
                tracing::error!(%cause, "spool segment removed while running; cached batches are written again, the rest is lost (counted)");
            }
            Vanished::Dir(cause) => {
                cell.with(|l, now| l.vanished(None, &cause, now));
                let dir = spool.dir().to_path_buf();
                let op = format!("re-create {}", dir.display());
                self.health.begin(op);
                let r = spool.reset();
                self.health.end();
                cell.with(|l, _| l.spool_bytes = 0);
                match r {
                    Ok(()) => {
                        tracing::error!(%cause, dir = %dir.display(), "spool directory re-created; batches that were only in it are lost (counted), the cached ones are written again")
                    }
                    Err(e) => {
                        let detail = format!("{cause}; re-creating it failed: {}", describe(&e));
                        tracing::error!(error = %detail, "spool cannot be used any more: running memory-only");
                        self.spools[i] = None;
                        cell.with(|l, now| l.spool_lost(&detail, now));
                        cell.stats.set_spool_state(SpoolState::Unusable(detail));
                    }
                }
                self.relock_if_gone();
            }
        }
        true
    }

    /// The root (and its lock file) went with a removed directory: lock the new one.
    fn relock_if_gone(&mut self) {
        let root = self.root.clone();
        if root.join(lock::LOCK_FILE).exists() {
            return;
        }
        let r = self.io(format!("lock {}", root.display()), || {
            std::fs::create_dir_all(&root)
                .map_err(|e| LockError::Io {
                    dir: root.clone(),
                    source: e,
                })
                .and_then(|_| lock::lock(&root))
        });
        match r {
            Ok(l) => self.lock = Some(l),
            Err(e) => {
                let detail = e.to_string();
                tracing::error!(error = %detail, "spool lock lost: running memory-only");
                self.give_up_all(&detail);
            }
        }
    }
}
