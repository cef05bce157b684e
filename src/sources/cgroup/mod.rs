//! Per-container readings from cgroupfs, on every layout (v1, v2, hybrid) and driver (systemd,
//! cgroupfs).
//!
//! A [`Reader`] is built once per container from its directories ([`paths::Dirs`]) and keeps a
//! descriptor for the files it reads ([`ProcFile`]): re-reading with `pread` is 5–10× cheaper than
//! opening (docs/benchmarks.md#where-a-cycles-time-goes). Which file feeds which number is decided
//! once, when the reader is built:
//!
//! | number | v2 | v1 and hybrid | read |
//! |---|---|---|---|
//! | CPU time | `cpu.stat` `usage_usec` | `cpuacct.usage` (ns) | every cycle |
//! | memory | `memory.current` − `inactive_file` | `memory.usage_in_bytes` − `total_inactive_file` | usage every cycle, `memory.stat` on slow cycles |
//! | disk bytes | `io.stat` (charges writeback) | `/proc/<pid>/io` over `cgroup.procs` ([`taskio`]) | every cycle |
//! | throttled | `cpu.stat` `throttled_usec` (the CPU file) | `cpu.stat` `throttled_time` (ns) | v2: every cycle; v1: slow cycles |
//! | pressure | `{cpu,io,memory}.pressure` | the same files in the `unified` cgroup, when there is one | slow cycles |
//! | CPU limit | `cpu.max` | `cpu.cfs_quota_us` / `cpu.cfs_period_us` | slow cycles, and only when Docker did not give it |
//!
//! **Slow cycles.** What changes slowly or is itself an average is read only when the caller asks
//! for it ([`Reader::read`]'s `slow`), and the last value is reported in between: the container
//! sampler asks every few cycles so that those values are at most about 10 s old
//! (docs/containers.md#what-is-read-every-cycle). A cycle then reads three or four files per
//! container instead of eleven.
//!
//! On v2 without the `io` controller enabled for the container, disk bytes also come from the
//! task counters. The source in use is part of every reading ([`IoSource`]), so nothing is ever a
//! silent 0. On hybrid hosts the process list comes from the `unified` cgroup when there is one:
//! v1's `cgroup.procs` hands a kept descriptor a cached list (see [`ProcFile::fresh_within`]).

pub mod paths;
pub(crate) mod psi;
pub(crate) mod taskio;
pub mod v1;
pub(crate) mod v2;

use crate::sys::procfile::{FileError, FilePath, ProcFile};
use paths::{Dirs, Layout};
use psi::Pressure;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// A map by PID. PIDs are small integers the kernel hands out, not input an attacker picks, so
/// one multiplication spreads them; the default SipHash was three hashes per container and cycle
/// that showed in the 1000-container profile.
pub(crate) type PidMap<V> = HashMap<i32, V, BuildHasherDefault<PidHasher>>;

/// The hasher of [`PidMap`]: Fibonacci hashing of the PID.
#[derive(Default)]
pub(crate) struct PidHasher(u64);

impl Hasher for PidHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        }
    }

    fn write_i32(&mut self, v: i32) {
        self.0 = u64::from(v as u32).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}

/// v1 `cgroup.procs` keeps the pid list it built for an open file until 1 s after the last read
/// (`CGROUP_PIDLIST_DESTROY_DELAY`); a read sooner than this after the previous one reopens.
pub(crate) const V1_PIDLIST_FRESH: Duration = Duration::from_millis(1500);

/// Cumulative bytes read from and written to storage.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct IoBytes {
    pub read: u64,
    pub write: u64,
}

/// What `cpu.stat` holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct CpuStat {
    pub(crate) usage_ns: Option<u64>,
    pub(crate) throttled_ns: Option<u64>,
    pub(crate) nr_throttled: Option<u64>,
    pub(crate) nr_periods: Option<u64>,
}

/// Where the disk bytes come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum IoSource {
    /// cgroup v2 `io.stat`.
    IoStat,
    /// `/proc/<pid>/io` summed over the cgroup's processes.
    TaskIo,
}

impl IoSource {
    pub fn as_str(self) -> &'static str {
        match self {
            IoSource::IoStat => "io.stat",
            IoSource::TaskIo => "proc-pid-io",
        }
    }
}

/// The pressure resources, in the order of [`Reading::pressure`].
pub const PRESSURE: [&str; 3] = ["cpu", "io", "memory"];
/// The files of [`PRESSURE`], in the same order.
const PRESSURE_FILES: [&str; 3] = ["cpu.pressure", "io.pressure", "memory.pressure"];

/// One reading of one container's cgroup: cumulative values as the kernel gives them.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize)]
pub struct Reading {
    pub cpu_ns: Option<u64>,
    pub throttled_ns: Option<u64>,
    /// Cores; `None` when unlimited (or known from Docker instead).
    pub cpu_limit: Option<f64>,
    pub memory: Option<u64>,
    pub io: Option<IoBytes>,
    /// Stall time and 10-s average per resource of [`PRESSURE`].
    pub pressure: [Option<Pressure>; 3],
    /// Processes in the cgroup (from `cgroup.procs`, when the task counters are used).
    pub processes: Option<usize>,
    /// A kept file failed and its path was there again: the cgroup was removed and created
    /// again (a container restarted in place), so every counter started over.
    pub recreated: bool,
}

enum CpuSrc {
    /// v2 `cpu.stat`: usage, and throttling when the `cpu` controller is on.
    V2(ProcFile),
    V1(ProcFile),
}

enum LimitSrc {
    V2(ProcFile),
    V1 { quota: ProcFile, period: ProcFile },
}

struct MemSrc {
    usage: ProcFile,
    stat: ProcFile,
    /// `inactive_file` (v2) or `total_inactive_file` (v1).
    key: &'static str,
}

struct Tasks {
    procs: ProcFile,
    proc_path: PathBuf,
    /// `/proc/<pid>/io` and the parent PID, by PID, with the pass that last saw it.
    files: PidMap<(ProcFile, i32, u32)>,
    pass: u32,
    pids: Vec<i32>,
    seen: Vec<taskio::Observed>,
    state: taskio::TaskIo,
}

enum IoSrc {
    IoStat(ProcFile),
    Tasks(Box<Tasks>),
}

/// The values of the last slow read, reported until the next one.
#[derive(Debug, Clone, Copy, Default)]
struct Slow {
    throttled_ns: Option<u64>,
    inactive_file: Option<u64>,
    cpu_limit: Option<f64>,
    pressure: [Option<Pressure>; 3],
}

/// Kept descriptors of one container's cgroup files.
pub struct Reader {
    cpu: Option<CpuSrc>,
    mem: Option<MemSrc>,
    io: Option<IoSrc>,
    /// v1 `cpu.stat` (on v2 throttling comes with the CPU file).
    throttle: Option<ProcFile>,
    limit: Option<LimitSrc>,
    pressure: [Option<ProcFile>; 3],
    slow: Slow,
    keep_cycle: bool,
    keep_slow: bool,
}

/// `file` in `dir` when both exist, as a [`ProcFile`] sharing the directory's path.
fn existing(dir: &Option<Arc<Path>>, file: &'static str) -> Option<ProcFile> {
    FilePath::existing(dir.as_ref()?, file).map(ProcFile::at)
}

/// Keeps the number, or the error for the caller's list.
fn ok<T>(errors: &mut Vec<FileError>, res: Result<T, FileError>) -> Option<T> {
    match res {
        Ok(t) => Some(t),
        Err(e) => {
            errors.push(e);
            None
        }
    }
}

impl Reader {
    /// A reader for a container in `dirs`. `limit_known`: the CPU limit comes from elsewhere
    /// (Docker's inspect), so its files are not read at all.
    pub fn new(layout: Layout, dirs: Dirs, proc_path: &Path) -> Reader {
        Reader::with_limit(layout, &dirs, proc_path, false)
    }

    pub(crate) fn with_limit(
        layout: Layout,
        dirs: &Dirs,
        proc_path: &Path,
        limit_known: bool,
    ) -> Reader {
        let v2_primary = layout == Layout::V2;
        // One shared path per directory: a directory named twice (a joint `cpu,cpuacct` mount,
        // the directory of `cgroup.procs`) gets the same one.
        let mut interned: Vec<Arc<Path>> = Vec::new();
        let mut shared = |d: Option<&Path>| -> Option<Arc<Path>> {
            let d = d?;
            if let Some(a) = interned.iter().find(|a| ***a == *d) {
                return Some(a.clone());
            }
            interned.push(Arc::from(d));
            interned.last().cloned()
        };
        let v2 = &shared(dirs.v2.as_deref());
        let cpu_dir = shared(dirs.cpu.as_deref());
        let cpuacct_dir = shared(dirs.cpuacct.as_deref());
        let memory_dir = shared(dirs.memory.as_deref());
        let procs_dir = dirs.procs_dir(layout);
        // v1 `cgroup.procs` needs re-opening at short intervals (see `V1_PIDLIST_FRESH`).
        let procs_v1 =
            procs_dir.is_some_and(|d| !dirs.v2.as_ref().is_some_and(|v2| d.starts_with(v2)));
        let procs_dir = shared(procs_dir);
        let cpu = if v2_primary {
            existing(v2, "cpu.stat").map(CpuSrc::V2)
        } else {
            existing(&cpuacct_dir, "cpuacct.usage")
                .map(CpuSrc::V1)
                .or_else(|| existing(v2, "cpu.stat").map(CpuSrc::V2))
        };
        let throttle = if v2_primary {
            None
        } else {
            existing(&cpu_dir, "cpu.stat")
        };
        let limit = if limit_known {
            None
        } else if v2_primary {
            existing(v2, "cpu.max").map(LimitSrc::V2)
        } else {
            match (
                existing(&cpu_dir, "cpu.cfs_quota_us"),
                existing(&cpu_dir, "cpu.cfs_period_us"),
            ) {
                (Some(quota), Some(period)) => Some(LimitSrc::V1 { quota, period }),
                _ => None,
            }
        };
        let (mem_dir, usage, key) = if v2_primary {
            (v2, "memory.current", "inactive_file")
        } else {
            (&memory_dir, "memory.usage_in_bytes", "total_inactive_file")
        };
        let mem = match (existing(mem_dir, usage), existing(mem_dir, "memory.stat")) {
            (Some(usage), Some(stat)) => Some(MemSrc { usage, stat, key }),
            _ => None,
        };
        let io = match existing(v2, "io.stat") {
            Some(f) if v2_primary => Some(IoSrc::IoStat(f)),
            _ => existing(&procs_dir, "cgroup.procs").map(|procs| {
                IoSrc::Tasks(Box::new(Tasks {
                    procs: if procs_v1 {
                        procs.fresh_within(V1_PIDLIST_FRESH)
                    } else {
                        procs
                    },
                    proc_path: proc_path.to_path_buf(),
                    files: PidMap::default(),
                    pass: 0,
                    pids: Vec::new(),
                    seen: Vec::new(),
                    state: taskio::TaskIo::default(),
                }))
            }),
        };
        let pressure = PRESSURE_FILES.map(|file| existing(v2, file));
        Reader {
            cpu,
            mem,
            io,
            throttle,
            limit,
            pressure,
            slow: Slow::default(),
            keep_cycle: true,
            keep_slow: true,
        }
    }

    /// The CPU limit is known from elsewhere now: its files are no longer read.
    pub(crate) fn forget_limit(&mut self) {
        self.limit = None;
        self.slow.cpu_limit = None;
    }

    /// Starts the task counters over (a new run of the container). Whether there were any.
    pub(crate) fn reset_task_counters(&mut self) -> bool {
        match &mut self.io {
            Some(IoSrc::Tasks(t)) => {
                t.state = taskio::TaskIo::default();
                t.files.clear();
                true
            }
            _ => false,
        }
    }

    pub fn io_source(&self) -> Option<IoSource> {
        self.io.as_ref().map(|s| match s {
            IoSrc::IoStat(_) => IoSource::IoStat,
            IoSrc::Tasks(_) => IoSource::TaskIo,
        })
    }

    /// Files read every cycle (one per process of the cgroup for the task counters) and files
    /// read on slow cycles.
    pub(crate) fn file_counts(&self) -> (usize, usize) {
        let cycle = self.cpu.is_some() as usize
            + self.mem.is_some() as usize
            + match &self.io {
                Some(IoSrc::IoStat(_)) => 1,
                Some(IoSrc::Tasks(t)) => 1 + t.files.len().max(1),
                None => 0,
            };
        let slow = self.throttle.is_some() as usize
            + self.mem.is_some() as usize
            + match &self.limit {
                Some(LimitSrc::V2(_)) => 1,
                Some(LimitSrc::V1 { .. }) => 2,
                None => 0,
            }
            + self.pressure.iter().flatten().count();
        (cycle, slow)
    }

    /// Whether the descriptors of the every-cycle and the slow-cycle files are kept open between
    /// reads (the sampler's descriptor budget decides).
    pub(crate) fn set_keep(&mut self, cycle: bool, slow: bool) {
        if (cycle, slow) == (self.keep_cycle, self.keep_slow) {
            return;
        }
        self.keep_cycle = cycle;
        self.keep_slow = slow;
        match &mut self.cpu {
            Some(CpuSrc::V1(f) | CpuSrc::V2(f)) => f.set_keep(cycle),
            None => {}
        }
        if let Some(m) = &mut self.mem {
            m.usage.set_keep(cycle);
            m.stat.set_keep(slow);
        }
        match &mut self.io {
            Some(IoSrc::IoStat(f)) => f.set_keep(cycle),
            Some(IoSrc::Tasks(t)) => {
                t.procs.set_keep(cycle);
                for (f, _, _) in t.files.values_mut() {
                    f.set_keep(cycle);
                }
            }
            None => {}
        }
        for f in self
            .throttle
            .iter_mut()
            .chain(self.pressure.iter_mut().flatten())
        {
            f.set_keep(slow);
        }
        match &mut self.limit {
            Some(LimitSrc::V2(f)) => f.set_keep(slow),
            Some(LimitSrc::V1 { quota, period }) => {
                quota.set_keep(slow);
                period.set_keep(slow);
            }
            None => {}
        }
    }

    /// Reads the every-cycle files, and the slow ones too when `slow` (the first read always
    /// does). A file that fails leaves its number `None`; the errors say which.
    pub fn read(&mut self) -> (Reading, Vec<FileError>) {
        self.read_with(true, &mut Vec::new())
    }

    /// [`Reader::read`], through `scratch`, a buffer shared by every reader (thousands of kept
    /// files need no buffer each).
    pub(crate) fn read_with(
        &mut self,
        slow: bool,
        scratch: &mut Vec<u8>,
    ) -> (Reading, Vec<FileError>) {
        let mut r = Reading::default();
        let mut errors = Vec::new();
        let e = &mut errors;
        let b = scratch;
        match &mut self.cpu {
            Some(CpuSrc::V2(f)) => {
                if let Some(s) = ok(e, f.read_str_in(b)).map(v2::parse_cpu_stat) {
                    r.cpu_ns = s.usage_ns;
                    r.throttled_ns = s.throttled_ns;
                }
                r.recreated |= f.take_replaced();
            }
            Some(CpuSrc::V1(f)) => {
                r.cpu_ns = ok(e, f.read_str_in(b))
                    .and_then(v1::parse_int)
                    .and_then(|v| u64::try_from(v).ok());
                r.recreated |= f.take_replaced();
            }
            None => {}
        }
        let usage = match &mut self.mem {
            Some(m) => {
                let u = ok(e, m.usage.read_str_in(b)).and_then(v1::parse_int);
                r.recreated |= m.usage.take_replaced();
                u
            }
            None => None,
        };
        if slow || r.recreated {
            self.read_slow(e, b);
        }
        if r.throttled_ns.is_none() {
            r.throttled_ns = self.slow.throttled_ns;
        }
        r.cpu_limit = self.slow.cpu_limit;
        r.pressure = self.slow.pressure;
        r.memory = usage.map(|u| v2::memory_usage(u.max(0) as u64, self.slow.inactive_file));
        match &mut self.io {
            Some(IoSrc::IoStat(f)) => {
                r.io = ok(e, f.read_str_in(b)).map(v2::parse_io_stat);
                r.recreated |= f.take_replaced();
            }
            Some(IoSrc::Tasks(t)) => t.read(&mut r, e, self.keep_cycle, b),
            None => {}
        }
        (r, errors)
    }

    fn read_slow(&mut self, e: &mut Vec<FileError>, b: &mut Vec<u8>) {
        if let Some(f) = &mut self.throttle {
            self.slow.throttled_ns =
                ok(e, f.read_str_in(b)).and_then(|t| v2::parse_cpu_stat(t).throttled_ns);
        }
        if let Some(m) = &mut self.mem {
            let key = m.key;
            self.slow.inactive_file =
                ok(e, m.stat.read_str_in(b)).and_then(|t| v2::stat_field(t, key));
        }
        match &mut self.limit {
            Some(LimitSrc::V2(f)) => {
                self.slow.cpu_limit = ok(e, f.read_str_in(b)).and_then(v2::parse_cpu_max)
            }
            Some(LimitSrc::V1 { quota, period }) => {
                let q = ok(e, quota.read_str_in(b)).and_then(v1::parse_int);
                let p = ok(e, period.read_str_in(b)).and_then(v1::parse_int);
                self.slow.cpu_limit = q.zip(p).and_then(|(q, p)| v1::cfs_limit(q, p));
            }
            None => {}
        }
        for (slot, f) in self.slow.pressure.iter_mut().zip(&mut self.pressure) {
            if let Some(f) = f {
                *slot = ok(e, f.read_str_in(b)).and_then(psi::parse);
            }
        }
    }
}

/// Parses the PIDs of a `cgroup.procs` text into `out` (cleared first), sorted.
fn parse_pids(text: &str, out: &mut Vec<i32>) {
    out.clear();
    let mut cur: Option<i32> = Some(0);
    let mut digits = false;
    for &c in text.as_bytes().iter().chain(b"\n") {
        match c {
            b'0'..=b'9' => {
                cur = cur.and_then(|v| v.checked_mul(10)?.checked_add(i32::from(c - b'0')));
                digits = true;
            }
            b'\n' => {
                if let Some(p) = cur.filter(|p| digits && *p > 0) {
                    out.push(p);
                }
                cur = Some(0);
                digits = false;
            }
            b' ' | b'\t' | b'\r' => {}
            _ => cur = None,
        }
    }
    // v1 lists them sorted, v2 in task order.
    if !out.is_sorted() {
        out.sort_unstable();
    }
}

impl Tasks {
    fn read(&mut self, r: &mut Reading, errors: &mut Vec<FileError>, keep: bool, b: &mut Vec<u8>) {
        let text = match self.procs.read_str_in(b) {
            Ok(t) => t,
            Err(e) => {
                errors.push(e);
                return;
            }
        };
        parse_pids(text, &mut self.pids);
        r.recreated |= self.procs.take_replaced();
        self.pass = self.pass.wrapping_add(1);
        let pass = self.pass;
        self.seen.clear();
        let mut last_error = None;
        for &pid in &self.pids {
            let (file, ppid, seen_pass) = self.files.entry(pid).or_insert_with(|| {
                let dir = self.proc_path.join(pid.to_string());
                let ppid = std::fs::read_to_string(dir.join("stat"))
                    .ok()
                    .and_then(|s| taskio::parse_ppid(&s))
                    .unwrap_or(0);
                let mut f = ProcFile::new(dir.join("io"));
                f.set_keep(keep);
                (f, ppid, pass)
            });
            *seen_pass = pass;
            // A process that exited since cgroup.procs was read is simply not seen.
            match file.read_str_in(b).map(taskio::parse_proc_io) {
                Ok(Some(io)) => self.seen.push(taskio::Observed {
                    pid,
                    ppid: *ppid,
                    io,
                }),
                Ok(None) => {}
                Err(e) => last_error = Some(e),
            }
        }
        // Forget the files of processes that left the cgroup.
        if self.files.len() > self.pids.len() {
            self.files.retain(|_, (_, _, p)| *p == pass);
        }
        r.processes = Some(self.seen.len());
        if self.seen.is_empty() && !self.pids.is_empty() {
            // "Gone" for every process is either an exit (then the processes have left
            // cgroup.procs) or processes this agent cannot see (they are still listed).
            let gone = last_error.as_ref().is_some_and(FileError::is_gone);
            let listed_again = gone
                && self.procs.read_str_in(b).is_ok_and(|t| {
                    let mut again = Vec::new();
                    parse_pids(t, &mut again);
                    again == self.pids
                });
            if !gone || listed_again {
                // Processes we cannot read (another PID namespace, not root): say so rather
                // than report a silent 0.
                errors.push(last_error.filter(|e| !e.is_gone()).unwrap_or_else(|| {
                    FileError::new(
                        &self.procs.path(),
                        std::io::Error::new(
                            std::io::ErrorKind::PermissionDenied,
                            "no process of the cgroup is visible in /proc (run in the host PID namespace)",
                        ),
                    )
                }));
                return;
            }
        }
        r.io = Some(self.state.update(&self.seen));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pids_sorted_and_garbage_skipped() {
        let mut v = vec![9];
        parse_pids("30\n 10\nx\n0\n-4\n20\n99999999999\n7", &mut v);
        assert_eq!(v, [7, 10, 20, 30]);
        parse_pids("", &mut v);
        assert!(v.is_empty());
    }

    /// A v2 cgroup in a temp dir: what each cycle reads and what only slow cycles read.
    #[test]
    fn slow_files_are_read_only_on_slow_cycles_and_reused_between() {
        let d = tempfile::tempdir().unwrap();
        let p = |f: &str| d.path().join(f);
        std::fs::write(p("cpu.stat"), "usage_usec 10\nthrottled_usec 1\n").unwrap();
        std::fs::write(p("memory.current"), "1000\n").unwrap();
        std::fs::write(p("memory.stat"), "anon 1\ninactive_file 300\n").unwrap();
        std::fs::write(p("cpu.max"), "50000 100000\n").unwrap();
        std::fs::write(p("io.stat"), "8:0 rbytes=1 wbytes=2\n").unwrap();
        std::fs::write(
            p("cpu.pressure"),
            "some avg10=1.00 avg60=0 avg300=0 total=7\n",
        )
        .unwrap();
        let dirs = Dirs {
            v2: Some(d.path().to_path_buf()),
            ..Default::default()
        };
        let mut r = Reader::new(Layout::V2, dirs.clone(), Path::new("/proc"));
        assert_eq!(r.file_counts(), (3, 3));
        let (a, e) = r.read_with(false, &mut Vec::new());
        assert!(e.is_empty(), "{e:?}");
        // Not a slow read (the sampler's first read always is): no inactive file known yet.
        assert_eq!(
            (a.cpu_ns, a.memory, a.cpu_limit),
            (Some(10_000), Some(1000), None)
        );
        let (a, _) = r.read_with(true, &mut Vec::new());
        assert_eq!((a.memory, a.cpu_limit), (Some(700), Some(0.5)));
        assert_eq!(a.pressure[0].map(|p| p.some_total_us), Some(7));
        std::fs::write(p("memory.stat"), "inactive_file 900\n").unwrap();
        std::fs::write(p("cpu.max"), "max 100000\n").unwrap();
        std::fs::write(p("cpu.stat"), "usage_usec 20\nthrottled_usec 5\n").unwrap();
        let (b, _) = r.read_with(false, &mut Vec::new());
        // Every-cycle numbers are fresh, slow ones are the last read.
        assert_eq!((b.cpu_ns, b.throttled_ns), (Some(20_000), Some(5_000)));
        assert_eq!((b.memory, b.cpu_limit), (Some(700), Some(0.5)));
        let (c, _) = r.read_with(true, &mut Vec::new());
        assert_eq!((c.memory, c.cpu_limit), (Some(100), None));
        // Past the budget the files are read the same, through a fresh descriptor each time.
        r.set_keep(false, false);
        let (t, e) = r.read_with(true, &mut Vec::new());
        assert!(e.is_empty());
        assert_eq!(t.cpu_ns, Some(20_000));
        // A limit known from Docker is not read.
        let known = Reader::with_limit(Layout::V2, &dirs, Path::new("/proc"), true);
        assert_eq!(known.file_counts(), (3, 2));
    }
}
