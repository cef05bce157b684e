//! Disk bytes of a cgroup from per-task I/O accounting: `read_bytes`, and `write_bytes` minus
//! `cancelled_write_bytes`, of `/proc/<pid>/io`, summed over the processes in `cgroup.procs`.
//!
//! Why: cgroup v1 `blkio` does not charge buffered (page-cache) writeback to the container, so a
//! world save is invisible, and on our CI kernel its counters stay 0 even for O_DIRECT writes. The
//! task counters see both: `write_bytes` grows when a page is first dirtied and when a direct write
//! is submitted, and `cancelled_write_bytes` takes back dirtied pages that never reached the disk
//! because the file was truncated or deleted first (a 32 MiB temp file written and deleted within
//! the writeback delay is 0 bytes for the disk, not 32 MiB). They are per process, which brings
//! three traps this module handles:
//!
//! - **Exits.** A process that exits takes its counters with it. The container total is therefore
//!   a running sum of per-process *deltas*, so it never goes backwards.
//! - **Reaping.** When a parent reaps a child, the kernel folds the child's counters into the
//!   parent's (`wait_task_zombie`: `psig->ioac += child ioac`). The parent's counter then jumps by
//!   bytes already counted through the child. Each vanished process leaves a *debt* of what was
//!   already counted for it, charged to its nearest live ancestor in the cgroup (orphans are
//!   re-parented to the container's init); the debtor's next deltas pay it off before they count.
//!   A debt not paid
//!   within [`DEBT_SAMPLES`] samples (the child was reaped elsewhere) is forgotten.
//! - **PID reuse.** A counter that went down is a new process under an old PID.
//!
//! What is lost: a process's bytes between its last sample and its exit when its reaper is outside
//! the container (the container's PID 1 is reaped by the shim). What is approximate: the first
//! reading of a container counts every live process's bytes since it started.

use super::IoBytes;

/// Samples a debt may wait for its reaper's counter to grow.
pub(crate) const DEBT_SAMPLES: u8 = 3;

/// The storage counters of one task (or of the container): bytes read, bytes written (counted
/// when a page is first dirtied or a direct write submitted), and dirtied bytes whose writeback
/// was cancelled (the file was truncated or deleted first).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct TaskBytes {
    pub(crate) read: u64,
    pub(crate) write: u64,
    pub(crate) cancelled: u64,
}

impl TaskBytes {
    fn sub(self, b: TaskBytes) -> TaskBytes {
        TaskBytes {
            read: self.read.saturating_sub(b.read),
            write: self.write.saturating_sub(b.write),
            cancelled: self.cancelled.saturating_sub(b.cancelled),
        }
    }

    fn add(self, b: TaskBytes) -> TaskBytes {
        TaskBytes {
            read: self.read.saturating_add(b.read),
            write: self.write.saturating_add(b.write),
            cancelled: self.cancelled.saturating_add(b.cancelled),
        }
    }

    fn min(self, b: TaskBytes) -> TaskBytes {
        TaskBytes {
            read: self.read.min(b.read),
            write: self.write.min(b.write),
            cancelled: self.cancelled.min(b.cancelled),
        }
    }

    /// No counter went down: the same process as before.
    fn covers(self, prev: TaskBytes) -> bool {
        self.read >= prev.read && self.write >= prev.write && self.cancelled >= prev.cancelled
    }
}

/// `/proc/<pid>/io`: storage bytes (not `rchar`/`wchar`, which include page-cache hits and pipes).
pub(crate) fn parse_proc_io(text: &str) -> Option<TaskBytes> {
    let [read, write, cancelled] = super::v2::uint_fields(
        text,
        ["read_bytes", "write_bytes", "cancelled_write_bytes"],
        b':',
    );
    Some(TaskBytes {
        read: read?,
        write: write?,
        // Present since Linux 2.6.20, like the other two; absent only in a malformed file.
        cancelled: cancelled.unwrap_or(0),
    })
}

/// The parent PID from `/proc/<pid>/stat` (the field after the state, after the last `)`).
pub(crate) fn parse_ppid(stat: &str) -> Option<i32> {
    let after = &stat[stat.rfind(')')? + 1..];
    after.split_ascii_whitespace().nth(1)?.parse().ok()
}

/// One live process as seen in one sample.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Observed {
    pub(crate) pid: i32,
    pub(crate) ppid: i32,
    pub(crate) io: TaskBytes,
}

#[derive(Debug, Clone, Copy)]
struct Seen {
    ppid: i32,
    last: TaskBytes,
}

#[derive(Debug, Clone, Copy, Default)]
struct Debt {
    bytes: TaskBytes,
    age: u8,
}

/// The running total of one cgroup. The maps and the scratch list live as long as the container
/// (nothing is allocated per sample once they have grown to its process count).
#[derive(Debug, Default)]
pub(crate) struct TaskIo {
    seen: super::PidMap<Seen>,
    debts: super::PidMap<Debt>,
    vanished: Vec<(i32, Seen)>,
    /// Every counted delta, per counter.
    counted: TaskBytes,
    /// What is reported as written: written minus cancelled, never going down.
    written: u64,
}

impl TaskIo {
    /// Feeds the processes alive now, sorted by PID; returns the container's cumulative bytes.
    ///
    /// Written bytes are `write_bytes − cancelled_write_bytes` summed over the container's
    /// processes (with the same exit and reaping bookkeeping for both), which is what reaches
    /// the disk. Cancelling is charged to the task that truncates or deletes, which may not be
    /// the one that wrote, and may come after a sample already counted the write: the reported
    /// total then holds still until later writes have made up for the cancelled bytes, so it
    /// never goes down.
    pub(crate) fn update(&mut self, now: &[Observed]) -> IoBytes {
        debug_assert!(now.windows(2).all(|w| w[0].pid < w[1].pid));
        let alive = |pid: i32| now.binary_search_by_key(&pid, |o| o.pid).is_ok();
        // The container's init: a live process whose parent is outside the cgroup.
        let init = now.iter().filter(|o| !alive(o.ppid)).map(|o| o.pid).min();
        self.vanished.clear();
        self.vanished.extend(
            self.seen
                .iter()
                .filter(|(pid, _)| !alive(**pid))
                .map(|(p, s)| (*p, *s)),
        );
        for i in 0..self.vanished.len() {
            let (pid, s) = self.vanished[i];
            self.seen.remove(&pid);
            // Walk up through parents that vanished too.
            let mut reaper = s.ppid;
            let mut hops = 0;
            while !alive(reaper) && hops < 32 {
                match self.vanished.iter().find(|(p, _)| *p == reaper) {
                    Some((_, parent)) => reaper = parent.ppid,
                    None => break,
                }
                hops += 1;
            }
            // A parent outside the cgroup (the shim, for the container's PID 1) reaps outside.
            let reaper = alive(reaper).then_some(reaper);
            if let Some(r) = reaper {
                let d = self.debts.entry(r).or_default();
                d.bytes = d.bytes.add(s.last);
                d.age = 0;
            }
            // Debts owed by the vanished process pass to its reaper as well.
            if let Some(owed) = self.debts.remove(&pid)
                && let Some(r) = reaper
            {
                let d = self.debts.entry(r).or_default();
                d.bytes = d.bytes.add(owed.bytes);
            }
        }
        for o in now {
            let delta = match self.seen.get(&o.pid) {
                Some(prev) if o.io.covers(prev.last) => o.io.sub(prev.last),
                // New process (or a new one under a reused PID): everything since its fork.
                _ => o.io,
            };
            let delta = match self.debts.get_mut(&o.pid) {
                Some(d) => {
                    let paid = delta.min(d.bytes);
                    d.bytes = d.bytes.sub(paid);
                    delta.sub(paid)
                }
                None => delta,
            };
            self.counted = self.counted.add(delta);
            self.seen.insert(
                o.pid,
                Seen {
                    ppid: o.ppid,
                    last: o.io,
                },
            );
        }
        // Children of a process that exited are re-parented to the container's init.
        if let Some(init) = init
            && !self.vanished.is_empty()
        {
            for s in self.seen.values_mut() {
                if self.vanished.iter().any(|(p, _)| *p == s.ppid) {
                    s.ppid = init;
                }
            }
        }
        self.debts.retain(|pid, d| {
            d.age += 1;
            alive(*pid) && d.age < DEBT_SAMPLES && d.bytes != TaskBytes::default()
        });
        self.written = self
            .written
            .max(self.counted.write.saturating_sub(self.counted.cancelled));
        IoBytes {
            read: self.counted.read,
            write: self.written,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn o(pid: i32, ppid: i32, write: u64) -> Observed {
        oc(pid, ppid, write, 0)
    }

    fn oc(pid: i32, ppid: i32, write: u64, cancelled: u64) -> Observed {
        Observed {
            pid,
            ppid,
            io: TaskBytes {
                read: 0,
                write,
                cancelled,
            },
        }
    }

    #[test]
    fn parses_proc_files() {
        let io = "rchar: 6976\nwchar: 0\nsyscr: 10\nsyscw: 0\nread_bytes: 4096\nwrite_bytes: 8192\ncancelled_write_bytes: 0\n";
        assert_eq!(
            parse_proc_io(io),
            Some(TaskBytes {
                read: 4096,
                write: 8192,
                cancelled: 0
            })
        );
        let io = "read_bytes: 1\nwrite_bytes: 33554432\ncancelled_write_bytes: 33550336\n";
        assert_eq!(parse_proc_io(io).unwrap().cancelled, 33_550_336);
        assert_eq!(parse_proc_io("rchar: 1\n"), None);
        assert_eq!(parse_ppid("17 (a) b) S 42 17 17 0"), Some(42));
        assert_eq!(parse_ppid("garbage"), None);
    }

    #[test]
    fn exits_never_make_the_sum_go_backwards() {
        let mut t = TaskIo::default();
        assert_eq!(t.update(&[o(10, 1, 100), o(11, 1, 50)]).write, 150);
        // 11 exits, reaped outside (its parent is outside the cgroup): nothing jumps.
        assert_eq!(t.update(&[o(10, 1, 130)]).write, 180);
        assert_eq!(t.update(&[]).write, 180);
    }

    #[test]
    fn reaped_child_is_not_counted_twice() {
        let mut t = TaskIo::default();
        // shell 10 (init, parent outside), dd 20 writing.
        assert_eq!(t.update(&[o(10, 1, 0), o(20, 10, 400)]).write, 400);
        // dd wrote 100 more, exited, shell reaped it: shell now shows dd's final 500.
        assert_eq!(t.update(&[o(10, 1, 500)]).write, 500);
        // The shell writes 10 itself: counted.
        assert_eq!(t.update(&[o(10, 1, 510)]).write, 510);
    }

    #[test]
    fn zombie_reaped_a_sample_later_and_orphans_go_to_init() {
        let mut t = TaskIo::default();
        t.update(&[o(10, 1, 0), o(20, 10, 0), o(30, 20, 300)]);
        // 30 and its parent 20 are gone; 20 was never reaped yet (zombie): debt waits on 10.
        assert_eq!(t.update(&[o(10, 1, 0)]).write, 300);
        // Reaped now: 10 shows 300 (folded from 20, which had folded 30).
        assert_eq!(t.update(&[o(10, 1, 300)]).write, 300);
        assert_eq!(t.update(&[o(10, 1, 350)]).write, 350);
    }

    #[test]
    fn cancelled_writes_are_not_written_and_the_total_never_goes_down() {
        let mut t = TaskIo::default();
        // Shell 10 runs dd 20 (32 MiB dirtied), which exits; then rm 30 deletes the file before
        // writeback and exits: both reaped by the shell between two samples.
        assert_eq!(t.update(&[o(10, 1, 0)]).write, 0);
        assert_eq!(t.update(&[oc(10, 1, 32 << 20, 32 << 20)]).write, 0);
        // Written, sampled, then cancelled by another task: the total holds still...
        assert_eq!(
            t.update(&[oc(10, 1, 32 << 20, 32 << 20), o(40, 10, 1000)])
                .write,
            1000
        );
        assert_eq!(
            t.update(&[
                oc(10, 1, 32 << 20, 32 << 20),
                oc(40, 10, 1000, 1000),
                oc(41, 10, 0, 0)
            ])
            .write,
            1000
        );
        // ...until later writes have made up for what was cancelled. 40 and 41 are reaped by
        // the shell, whose counters then hold theirs as well (and it wrote 600 B itself).
        let m = 32 << 20;
        assert_eq!(t.update(&[oc(10, 1, m + 1600, m + 1000)]).write, 1000);
        assert_eq!(t.update(&[oc(10, 1, m + 2500, m + 1000)]).write, 1500);
    }

    #[test]
    fn pid_reuse_and_unpaid_debts_expire() {
        let mut t = TaskIo::default();
        t.update(&[o(10, 1, 0), o(20, 10, 1000)]);
        // 20 was reaped by someone else (never folds into 10); after DEBT_SAMPLES, 10 counts again.
        for _ in 0..DEBT_SAMPLES {
            t.update(&[o(10, 1, 0)]);
        }
        assert_eq!(t.update(&[o(10, 1, 5)]).write, 1005);
        // PID 10 reused by a process with smaller counters: counted as new, not negative.
        assert_eq!(t.update(&[o(10, 1, 2)]).write, 1007);
    }
}
