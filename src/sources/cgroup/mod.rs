//! Per-container readings from cgroupfs, on every layout (v1, v2, hybrid) and driver (systemd,
//! cgroupfs).
//!
//! A [`Reader`] is built once per container from its directories ([`paths::Dirs`]) and keeps a
//! descriptor for every file it reads each cycle ([`ProcFile`]): re-reading with `pread` is 5–10×
//! cheaper than opening (docs/benchmarks.md#where-a-cycles-time-goes). Which file feeds which number is decided once,
//! when the reader is built:
//!
//! | number | v2 | v1 and hybrid |
//! |---|---|---|
//! | CPU time | `cpu.stat` `usage_usec` | `cpuacct.usage` (ns) |
//! | CPU limit | `cpu.max` | `cpu.cfs_quota_us` / `cpu.cfs_period_us` |
//! | throttled | `cpu.stat` `throttled_usec` | `cpu.stat` `throttled_time` (ns) |
//! | memory | `memory.current` − `inactive_file` | `memory.usage_in_bytes` − `total_inactive_file` |
//! | disk bytes | `io.stat` (charges writeback) | `/proc/<pid>/io` over `cgroup.procs` ([`taskio`]) |
//! | pressure | `{cpu,io,memory}.pressure` | the same files in the `unified` cgroup, when there is one |
//!
//! On v2 without the `io` controller enabled for the container, disk bytes also come from the
//! task counters. The source in use is part of every reading ([`IoSource`]), so nothing is ever a
//! silent 0.

pub mod paths;
pub(crate) mod psi;
pub(crate) mod taskio;
pub mod v1;
pub(crate) mod v2;

use crate::sys::procfile::{FileError, ProcFile};
use paths::{Dirs, Layout};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

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

/// One reading of one container's cgroup: cumulative values as the kernel gives them.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct Reading {
    pub cpu_ns: Option<u64>,
    pub throttled_ns: Option<u64>,
    /// Cores; `None` when unlimited.
    pub cpu_limit: Option<f64>,
    pub memory: Option<u64>,
    pub io: Option<IoBytes>,
    /// Stall time and 10-s average per resource (`cpu`, `io`, `memory`).
    pub pressure: Vec<(&'static str, psi::Pressure)>,
    /// Processes in the cgroup (from `cgroup.procs`, when the task counters are used).
    pub processes: Option<usize>,
}

enum CpuSrc {
    V2(ProcFile),
    V1(ProcFile),
}

enum LimitSrc {
    V2(ProcFile),
    V1 { quota: ProcFile, period: ProcFile },
}

enum MemSrc {
    V2 { current: ProcFile, stat: ProcFile },
    V1 { usage: ProcFile, stat: ProcFile },
}

enum IoSrc {
    IoStat(ProcFile),
    Tasks {
        procs: ProcFile,
        proc_path: PathBuf,
        files: HashMap<i32, (ProcFile, i32)>,
        state: taskio::TaskIo,
    },
}

/// Kept descriptors of one container's cgroup files.
pub struct Reader {
    cpu: Option<CpuSrc>,
    throttle: Option<ProcFile>,
    limit: Option<LimitSrc>,
    mem: Option<MemSrc>,
    io: Option<IoSrc>,
    pressure: Vec<(&'static str, ProcFile)>,
}

fn existing(dir: &Option<PathBuf>, file: &str) -> Option<PathBuf> {
    let p = dir.as_ref()?.join(file);
    p.exists().then_some(p)
}

impl Reader {
    pub fn new(layout: Layout, dirs: Dirs, proc_path: &Path) -> Reader {
        let v2_primary = layout == Layout::V2;
        let v2 = &dirs.v2;
        let cpu = if v2_primary {
            existing(v2, "cpu.stat").map(|p| CpuSrc::V2(ProcFile::new(p)))
        } else {
            existing(&dirs.cpuacct, "cpuacct.usage")
                .map(|p| CpuSrc::V1(ProcFile::new(p)))
                .or_else(|| existing(v2, "cpu.stat").map(|p| CpuSrc::V2(ProcFile::new(p))))
        };
        let throttle = if v2_primary {
            existing(v2, "cpu.stat")
        } else {
            existing(&dirs.cpu, "cpu.stat")
        }
        .map(ProcFile::new);
        let limit = if v2_primary {
            existing(v2, "cpu.max").map(|p| LimitSrc::V2(ProcFile::new(p)))
        } else {
            match (
                existing(&dirs.cpu, "cpu.cfs_quota_us"),
                existing(&dirs.cpu, "cpu.cfs_period_us"),
            ) {
                (Some(q), Some(p)) => Some(LimitSrc::V1 {
                    quota: ProcFile::new(q),
                    period: ProcFile::new(p),
                }),
                _ => None,
            }
        };
        let mem = if v2_primary {
            match (existing(v2, "memory.current"), existing(v2, "memory.stat")) {
                (Some(c), Some(s)) => Some(MemSrc::V2 {
                    current: ProcFile::new(c),
                    stat: ProcFile::new(s),
                }),
                _ => None,
            }
        } else {
            match (
                existing(&dirs.memory, "memory.usage_in_bytes"),
                existing(&dirs.memory, "memory.stat"),
            ) {
                (Some(u), Some(s)) => Some(MemSrc::V1 {
                    usage: ProcFile::new(u),
                    stat: ProcFile::new(s),
                }),
                _ => None,
            }
        };
        let io = match existing(v2, "io.stat") {
            Some(p) if v2_primary => Some(IoSrc::IoStat(ProcFile::new(p))),
            _ => dirs
                .procs_dir(layout)
                .map(|d| d.join("cgroup.procs"))
                .filter(|p| p.exists())
                .map(|p| IoSrc::Tasks {
                    procs: ProcFile::new(p),
                    proc_path: proc_path.to_path_buf(),
                    files: HashMap::new(),
                    state: taskio::TaskIo::default(),
                }),
        };
        let mut pressure = Vec::new();
        for res in ["cpu", "io", "memory"] {
            if let Some(p) = existing(v2, &format!("{res}.pressure")) {
                pressure.push((res, ProcFile::new(p)));
            }
        }
        Reader {
            cpu,
            throttle,
            limit,
            mem,
            io,
            pressure,
        }
    }

    pub fn io_source(&self) -> Option<IoSource> {
        self.io.as_ref().map(|s| match s {
            IoSrc::IoStat(_) => IoSource::IoStat,
            IoSrc::Tasks { .. } => IoSource::TaskIo,
        })
    }

    /// Reads everything once. A file that fails leaves its number `None`; the errors say which.
    pub fn read(&mut self) -> (Reading, Vec<FileError>) {
        let mut r = Reading::default();
        let mut errors = Vec::new();
        let mut ok = |res: Result<&str, FileError>| match res {
            Ok(t) => Some(t.to_string()),
            Err(e) => {
                errors.push(e);
                None
            }
        };
        match &mut self.cpu {
            Some(CpuSrc::V2(f)) => {
                r.cpu_ns = ok(f.read_str()).and_then(|t| v2::parse_cpu_stat(&t).usage_ns)
            }
            Some(CpuSrc::V1(f)) => {
                r.cpu_ns = ok(f.read_str())
                    .and_then(|t| v1::parse_int(&t))
                    .and_then(|v| u64::try_from(v).ok())
            }
            None => {}
        }
        if let Some(f) = &mut self.throttle {
            r.throttled_ns = ok(f.read_str()).and_then(|t| v2::parse_cpu_stat(&t).throttled_ns);
        }
        match &mut self.limit {
            Some(LimitSrc::V2(f)) => {
                r.cpu_limit = ok(f.read_str()).and_then(|t| v2::parse_cpu_max(&t))
            }
            Some(LimitSrc::V1 { quota, period }) => {
                let q = ok(quota.read_str()).and_then(|t| v1::parse_int(&t));
                let p = ok(period.read_str()).and_then(|t| v1::parse_int(&t));
                if let (Some(q), Some(p)) = (q, p) {
                    r.cpu_limit = v1::cfs_limit(q, p);
                }
            }
            None => {}
        }
        match &mut self.mem {
            Some(MemSrc::V2 { current, stat }) => {
                let usage = ok(current.read_str()).and_then(|t| v1::parse_int(&t));
                let inactive =
                    ok(stat.read_str()).and_then(|t| v2::stat_field(&t, "inactive_file"));
                r.memory = usage.map(|u| v2::memory_usage(u.max(0) as u64, inactive));
            }
            Some(MemSrc::V1 { usage, stat }) => {
                let u = ok(usage.read_str()).and_then(|t| v1::parse_int(&t));
                let inactive =
                    ok(stat.read_str()).and_then(|t| v2::stat_field(&t, "total_inactive_file"));
                r.memory = u.map(|u| v2::memory_usage(u.max(0) as u64, inactive));
            }
            None => {}
        }
        for (res, f) in &mut self.pressure {
            if let Some(p) = ok(f.read_str()).and_then(|t| psi::parse(&t)) {
                r.pressure.push((res, p));
            }
        }
        match &mut self.io {
            Some(IoSrc::IoStat(f)) => r.io = ok(f.read_str()).map(|t| v2::parse_io_stat(&t)),
            Some(IoSrc::Tasks {
                procs,
                proc_path,
                files,
                state,
            }) => match procs.read_str() {
                Ok(text) => {
                    let pids: Vec<i32> =
                        text.lines().filter_map(|l| l.trim().parse().ok()).collect();
                    let live: std::collections::HashSet<i32> = pids.iter().copied().collect();
                    files.retain(|pid, _| live.contains(pid));
                    let mut seen = Vec::with_capacity(pids.len());
                    let mut last_error = None;
                    for pid in pids.iter().filter(|p| **p > 0) {
                        let (file, ppid) = files.entry(*pid).or_insert_with(|| {
                            let dir = proc_path.join(pid.to_string());
                            let ppid = std::fs::read_to_string(dir.join("stat"))
                                .ok()
                                .and_then(|s| taskio::parse_ppid(&s))
                                .unwrap_or(0);
                            (ProcFile::new(dir.join("io")), ppid)
                        });
                        // A process that exited since cgroup.procs was read is simply not seen.
                        match file.read_str().map(taskio::parse_proc_io) {
                            Ok(Some(io)) => seen.push(taskio::Observed {
                                pid: *pid,
                                ppid: *ppid,
                                io,
                            }),
                            Ok(None) => {}
                            Err(e) => last_error = Some(e),
                        }
                    }
                    r.processes = Some(seen.len());
                    // "Gone" for every process is either an exit (then the processes have left
                    // cgroup.procs) or processes this agent cannot see (they are still listed).
                    let exited = last_error.as_ref().is_some_and(FileError::is_gone)
                        && procs
                            .read_str()
                            .map(|t| {
                                t.lines()
                                    .filter_map(|l| l.trim().parse::<i32>().ok())
                                    .collect::<Vec<_>>()
                            })
                            .ok()
                            .as_ref()
                            != Some(&pids);
                    if seen.is_empty() && !pids.is_empty() && !exited {
                        // Processes we cannot read (another PID namespace, not root): say so
                        // rather than report a silent 0.
                        errors.push(last_error.filter(|e| !e.is_gone()).unwrap_or_else(|| {
                            FileError::new(
                                procs.path(),
                                std::io::Error::new(
                                    std::io::ErrorKind::PermissionDenied,
                                    "no process of the cgroup is visible in /proc (run in the host PID namespace)",
                                ),
                            )
                        }));
                    } else {
                        r.io = Some(state.update(&seen));
                    }
                }
                Err(e) => errors.push(e),
            },
            None => {}
        }
        (r, errors)
    }
}
