//! Disk bytes of a cgroup from per-task I/O accounting: `read_bytes`/`write_bytes` of
//! `/proc/<pid>/io`, summed over the processes in `cgroup.procs`.
//!
//! Why: cgroup v1 `blkio` does not charge buffered (page-cache) writeback to the container, so a
//! world save is invisible, and on our CI kernel its counters stay 0 even for O_DIRECT writes. The
//! task counters see both: `write_bytes` grows when a page is first dirtied and when a direct write
//! is submitted. They are per process, which brings three traps this module handles:
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
use std::collections::HashMap;

/// Samples a debt may wait for its reaper's counter to grow.
pub(crate) const DEBT_SAMPLES: u8 = 3;

/// `/proc/<pid>/io`: storage bytes (not `rchar`/`wchar`, which include page-cache hits and pipes).
pub(crate) fn parse_proc_io(text: &str) -> Option<IoBytes> {
    let (mut r, mut w) = (None, None);
    for line in text.lines() {
        if let Some(v) = line.strip_prefix("read_bytes:") {
            r = v.trim().parse().ok();
        } else if let Some(v) = line.strip_prefix("write_bytes:") {
            w = v.trim().parse().ok();
        }
    }
    Some(IoBytes {
        read: r?,
        write: w?,
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
    pub(crate) io: IoBytes,
}

#[derive(Debug, Clone, Copy)]
struct Seen {
    ppid: i32,
    last: IoBytes,
}

#[derive(Debug, Clone, Copy, Default)]
struct Debt {
    bytes: IoBytes,
    age: u8,
}

/// The running total of one cgroup.
#[derive(Debug, Default)]
pub(crate) struct TaskIo {
    seen: HashMap<i32, Seen>,
    debts: HashMap<i32, Debt>,
    total: IoBytes,
}

fn sub(a: IoBytes, b: IoBytes) -> IoBytes {
    IoBytes {
        read: a.read.saturating_sub(b.read),
        write: a.write.saturating_sub(b.write),
    }
}

fn add(a: IoBytes, b: IoBytes) -> IoBytes {
    IoBytes {
        read: a.read.saturating_add(b.read),
        write: a.write.saturating_add(b.write),
    }
}

impl TaskIo {
    /// Feeds the processes alive now; returns the container's cumulative bytes.
    pub(crate) fn update(&mut self, now: &[Observed]) -> IoBytes {
        let alive: HashMap<i32, &Observed> = now.iter().map(|o| (o.pid, o)).collect();
        // The container's init: a live process whose parent is outside the cgroup.
        let init = now
            .iter()
            .filter(|o| !alive.contains_key(&o.ppid))
            .map(|o| o.pid)
            .min();
        let vanished: Vec<(i32, Seen)> = self
            .seen
            .iter()
            .filter(|(pid, _)| !alive.contains_key(pid))
            .map(|(p, s)| (*p, *s))
            .collect();
        for (pid, s) in &vanished {
            self.seen.remove(pid);
            // Walk up through parents that vanished too.
            let mut reaper = s.ppid;
            let mut hops = 0;
            while !alive.contains_key(&reaper) && hops < 32 {
                match vanished.iter().find(|(p, _)| *p == reaper) {
                    Some((_, parent)) => reaper = parent.ppid,
                    None => break,
                }
                hops += 1;
            }
            // A parent outside the cgroup (the shim, for the container's PID 1) reaps outside.
            let reaper = alive.contains_key(&reaper).then_some(reaper);
            if let Some(r) = reaper {
                let d = self.debts.entry(r).or_default();
                d.bytes = add(d.bytes, s.last);
                d.age = 0;
            }
            // Debts owed by the vanished process pass to its reaper as well.
            if let Some(owed) = self.debts.remove(pid)
                && let Some(r) = reaper
            {
                let d = self.debts.entry(r).or_default();
                d.bytes = add(d.bytes, owed.bytes);
            }
        }
        for o in now {
            let delta = match self.seen.get(&o.pid) {
                Some(prev) if o.io.read >= prev.last.read && o.io.write >= prev.last.write => {
                    sub(o.io, prev.last)
                }
                // New process (or a new one under a reused PID): everything since its fork.
                _ => o.io,
            };
            let delta = match self.debts.get_mut(&o.pid) {
                Some(d) => {
                    let paid = IoBytes {
                        read: delta.read.min(d.bytes.read),
                        write: delta.write.min(d.bytes.write),
                    };
                    d.bytes = sub(d.bytes, paid);
                    sub(delta, paid)
                }
                None => delta,
            };
            self.total = add(self.total, delta);
            self.seen.insert(
                o.pid,
                Seen {
                    ppid: o.ppid,
                    last: o.io,
                },
            );
        }
        // Children of a process that exited are re-parented to the container's init.
        if let Some(init) = init {
            for s in self.seen.values_mut() {
                if vanished.iter().any(|(p, _)| *p == s.ppid) {
                    s.ppid = init;
                }
            }
        }
        self.debts.retain(|pid, d| {
            d.age += 1;
            alive.contains_key(pid) && d.age < DEBT_SAMPLES && d.bytes != IoBytes::default()
        });
        self.total
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn o(pid: i32, ppid: i32, write: u64) -> Observed {
        Observed {
            pid,
            ppid,
            io: IoBytes { read: 0, write },
        }
    }

    #[test]
    fn parses_proc_files() {
        let io = "rchar: 6976\nwchar: 0\nsyscr: 10\nsyscw: 0\nread_bytes: 4096\nwrite_bytes: 8192\ncancelled_write_bytes: 0\n";
        assert_eq!(
            parse_proc_io(io),
            Some(IoBytes {
                read: 4096,
                write: 8192
            })
        );
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
