//! The lane as the disk writer, the spool's recovery and the shutdown see it: which batch to
//! write next (always the oldest that wants it, so the spool stays in sequence order), what a
//! write, a read or a lost segment did, how far the `ack` may move, and what is left at exit.

use super::{Disk, Item, Lane, Never, Rec};
use crate::export::spool::Found;
use crate::export::spool::record::ReadBack;
use crate::export::stats::{DropReason, Settled};
use bytes::Bytes;
use std::time::Instant;

/// What becomes of the copy in memory of a record removed from the spool's index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Copies {
    /// Written again (the record was lost, not given up).
    WriteAgain,
    /// Dropped with the record, unless it is in flight (then it is never written again).
    GoWithIt,
}

impl Lane {
    fn write_bound(&self) -> Option<u64> {
        (self.spool_usable && !self.opening).then_some(if self.closing {
            u64::MAX
        } else {
            self.want_through
        })
    }

    /// Whether some batch wants writing.
    pub(crate) fn wants_write(&self) -> bool {
        self.write_bound().is_some_and(|want| {
            self.inflight
                .iter()
                .chain(self.list.iter())
                .any(|i| i.disk == Disk::No && i.seq <= want)
        })
    }

    /// The oldest batch that wants writing; marks it `Writing` and hands out a copy. (The spool
    /// keeps sequence order because this is always the oldest: a directory found gone is
    /// handled before the pick, never between the pick and the write.)
    pub(crate) fn next_write(&mut self) -> Option<(u64, Bytes, Bytes, u64)> {
        let want = self.write_bound()?;
        let it = self
            .inflight
            .iter_mut()
            .chain(self.list.iter_mut())
            .find(|i| i.disk == Disk::No && i.seq <= want)?;
        it.disk = Disk::Writing;
        Some((
            it.seq,
            it.whole.clone().unwrap_or_else(|| it.payload.clone()),
            it.meta.clone(),
            it.batches.max(1),
        ))
    }

    fn items_with(&mut self, seq: u64) -> impl Iterator<Item = &mut Item> {
        self.inflight
            .iter_mut()
            .chain(self.list.iter_mut())
            .filter(move |i| i.seq == seq)
    }

    /// The writer stored batch `seq` at `seg`/`off`.
    pub(crate) fn stored(
        &mut self,
        seq: u64,
        seg: u64,
        off: u64,
        len: u64,
        batches: u64,
        now: Instant,
    ) {
        let mut found = false;
        let mut hooks = Vec::new();
        for it in self.items_with(seq) {
            found = true;
            it.disk = Disk::Stored;
            if let Some(h) = it.hook.take() {
                hooks.push((h, Settled::Spooled));
            }
        }
        self.fx.hooks.extend(hooks);
        self.write_error = None;
        // Not found: delivered while it was being written; the commit removes it.
        debug_assert!(self.disk.back().is_none_or(|r| r.seq < seq), "spool order");
        self.disk.push_back(Rec {
            seq,
            seg,
            off,
            len,
            batches,
            cached: true,
        });
        if !found {
            self.fx.wake_disk = true;
        }
        self.settle_state(now);
    }

    /// The write of `seq` failed; it will be tried again.
    pub(crate) fn write_failed(&mut self, seq: u64, error: String, now: Instant) {
        for it in self.items_with(seq) {
            if it.disk == Disk::Writing {
                it.disk = Disk::No;
            }
        }
        self.write_error = Some(error);
        self.settle_state(now);
    }

    /// `seq` can never be written (larger than the spool).
    pub(crate) fn unspoolable(&mut self, seq: u64, now: Instant) {
        for it in self.items_with(seq) {
            it.disk = Disk::Never(Never::TooLarge);
        }
        self.settle_state(now);
    }

    /// Removes the index entries `gone` picks; batches only on disk are lost with
    /// `reason`/`cause`, and what becomes of a copy in memory is `copies`. Returns the batches
    /// lost.
    fn remove_recs(
        &mut self,
        mut gone: impl FnMut(&Rec) -> bool,
        copies: Copies,
        reason: DropReason,
        cause: &str,
        now: Instant,
    ) -> u64 {
        let mut lost = 0;
        let mut uncache = Vec::new();
        self.disk.retain(|r| {
            if !gone(r) {
                return true;
            }
            if r.cached {
                uncache.push(r.seq);
            } else {
                lost += r.batches;
            }
            false
        });
        for seq in uncache {
            if copies == Copies::GoWithIt
                && let Ok(i) = self.list.binary_search_by_key(&seq, |it| it.seq)
            {
                let it = self.list.remove(i).expect("found");
                self.mem_bytes -= it.mem();
                self.mem_batches -= it.batches;
                lost += it.batches;
                if let Some(h) = it.hook {
                    self.fx.hooks.push((h, Settled::Dropped(reason)));
                }
                continue;
            }
            let then = match copies {
                Copies::WriteAgain => Disk::No,
                Copies::GoWithIt => Disk::Never(Never::SpoolDropped),
            };
            for it in self.items_with(seq) {
                it.disk = then;
            }
        }
        self.recount_disk_only();
        self.lose(reason, lost, cause, now);
        self.settle_state(now);
        lost
    }

    fn recount_disk_only(&mut self) {
        let (mut n, mut b) = (0, 0);
        for r in self.disk.iter().filter(|r| !r.cached) {
            n += 1;
            b += r.batches;
        }
        self.disk_only_records = n;
        self.disk_only_batches = b;
    }

    /// Segment `seg` was deleted to make room (budget or a full filesystem): its batches are the
    /// oldest waiting, and every one goes, a copy in memory too (kept, it would be older than
    /// the batches the next segments to go hold: oldest first holds across memory and disk).
    /// The request in flight is the exception: its attempt settles it.
    pub(crate) fn drop_segment(&mut self, seg: u64, cause: &str, now: Instant) -> u64 {
        self.remove_recs(
            |r| r.seg == seg,
            Copies::GoWithIt,
            DropReason::SpoolFull,
            cause,
            now,
        )
    }

    /// Segment `seg` (or, with `None`, the whole directory) disappeared. Cached batches are
    /// written again; the rest is lost.
    pub(crate) fn vanished(&mut self, seg: Option<u64>, cause: &str, now: Instant) -> u64 {
        self.remove_recs(
            |r| seg.is_none_or(|s| r.seg == s),
            Copies::WriteAgain,
            DropReason::Unreadable,
            cause,
            now,
        )
    }

    /// The records the writer should read back for the sender: consecutive disk-only ones from
    /// the oldest, up to the bytes asked for (at least one).
    pub(crate) fn plan_read(&mut self) -> Vec<Rec> {
        let Some(limit) = self.read_want else {
            return Vec::new();
        };
        let mem_first = self.list.front().map_or(u64::MAX, |i| i.seq);
        let mut out: Vec<Rec> = Vec::new();
        let mut size = 0;
        for r in self.disk.iter().skip_while(|r| r.cached) {
            if r.cached || r.seq > mem_first || (!out.is_empty() && size + r.len as usize > limit) {
                break;
            }
            size += r.len as usize;
            out.push(*r);
        }
        out
    }

    /// What the read gave: payloads (now in flight) or why a record was unreadable.
    pub(crate) fn read_done(&mut self, results: Vec<(Rec, Result<Bytes, ReadBack>)>, now: Instant) {
        self.read_want = None;
        let mut items = Vec::new();
        for (rec, res) in results {
            let Some(i) = self.index_of_rec(rec.seq) else {
                continue;
            };
            match res {
                Ok(payload) => {
                    let r = &mut self.disk[i];
                    r.cached = true;
                    self.disk_only_records -= 1;
                    self.disk_only_batches -= r.batches;
                    self.mem_bytes += payload.len() as u64;
                    self.mem_batches += r.batches;
                    items.push(Item {
                        seq: rec.seq,
                        batches: rec.batches,
                        payload,
                        meta: Bytes::new(),
                        disk: Disk::Stored,
                        hook: None,
                        range: None,
                        whole: None,
                    });
                }
                Err(cause) => {
                    self.disk.remove(i);
                    self.disk_only_records -= 1;
                    self.disk_only_batches -= rec.batches;
                    self.lose(DropReason::Unreadable, rec.batches, &cause.to_string(), now);
                }
            }
        }
        if self.inflight.is_empty() && !items.is_empty() {
            self.install_inflight(items);
        }
        self.fx.wake_sender = true;
        self.settle_state(now);
    }

    /// Removes the index entries of settled batches. Returns the new oldest record's place
    /// (`Some(None)`: nothing is left) when the `ack` must move.
    pub(crate) fn plan_commit(&mut self) -> Option<Option<(u64, u64)>> {
        let mut moved = false;
        while let Some(r) = self.disk.front()
            && r.seq <= self.commit_through
        {
            let r = self.disk.pop_front().expect("front");
            if !r.cached {
                self.disk_only_records -= 1;
                self.disk_only_batches -= r.batches;
            }
            moved = true;
        }
        moved.then(|| self.disk.front().map(|r| (r.seg, r.off)))
    }

    /// The spool was opened: what it held is queued ahead of everything new.
    pub(crate) fn recovered(&mut self, found: Vec<Found>, now: Instant) {
        for (i, f) in found.into_iter().enumerate() {
            self.counts.recovered += f.batches;
            self.disk_only_records += 1;
            self.disk_only_batches += f.batches;
            if !f.meta.is_empty() {
                self.recovered_meta.push(f.meta);
            }
            self.disk.push_back(Rec {
                seq: i as u64 + 1,
                seg: f.seg,
                off: f.off,
                len: f.len,
                batches: f.batches,
                cached: false,
            });
        }
        self.opening = false;
        self.fx.wake_sender = true;
        self.fx.wake_disk = true;
        self.settle_state(now);
    }

    /// The spool cannot be used any more: what only it held is lost, memory only from now on.
    pub(crate) fn spool_lost(&mut self, cause: &str, now: Instant) {
        self.vanished(None, cause, now);
        self.spool_usable = false;
        self.opening = false;
        for it in self.list.iter_mut().chain(self.inflight.iter_mut()) {
            if it.disk == Disk::Writing {
                it.disk = Disk::No;
            }
        }
        self.fx.wake_sender = true;
        self.settle_state(now);
    }

    /// At shutdown, after the writer's last flush: what is not on disk is lost and counted.
    /// Returns (batches kept in the spool, batches lost).
    pub(crate) fn finish_shutdown(&mut self, now: Instant) -> (u64, u64) {
        // Delivered while the writer could not record it: delivered (the stale ack may replay it).
        let _ = self.plan_commit();
        let mut lost = 0;
        let mut hooks = Vec::new();
        for it in self.list.drain(..).chain(self.inflight.drain(..)) {
            if it.disk != Disk::Stored {
                lost += it.batches;
                if let Some(h) = it.hook {
                    hooks.push((h, Settled::Dropped(DropReason::Shutdown)));
                }
            }
        }
        self.fx.hooks.extend(hooks);
        let kept: u64 = self.disk.iter().map(|r| r.batches).sum();
        for r in self.disk.iter_mut() {
            r.cached = false;
        }
        self.recount_disk_only();
        self.mem_bytes = 0;
        self.mem_batches = 0;
        let cause = if self.spool_usable {
            "not yet written to the spool when the agent stopped"
        } else {
            "no spool to keep it when the agent stopped"
        };
        self.lose(DropReason::Shutdown, lost, cause, now);
        self.tick(now, true);
        (kept, lost)
    }
}
