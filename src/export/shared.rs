//! The handle the producers, the sender task and the disk writer share for one lane: its lock,
//! and the two wake-ups. Every change goes through [`LaneCell::with`], which publishes the counts
//! and then, with the lock released, runs the producers' hooks, writes the loss lines and wakes
//! whoever has work, so no hook, log write or wake-up ever runs under the lock.

use super::lane::Lane;
use super::stats::ExportStats;
use parking_lot::{Condvar, Mutex};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Notify;

/// Wakes the disk writer thread.
#[derive(Default)]
pub(crate) struct DiskWake {
    pending: Mutex<bool>,
    cv: Condvar,
}

impl DiskWake {
    pub(crate) fn poke(&self) {
        *self.pending.lock() = true;
        self.cv.notify_one();
    }

    /// Waits until poked or `timeout` passed.
    pub(crate) fn wait(&self, timeout: Duration) {
        let mut p = self.pending.lock();
        if !*p {
            let _ = self.cv.wait_for(&mut p, timeout);
        }
        *p = false;
    }
}

pub(crate) struct LaneCell {
    state: Mutex<Lane>,
    /// The sender task waits here for work.
    pub(crate) sender: Notify,
    pub(crate) stats: Arc<ExportStats>,
    disk: Arc<DiskWake>,
}

impl LaneCell {
    pub(crate) fn new(lane: Lane, stats: Arc<ExportStats>, disk: Arc<DiskWake>) -> Self {
        LaneCell {
            state: Mutex::new(lane),
            sender: Notify::new(),
            stats,
            disk,
        }
    }

    /// Runs `f` on the lane, then its effects outside the lock.
    pub(crate) fn with<R>(&self, f: impl FnOnce(&mut Lane, Instant) -> R) -> R {
        let (r, fx, signal) = {
            let mut lane = self.state.lock();
            let r = f(&mut lane, Instant::now());
            self.stats.publish(lane.snapshot());
            if lane.watched() {
                self.stats.disk.watchdog.notify_one();
            }
            (r, lane.take_effects(), lane.signal)
        };
        for line in &fx.lines {
            line.emit(signal);
        }
        for note in &fx.notes {
            note.emit(signal);
        }
        for (hook, settled) in fx.hooks {
            hook(settled);
        }
        if fx.wake_sender {
            self.sender.notify_one();
        }
        if fx.wake_disk {
            self.disk.poke();
        }
        r
    }
}
