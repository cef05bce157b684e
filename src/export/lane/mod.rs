//! One signal's queue: what is in memory, what is on disk, what is being sent, and the counts.
//! Pure bookkeeping under one lock; no I/O here (the disk writer and the sender do that, and
//! report back through these methods).
//!
//! Every batch has a sequence number. A batch lives in memory (`list`, or `inflight` while it is
//! being sent), on disk (a [`Rec`] in `disk`, the spool's index in write order), or both: a batch
//! written ahead stays *cached* in memory until the memory budget wants the room, so the sender
//! rarely reads back what it just wrote. Order is kept by construction: the sender always takes
//! the oldest unsettled batch (the in-flight request, then whichever is older of the first
//! disk-only record and the first memory batch), and the disk writer always writes the oldest
//! batch that wants writing, so the spool's records are in sequence order.
//!
//! **Write-ahead.** While delivery is prompt (the collector answers and nothing waits on disk)
//! batches stay in memory only: no disk I/O at all. Once it is not (a failed or timed-out attempt,
//! a backlog on disk, or memory more than half full) every batch up to the newest wants writing,
//! and every new one does at once, so a `kill -9` loses at most what the writer had not reached.
//!
//! **Memory.** Past the budget, batches already on disk give up their memory first (free);
//! then, only if the disk cannot take them (no spool, writes failing or stalled, or memory past
//! twice the budget), the oldest that are only in memory are dropped and counted. Older batches
//! on disk stay: dropping them would free no memory.
//!
//! **A full spool** deletes its oldest segment ([`Lane::drop_segment`]), and every batch in it
//! is dropped and counted, a copy cached in memory too: they are the oldest waiting, in memory or
//! on disk, and a copy kept would be older than what the next segments to go hold. The request
//! in flight is the exception: its attempt settles it (the collector may have it already), so it
//! can arrive ahead of the gap. A backlog caught up while the spool is still at its budget keeps
//! making room this way, so a gap can follow any batch delivered during the catch-up.

mod writer;

use super::signal::{AUTO_MEMORY_MAX, LaneBudget, Signal};
use super::stats::{Counts, DiskHealth, DropReason, LossLine, LossLog, OnSettled, Settled};
use bytes::{Bytes, BytesMut};
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Sequence numbers of batches found in the spool at start are below this; new ones start here.
pub(crate) const FIRST_NEW_SEQ: u64 = 1 << 40;

/// A disk that has not finished an operation for this long is treated as unable to take more.
const TROUBLE_AFTER: Duration = Duration::from_secs(1);

/// Where a memory batch stands with the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Disk {
    /// Not written (and not wanted, or waiting for the writer).
    No,
    /// The writer holds a copy and is writing it.
    Writing,
    /// On disk; its [`Rec`] is in the index.
    Stored,
    /// Will not be written: larger than the spool, in flight when its record was dropped from
    /// the spool to make room (a copy waiting in memory goes with its record), or a fragment of
    /// a split batch.
    Never(Never),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Never {
    TooLarge,
    SpoolDropped,
    Fragment,
}

/// A batch (or a fragment of one) in memory.
pub(crate) struct Item {
    pub(crate) seq: u64,
    /// Batches this item completes: 0 for a fragment that is not the last of its batch.
    pub(crate) batches: u64,
    pub(crate) payload: Bytes,
    pub(crate) meta: Bytes,
    pub(crate) disk: Disk,
    hook: Option<OnSettled>,
    /// Its place in the in-flight buffer, when it is a slice of it.
    range: Option<(usize, usize)>,
    /// For the last fragment of a batch split before it reached the disk: the whole batch, which
    /// is what the disk writer stores if delivery stalls (a fragment alone would replay only part
    /// of it). Dropped as soon as an earlier fragment is settled, so nothing is sent twice.
    whole: Option<Bytes>,
}

impl Item {
    /// Bytes this item holds in memory.
    fn mem(&self) -> u64 {
        (self.payload.len() + self.whole.as_ref().map_or(0, |w| w.len())) as u64
    }
}

/// A record in the spool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Rec {
    pub(crate) seq: u64,
    pub(crate) seg: u64,
    pub(crate) off: u64,
    pub(crate) len: u64,
    pub(crate) batches: u64,
    /// Whether the batch is also in memory.
    pub(crate) cached: bool,
}

/// What the sender gets from [`Lane::take`].
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Take {
    /// `inflight` holds a request to send.
    Ready,
    /// The oldest batch is on disk only: a read was requested from the writer.
    NeedRead,
    /// Nothing to send (or the spool is still being opened): wait.
    Wait,
}

/// What to do once the lock is released: hooks to call, loss lines to log, who to wake.
#[derive(Default)]
pub(crate) struct Effects {
    pub(crate) hooks: Vec<(OnSettled, Settled)>,
    pub(crate) lines: Vec<LossLine>,
    /// What the operator should know about the budget (logged outside the lock).
    pub(crate) notes: Vec<Note>,
    pub(crate) wake_sender: bool,
    pub(crate) wake_disk: bool,
}

/// A line about the lane's memory budget.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Note {
    Grown(String),
    TooSmall(String),
}

impl Note {
    pub(crate) fn emit(&self, signal: Signal) {
        match self {
            Note::Grown(m) => tracing::info!(signal = signal.name(), "{m}"),
            Note::TooSmall(m) => tracing::warn!(signal = signal.name(), "{m}"),
        }
    }
}

/// The setting of a lane's memory budget.
fn memory_setting(signal: Signal) -> &'static str {
    match signal {
        Signal::Metrics => "queue_memory_bytes",
        Signal::Logs => "logs_queue_memory_bytes",
    }
}

fn mib(b: u64) -> f64 {
    b as f64 / f64::from(1 << 20)
}

pub(crate) struct Lane {
    pub(crate) signal: Signal,
    pub(crate) budget: LaneBudget,
    /// A spool is configured and usable (or still being opened).
    pub(crate) spool_usable: bool,
    pub(crate) opening: bool,
    next_seq: u64,
    list: VecDeque<Item>,
    pub(crate) inflight: Vec<Item>,
    inflight_buf: Bytes,
    /// Parts of `inflight` in the attempt being made.
    pub(crate) active: usize,
    mem_bytes: u64,
    mem_batches: u64,
    pub(crate) disk: VecDeque<Rec>,
    disk_only_batches: u64,
    disk_only_records: u64,
    pub(crate) spool_bytes: u64,
    want_through: u64,
    pub(crate) failing: bool,
    pub(crate) commit_through: u64,
    /// Bytes the sender asked the writer to read back.
    pub(crate) read_want: Option<usize>,
    /// A fragment of the batch being finished was dropped: (reason, cause).
    frag_failed: Option<(DropReason, String)>,
    /// The writer's last write failed (cleared by the next success).
    pub(crate) write_error: Option<String>,
    pub(crate) counts: Counts,
    losses: LossLog,
    fx: Effects,
    /// Metas of the batches found in the spool at start, oldest first.
    pub(crate) recovered_meta: Vec<Bytes>,
    pub(crate) closing: bool,
    health: Arc<DiskHealth>,
    /// A batch larger than an operator's budget was said (once).
    told_too_small: bool,
}

fn concat(parts: &[&Bytes]) -> Bytes {
    let mut b = BytesMut::with_capacity(parts.iter().map(|p| p.len()).sum());
    for p in parts {
        b.extend_from_slice(p);
    }
    b.freeze()
}

impl Lane {
    pub(crate) fn new(
        signal: Signal,
        budget: LaneBudget,
        spool: bool,
        health: Arc<DiskHealth>,
    ) -> Lane {
        Lane {
            signal,
            budget,
            spool_usable: spool,
            opening: spool,
            next_seq: FIRST_NEW_SEQ,
            list: VecDeque::new(),
            inflight: Vec::new(),
            inflight_buf: Bytes::new(),
            active: 0,
            mem_bytes: 0,
            mem_batches: 0,
            disk: VecDeque::new(),
            disk_only_batches: 0,
            disk_only_records: 0,
            spool_bytes: 0,
            want_through: 0,
            failing: false,
            commit_through: 0,
            read_want: None,
            frag_failed: None,
            write_error: None,
            counts: Counts::default(),
            losses: LossLog::default(),
            fx: Effects::default(),
            recovered_meta: Vec::new(),
            closing: false,
            health,
            told_too_small: false,
        }
    }

    /// The counters as of now (published after every change).
    pub(crate) fn snapshot(&mut self) -> Counts {
        let c = &mut self.counts;
        c.memory_batches = self.mem_batches;
        c.memory_bytes = self.mem_bytes;
        c.disk_batches = self.disk_only_batches;
        c.disk_bytes = self.spool_bytes;
        *c
    }

    pub(crate) fn take_effects(&mut self) -> Effects {
        std::mem::take(&mut self.fx)
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.list.is_empty() && self.inflight.is_empty() && self.disk_only_records == 0
    }

    /// Batches that would be lost if the process died now (in memory only).
    #[cfg(test)]
    pub(crate) fn unprotected(&self) -> u64 {
        self.list
            .iter()
            .chain(&self.inflight)
            .filter(|i| i.disk != Disk::Stored)
            .map(|i| i.batches)
            .sum()
    }

    /// Whether the queue's watchdog has work here on its half-second rounds: the spool being
    /// opened, losses waiting to be summed up, batches going through the disk, or memory over
    /// the budget. A lane that delivers promptly is none of these, and the watchdog sleeps.
    pub(crate) fn watched(&self) -> bool {
        self.opening
            || self.losses.pending()
            || self.degraded()
            || self.mem_bytes > self.budget.memory_bytes
    }

    /// Whether the spool holds nothing of this lane (a vanished directory would lose nothing).
    pub(crate) fn nothing_on_disk(&self) -> bool {
        self.disk.is_empty() && self.disk_only_records == 0
    }

    /// Whether delivery is not prompt, so new batches must be written ahead.
    fn degraded(&self) -> bool {
        let waiting: u64 = self.mem_bytes - self.inflight.iter().map(Item::mem).sum::<u64>();
        self.spool_usable
            && (self.failing
                || self.opening
                || self.closing
                || !self.disk.is_empty()
                || waiting * 2 > self.budget.memory_bytes)
    }

    /// Re-evaluates write-ahead and the memory budget after any change.
    pub(crate) fn settle_state(&mut self, now: Instant) {
        if self.degraded() && self.want_through + 1 < self.next_seq {
            self.want_through = self.next_seq - 1;
            self.fx.wake_disk = true;
        }
        self.enforce_budget(now);
    }

    /// Queues one batch (a `batches`-sample request) with the producer's meta and hook.
    pub(crate) fn push(
        &mut self,
        payload: Bytes,
        meta: Bytes,
        batches: u64,
        hook: Option<OnSettled>,
        now: Instant,
    ) {
        self.fit_budget(payload.len() as u64);
        let seq = self.next_seq;
        self.next_seq += 1;
        self.counts.enqueued += batches;
        self.mem_bytes += payload.len() as u64;
        self.mem_batches += batches;
        self.list.push_back(Item {
            seq,
            batches,
            payload,
            meta,
            disk: Disk::No,
            hook,
            range: None,
            whole: None,
        });
        self.fx.wake_sender = true;
        self.settle_state(now);
    }

    /// Makes room for a batch of `len` bytes: a default budget grows to three such batches (one
    /// being sent, one waiting, one arriving), in powers of two so that a node whose samples grow
    /// as its containers are found says so a few times, not every cycle; an operator's budget that
    /// cannot hold even one is said once, with the value that would.
    fn fit_budget(&mut self, len: u64) {
        let budget = &mut self.budget;
        let setting = memory_setting(self.signal);
        let want = len.saturating_mul(3).next_multiple_of(1 << 20);
        if budget.memory_auto && want > budget.memory_bytes {
            let grown = want
                .checked_next_power_of_two()
                .unwrap_or(u64::MAX)
                .min(AUTO_MEMORY_MAX)
                .max(budget.memory_bytes);
            if grown > budget.memory_bytes {
                budget.memory_bytes = grown;
                self.fx.notes.push(Note::Grown(format!(
                    "the {} queue's memory budget grows to {:.0} MiB: three batches of {:.1} MiB ({setting} is at its default; set it to fix a limit)",
                    self.signal.name(),
                    mib(grown),
                    mib(len),
                )));
                return;
            }
        }
        if len > budget.memory_bytes && !self.told_too_small {
            self.told_too_small = true;
            self.fx.notes.push(Note::TooSmall(format!(
                "a {} batch of {:.1} MiB is larger than the queue's memory budget ({:.1} MiB): such batches go through the spool, and are dropped (and counted) when over twice the budget; set {setting} to at least {:.0} MiB",
                self.signal.name(),
                mib(len),
                mib(budget.memory_bytes),
                mib(want),
            )));
        }
    }

    fn lose(&mut self, reason: DropReason, batches: u64, cause: &str, now: Instant) {
        self.counts.drop(reason, batches);
        self.losses
            .record(reason, batches, cause, now, &mut self.fx.lines);
    }

    /// Sums up pending loss lines whose time has come.
    pub(crate) fn tick(&mut self, now: Instant, flush: bool) {
        self.losses.tick(now, flush, &mut self.fx.lines);
    }

    fn disk_in_trouble(&self) -> bool {
        self.write_error.is_some() || self.health.busy_for().is_some_and(|d| d >= TROUBLE_AFTER)
    }

    fn index_of_rec(&self, seq: u64) -> Option<usize> {
        self.disk.binary_search_by_key(&seq, |r| r.seq).ok()
    }

    /// Frees memory down to the budget: cached batches first, then (when the disk cannot help)
    /// the oldest memory-only batches, counted.
    fn enforce_budget(&mut self, now: Instant) {
        let budget = self.budget.memory_bytes;
        while self.mem_bytes > budget {
            if let Some(i) = self.list.iter().position(|it| it.disk == Disk::Stored) {
                let it = self.list.remove(i).expect("position");
                self.mem_bytes -= it.mem();
                self.mem_batches -= it.batches;
                if let Some(r) = self.index_of_rec(it.seq) {
                    let rec = &mut self.disk[r];
                    rec.cached = false;
                    self.disk_only_batches += rec.batches;
                    self.disk_only_records += 1;
                }
                continue;
            }
            let trouble = !self.spool_usable
                || self.disk_in_trouble()
                || self.mem_bytes > budget.saturating_mul(2);
            let victim = self.list.iter().position(|it| match it.disk {
                Disk::Never(_) => true,
                Disk::No => trouble || it.seq > self.want_through,
                Disk::Writing | Disk::Stored => false,
            });
            let Some(i) = victim else { break };
            let it = self.list.remove(i).expect("position");
            self.mem_bytes -= it.mem();
            self.mem_batches -= it.batches;
            let cause = match it.disk {
                Disk::Never(Never::TooLarge) => {
                    "memory full; the batch is larger than the spool".to_string()
                }
                _ if !self.spool_usable => "memory full and no spool".to_string(),
                _ => match (&self.write_error, self.health.busy_for()) {
                    (Some(e), _) => format!("memory full and the spool cannot be written: {e}"),
                    (None, Some(d)) if d >= TROUBLE_AFTER => format!(
                        "memory full and the spool disk has not answered for {:.1} s",
                        d.as_secs_f64()
                    ),
                    _ => "memory full faster than the spool takes it".to_string(),
                },
            };
            let reason = DropReason::QueueFull;
            self.lose(reason, it.batches, &cause, now);
            if let Some(h) = it.hook {
                self.fx.hooks.push((h, Settled::Dropped(reason)));
            }
        }
    }

    /// The oldest disk-only record's sequence number.
    fn first_disk_only(&self) -> Option<u64> {
        (self.disk_only_records > 0)
            .then(|| self.disk.iter().find(|r| !r.cached).map(|r| r.seq))
            .flatten()
    }

    /// Prepares the next request: the in-flight one (a retry), else the oldest batches merged up
    /// to `limit` bytes, or a read of the oldest disk-only records.
    pub(crate) fn take(&mut self, limit: usize) -> Take {
        if !self.inflight.is_empty() {
            return Take::Ready;
        }
        if self.opening {
            return Take::Wait;
        }
        let mem_first = self.list.front().map(|i| i.seq);
        if let Some(d) = self.first_disk_only()
            && mem_first.is_none_or(|m| d < m)
        {
            if self.read_want.is_none() {
                let room = self.budget.memory_bytes.saturating_sub(self.mem_bytes) as usize;
                self.read_want = Some(limit.min(room).max(1));
                self.fx.wake_disk = true;
            }
            return Take::NeedRead;
        }
        let stop = self.first_disk_only().unwrap_or(u64::MAX);
        let mut size = 0;
        let mut n = 0;
        for it in &self.list {
            if it.seq > stop || (n > 0 && size + it.payload.len() > limit) {
                break;
            }
            size += it.payload.len();
            n += 1;
        }
        if n == 0 {
            return Take::Wait;
        }
        let items: Vec<Item> = self.list.drain(..n).collect();
        self.install_inflight(items);
        Take::Ready
    }

    /// Makes `items` the in-flight request, their payloads slices of one buffer.
    fn install_inflight(&mut self, mut items: Vec<Item>) {
        if items.len() > 1 {
            let buf = concat(&items.iter().map(|i| &i.payload).collect::<Vec<_>>());
            let mut at = 0;
            for it in &mut items {
                let end = at + it.payload.len();
                it.payload = buf.slice(at..end);
                it.range = Some((at, end));
                at = end;
            }
            self.inflight_buf = buf;
        } else {
            self.inflight_buf = Bytes::new();
        }
        self.active = items.len();
        self.inflight = items;
    }

    /// The bytes of the attempt: the first `active` in-flight parts as one request.
    pub(crate) fn request(&self) -> Bytes {
        let parts = &self.inflight[..self.active.min(self.inflight.len())];
        match parts {
            [] => Bytes::new(),
            [one] => one.payload.clone(),
            _ => {
                let contiguous = parts.windows(2).all(|w| match (w[0].range, w[1].range) {
                    (Some(a), Some(b)) => a.1 == b.0,
                    _ => false,
                });
                match (contiguous, parts[0].range, parts[parts.len() - 1].range) {
                    (true, Some(a), Some(b)) => self.inflight_buf.slice(a.0..b.1),
                    _ => concat(&parts.iter().map(|p| &p.payload).collect::<Vec<_>>()),
                }
            }
        }
    }

    /// Batches in the attempt (for logs).
    pub(crate) fn active_batches(&self) -> u64 {
        self.inflight[..self.active].iter().map(|i| i.batches).sum()
    }

    fn finish_part(&mut self, it: Item, outcome: Result<(), (DropReason, String)>, now: Instant) {
        self.mem_bytes -= it.mem();
        self.mem_batches -= it.batches;
        if it.batches == 0 {
            // Part of the batch is settled: storing the whole batch now would send that part
            // twice; what the disk writer stores from now on is what remains of it.
            let rest: Vec<usize> = (0..self.inflight.len())
                .filter(|&i| self.inflight[i].seq == it.seq)
                .collect();
            if let Some(&last) = rest.last()
                && self.inflight[last].whole.is_some()
            {
                let remains = (rest.len() > 1).then(|| {
                    concat(
                        &rest
                            .iter()
                            .map(|&i| &self.inflight[i].payload)
                            .collect::<Vec<_>>(),
                    )
                });
                let tail = &mut self.inflight[last];
                let before = tail.mem();
                tail.whole = remains;
                self.mem_bytes = self.mem_bytes - before + tail.mem();
            }
            if let Err(e) = outcome
                && self.frag_failed.is_none()
            {
                self.frag_failed = Some(e);
            }
            return;
        }
        self.commit_through = self.commit_through.max(it.seq);
        self.fx.wake_disk |= it.disk == Disk::Stored || it.disk == Disk::Writing;
        let outcome = match (self.frag_failed.take(), outcome) {
            (None, o) => o,
            (Some((r, c)), _) => Err((r, format!("part of the batch was refused: {c}"))),
        };
        let settled = match outcome {
            Ok(()) => {
                self.counts.sent += it.batches;
                Settled::Delivered
            }
            Err((reason, cause)) => {
                self.lose(reason, it.batches, &cause, now);
                Settled::Dropped(reason)
            }
        };
        if let Some(h) = it.hook {
            self.fx.hooks.push((h, settled));
        }
    }

    /// The attempt's parts were delivered; the rest of the in-flight request goes next, no larger
    /// than this attempt.
    pub(crate) fn attempt_sent(&mut self, now: Instant) {
        let n = self.active;
        for it in self.inflight.drain(..n).collect::<Vec<_>>() {
            self.finish_part(it, Ok(()), now);
        }
        self.failing = false;
        self.active = n.min(self.inflight.len());
        if self.inflight.is_empty() {
            self.inflight_buf = Bytes::new();
        }
        self.fx.wake_sender = true;
        self.settle_state(now);
    }

    /// The first `n` parts of the attempt are given up on.
    pub(crate) fn attempt_dropped(
        &mut self,
        n: usize,
        reason: DropReason,
        cause: &str,
        now: Instant,
    ) {
        let n = n.min(self.inflight.len());
        for it in self.inflight.drain(..n).collect::<Vec<_>>() {
            self.finish_part(it, Err((reason, cause.to_string())), now);
        }
        self.active = self
            .active
            .saturating_sub(n)
            .max(1)
            .min(self.inflight.len());
        if self.inflight.is_empty() {
            self.inflight_buf = Bytes::new();
        }
        self.fx.wake_sender = true;
        self.settle_state(now);
    }

    /// A failed attempt that will be repeated.
    pub(crate) fn attempt_failed(&mut self, now: Instant) {
        self.counts.retried += 1;
        self.failing = true;
        self.settle_state(now);
    }

    /// Replaces the single part of the attempt by the two halves of its payload. Returns false
    /// when it cannot be split (one data point or record).
    pub(crate) fn split_single(
        &mut self,
        split: impl Fn(&Bytes) -> Option<(Bytes, Bytes)>,
    ) -> bool {
        let Some(first) = self.inflight.first() else {
            return false;
        };
        let Some((a, b)) = split(&first.payload) else {
            return false;
        };
        let it = self.inflight.remove(0);
        // A batch not yet on disk keeps its whole payload with its last fragment, for the disk
        // writer (the first fragment is never written on its own).
        let (head_disk, whole) = match it.disk {
            Disk::No | Disk::Writing => (
                Disk::Never(Never::Fragment),
                Some(it.whole.clone().unwrap_or_else(|| it.payload.clone())),
            ),
            d => (d, None),
        };
        let whole = if it.batches == 0 { None } else { whole };
        let before = it.mem();
        let head = Item {
            seq: it.seq,
            batches: 0,
            payload: a,
            meta: Bytes::new(),
            disk: head_disk,
            hook: None,
            range: None,
            whole: None,
        };
        let tail = Item {
            payload: b,
            disk: if it.batches == 0 { head_disk } else { it.disk },
            range: None,
            whole,
            ..it
        };
        self.mem_bytes = self.mem_bytes - before + head.mem() + tail.mem();
        self.inflight.insert(0, tail);
        self.inflight.insert(0, head);
        self.active = 1;
        true
    }

    /// Recomputes every derived counter (tests).
    #[cfg(test)]
    pub(crate) fn check(&self) {
        let mem: u64 = self.list.iter().chain(&self.inflight).map(Item::mem).sum();
        let b: u64 = self
            .list
            .iter()
            .chain(&self.inflight)
            .map(|i| i.batches)
            .sum();
        assert_eq!(mem, self.mem_bytes);
        assert_eq!(b, self.mem_batches);
        let d: u64 = self
            .disk
            .iter()
            .filter(|r| !r.cached)
            .map(|r| r.batches)
            .sum();
        assert_eq!(d, self.disk_only_batches);
        assert!(
            self.disk
                .iter()
                .zip(self.disk.iter().skip(1))
                .all(|(a, b)| a.seq < b.seq)
        );
    }
}

#[cfg(test)]
mod tests;
