//! Per-container metrics, sampled in the node cycle so they share its interval and timestamp.
//!
//! For each running container in the current [`Inventory`] a [`Reader`] keeps the cgroup files
//! open; rates are Δcounter / Δwall between two readings on the monotonic clock, so
//! `container.cpu.usage` is Wings' `cpu_absolute` / 100 (1.0 = one core, not capped by the
//! limit). Counters carry the start of the container's run as their start time: one start per
//! run. A container restarted in place (`docker restart`: same ID, its cgroup removed and created
//! again) is a new run: the sampler sees it first (a counter went down, or a kept file had to be
//! reopened) and starts the new run at the previous point's time, the last instant the old run's
//! counters were known, and keeps that start when discovery later reports the new PID; if
//! discovery is first, the run starts at Docker's new `StartedAt`. Either way no rate is computed
//! across the restart and no start moves afterwards. A container whose files vanished
//! (removed since discovery) is skipped until discovery drops it.
//!
//! Cost (docs/containers.md#what-is-read-every-cycle): the tracks are kept in inventory order and
//! rebuilt only when discovery publishes a new inventory; slow-changing files are read every
//! `slow_every` cycles, spread over the cycles; and the descriptors kept open stay within a
//! budget below the process's open-file limit: past it, the slow files and then every file of the
//! last containers are opened for each read instead ([`Descriptors`]).

use super::Inventory;
use crate::sources::cgroup::paths::Layout;
use crate::sources::cgroup::psi::Pressure;
use crate::sources::cgroup::{IoBytes, Reader};
use std::borrow::Cow;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

/// Docker's container states, all reported in `container.count` (0 when none).
pub(crate) const DOCKER_STATES: [&str; 7] = [
    "created",
    "running",
    "paused",
    "restarting",
    "exited",
    "removing",
    "dead",
];
/// Wings' server states (docs/containers.md#states).
pub(crate) const SERVER_STATES: [&str; 4] = ["offline", "starting", "running", "stopping"];

/// One container's numbers in one sample; its identity is `inventory.containers[index]`.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct ContainerSample {
    #[serde(skip)]
    pub index: usize,
    /// Cores used since the previous sample (1.0 = one core).
    pub cpu_usage: Option<f64>,
    pub cpu_seconds: Option<f64>,
    pub cpu_limit: Option<f64>,
    pub throttled_seconds: Option<f64>,
    pub memory_bytes: Option<u64>,
    pub io: Option<IoBytes>,
    /// Bytes per second since the previous sample (read, write).
    pub io_rate: Option<(f64, f64)>,
    /// Where the disk bytes come from (`io.stat`, `proc-pid-io`).
    pub io_source: Option<&'static str>,
    /// Per resource of [`crate::sources::cgroup::PRESSURE`].
    #[serde(skip)]
    pub pressure: [Option<Pressure>; 3],
    pub processes: Option<usize>,
    pub start_nanos: u64,
    /// Why numbers are missing, if they are.
    pub problem: Option<String>,
}

/// How the sampler keeps its files open.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Descriptors {
    /// The process's open-file limit and the part of it container files may keep.
    pub limit: u64,
    pub budget: usize,
    /// Files kept open between reads, and files opened for each read.
    pub kept: usize,
    pub per_read: usize,
    /// Containers whose every-cycle files are opened for each read.
    pub containers_per_read: usize,
}

impl Descriptors {
    /// A sentence for the log and `check` when past the budget.
    pub fn note(&self) -> Option<String> {
        (self.per_read > 0).then(|| {
            format!(
                "descriptor budget {} of the open-file limit {} reached: {} files kept open, {} opened for each read{}",
                self.budget,
                self.limit,
                self.kept,
                self.per_read,
                if self.containers_per_read > 0 {
                    format!(
                        " ({} containers read entirely by opening their files)",
                        self.containers_per_read
                    )
                } else {
                    " (the every-few-cycles files)".into()
                }
            )
        })
    }
}

/// One sample of every running container.
#[derive(Debug, Clone, Default)]
pub struct ContainersSample {
    /// The inventory the sample was taken from (names, images, Wings servers).
    pub inventory: Arc<Inventory>,
    pub containers: Vec<ContainerSample>,
    /// Containers by Docker state; empty when Docker could not be asked.
    pub counts: Vec<(Cow<'static, str>, u64)>,
    pub descriptors: Descriptors,
}

impl ContainersSample {
    /// Who a sampled container is.
    pub fn info(&self, c: &ContainerSample) -> &super::ContainerInfo {
        &self.inventory.containers[c.index]
    }

    /// The directory whose `cgroup.procs` lists the container's processes.
    pub fn cgroup(&self, c: &ContainerSample) -> Option<String> {
        let dirs = self.info(c).dirs.as_ref()?;
        dirs.procs_dir(self.inventory.layout.unwrap_or(Layout::V1))
            .map(|p| p.display().to_string())
    }

    /// Pressure as (resource, reading) pairs, for reports.
    pub fn pressure(c: &ContainerSample) -> Vec<(&'static str, Pressure)> {
        crate::sources::cgroup::PRESSURE
            .iter()
            .zip(c.pressure)
            .filter_map(|(r, p)| Some((*r, p?)))
            .collect()
    }
}

/// `check --json`'s shape: each container with its identity and numbers, the Wings servers, the
/// counts by state, the descriptors.
impl serde::Serialize for ContainersSample {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        #[derive(serde::Serialize)]
        struct Container<'a> {
            id: &'a str,
            name: &'a str,
            image: &'a str,
            state: &'a str,
            server_uuid: Option<&'a str>,
            server_name: Option<&'a str>,
            cgroup: Option<String>,
            pressure: Vec<(&'static str, Pressure)>,
            #[serde(flatten)]
            sample: &'a ContainerSample,
        }
        #[derive(serde::Serialize)]
        struct Server<'a> {
            uuid: &'a str,
            name: &'a str,
            state: &'a str,
            suspended: bool,
            container_id: Option<&'a str>,
            cpu_limit_pct: i64,
            wings_cpu_absolute: Option<f64>,
        }
        #[derive(serde::Serialize)]
        struct View<'a> {
            containers: Vec<Container<'a>>,
            servers: Vec<Server<'a>>,
            counts: std::collections::BTreeMap<&'a str, u64>,
            descriptors: &'a Descriptors,
        }
        View {
            containers: self
                .containers
                .iter()
                .map(|c| {
                    let i = self.info(c);
                    Container {
                        id: &i.id,
                        name: &i.name,
                        image: &i.image,
                        state: &i.state,
                        server_uuid: i.server_uuid.as_deref(),
                        server_name: i.server_name.as_deref(),
                        cgroup: self.cgroup(c),
                        pressure: Self::pressure(c),
                        sample: c,
                    }
                })
                .collect(),
            servers: self
                .inventory
                .servers
                .iter()
                .map(|sv| Server {
                    uuid: &sv.uuid,
                    name: &sv.name,
                    state: &sv.state,
                    suspended: sv.suspended,
                    container_id: sv.container_id.as_deref(),
                    cpu_limit_pct: sv.limits.cpu_limit_pct,
                    wings_cpu_absolute: sv.cpu_absolute,
                })
                .collect(),
            counts: self.counts.iter().map(|(k, n)| (k.as_ref(), *n)).collect(),
            descriptors: &self.descriptors,
        }
        .serialize(s)
    }
}

#[derive(Debug, Clone, Copy)]
struct Prev {
    at: Instant,
    cpu_ns: Option<u64>,
    io: Option<IoBytes>,
}

struct Track {
    /// Boxed: a reader is about 1 KB, and re-aligning with a new inventory moves every track
    /// through a map and a new list while the old list is alive (at 1000 containers that was a
    /// 3.4 MB spike at each discovery pass, the agent's peak RSS).
    reader: Box<Reader>,
    pid: i64,
    start_nanos: u64,
    prev: Option<Prev>,
    /// Time of the last point reported for this container.
    last_time: Option<u64>,
    /// A new run was seen by the counters since discovery last changed the PID.
    restarted: bool,
    /// The files vanished (the container is being removed): nothing is reported.
    gone: bool,
    phase: u32,
    /// The limit is Docker's; the reader does not read it.
    limit_known: bool,
}

/// Keeps one reader per running container between samples.
pub struct Sampler {
    proc_path: PathBuf,
    /// One slot per container of `inv`, `None` for those not measured.
    tracks: Vec<Option<Track>>,
    inv: Option<Arc<Inventory>>,
    counts: Vec<(Cow<'static, str>, u64)>,
    cycle: u32,
    slow_every: u32,
    next_phase: u32,
    descriptors: Descriptors,
    /// The one read buffer of every container file.
    scratch: Vec<u8>,
}

/// Δ / seconds, or `None` when a counter went down (reset) or no time passed.
fn rate(prev: u64, cur: u64, secs: f64) -> Option<f64> {
    (cur >= prev && secs > 0.0).then(|| (cur - prev) as f64 / secs)
}

impl Sampler {
    /// Reads everything every cycle, with all of the open-file limit to keep files open.
    pub fn new(proc_path: PathBuf) -> Sampler {
        let limit = crate::sys::limits::fd_limit();
        Sampler::with(proc_path, 1, limit)
    }

    /// [`Sampler::new`] under the open-file limit `fd_limit` (tests of the descriptor budget).
    pub fn with_fd_limit(proc_path: PathBuf, fd_limit: u64) -> Sampler {
        let mut s = Sampler::with(proc_path, 1, fd_limit);
        s.descriptors.budget = fd_budget_exact(fd_limit);
        s
    }

    /// The sampler of a node cycle every `interval` (the shortest): slow-changing files are read
    /// every ⌈10 s / interval⌉ cycles (at most every 10th), so they are at most about 10 s old.
    pub(crate) fn for_interval(proc_path: PathBuf, interval: std::time::Duration) -> Sampler {
        Sampler::with(
            proc_path,
            slow_every(interval),
            crate::sys::limits::fd_limit(),
        )
    }

    /// Follows a new sample interval (the slow files stay at most about 10 s old).
    pub(crate) fn set_interval(&mut self, interval: std::time::Duration) {
        self.slow_every = slow_every(interval);
    }

    /// `slow_every`: slow-changing files are read every this many cycles. `fd_limit`: the
    /// process's open-file limit; container files keep at most 7/8 of it open.
    pub(crate) fn with(proc_path: PathBuf, slow_every: u32, fd_limit: u64) -> Sampler {
        Sampler {
            proc_path,
            tracks: Vec::new(),
            inv: None,
            counts: Vec::new(),
            cycle: 0,
            slow_every: slow_every.max(1),
            next_phase: 0,
            descriptors: Descriptors {
                limit: fd_limit,
                budget: fd_budget(fd_limit),
                ..Default::default()
            },
            scratch: Vec::new(),
        }
    }

    /// Aligns the tracks with a new inventory: keeps those of containers still running under
    /// the same ID (a set lookup, not a scan), starts new ones, drops the rest.
    fn align(&mut self, inv: &Arc<Inventory>, now_nanos: u64) {
        let layout = inv.layout.unwrap_or(Layout::V1);
        let mut old: HashMap<&str, Track> = HashMap::with_capacity(self.tracks.len());
        if let Some(prev) = &self.inv {
            for (c, t) in prev.containers.iter().zip(self.tracks.drain(..)) {
                if let Some(t) = t {
                    old.insert(c.id.as_str(), t);
                }
            }
        }
        let mut tracks = Vec::with_capacity(inv.containers.len());
        for c in &inv.containers {
            let Some(dirs) = c.dirs.as_ref().filter(|_| c.is_running()) else {
                tracks.push(None);
                continue;
            };
            let limit_known = c.docker_cpu_limit.is_some();
            let track = match old.remove(c.id.as_str()) {
                Some(mut t) if t.pid == c.pid => {
                    if limit_known && !t.limit_known {
                        t.reader.forget_limit();
                        t.limit_known = true;
                    }
                    t
                }
                // The same ID with a new PID: restarted in place. If the counters already
                // showed it, the new run has its start; otherwise it starts now, at Docker's
                // StartedAt when that is after the last point.
                Some(mut t) if t.restarted => {
                    t.pid = c.pid;
                    t.restarted = false;
                    t
                }
                old_track => {
                    let last = old_track.and_then(|t| t.last_time);
                    let start = match last {
                        Some(l) if c.started_nanos <= l || c.started_nanos > now_nanos => l,
                        _ => c.started_nanos.min(now_nanos),
                    };
                    self.next_phase = self.next_phase.wrapping_add(1);
                    Track {
                        reader: Box::new(Reader::with_limit(
                            layout,
                            dirs,
                            &self.proc_path,
                            limit_known,
                        )),
                        pid: c.pid,
                        start_nanos: start,
                        prev: None,
                        last_time: None,
                        restarted: false,
                        gone: false,
                        phase: self.next_phase % self.slow_every,
                        limit_known,
                    }
                }
            };
            tracks.push(Some(track));
        }
        drop(old);
        self.tracks = tracks;
        self.counts.clear();
        if matches!(inv.docker, super::SourceState::Ok(_)) {
            self.counts
                .extend(DOCKER_STATES.iter().map(|s| (Cow::Borrowed(*s), 0)));
            for c in &inv.containers {
                match self.counts.iter_mut().find(|(s, _)| *s == c.state.as_str()) {
                    Some((_, n)) => *n += 1,
                    None => self.counts.push((Cow::Owned(c.state.clone()), 1)),
                }
            }
        }
        self.inv = Some(inv.clone());
    }

    /// Samples every running container of `inv`. Errors are per container, for the health record.
    pub fn sample(
        &mut self,
        inv: &Arc<Inventory>,
        now_nanos: u64,
    ) -> (ContainersSample, Vec<String>) {
        if !self.inv.as_ref().is_some_and(|i| Arc::ptr_eq(i, inv)) {
            self.align(inv, now_nanos);
        }
        self.cycle = self.cycle.wrapping_add(1);
        let mut out = ContainersSample {
            inventory: inv.clone(),
            containers: Vec::with_capacity(self.tracks.len()),
            counts: self.counts.clone(),
            descriptors: self.descriptors,
        };
        let mut errors = Vec::new();
        for (index, c) in inv.containers.iter().enumerate() {
            if !c.is_running() {
                continue;
            }
            let mut cs = ContainerSample {
                index,
                start_nanos: c.started_nanos,
                cpu_limit: c.docker_cpu_limit.flatten(),
                ..Default::default()
            };
            let Some(track) = self.tracks.get_mut(index).and_then(Option::as_mut) else {
                let problem = if c.pid <= 0 {
                    "not inspected yet (Docker is slow to answer); measured once discovery gets to it".to_string()
                } else {
                    format!(
                        "no cgroup found (pid {}: /proc/{}/cgroup unreadable and no driver path exists)",
                        c.pid, c.pid
                    )
                };
                note_error(&mut errors, &c.name, &problem);
                cs.problem = Some(problem);
                out.containers.push(cs);
                continue;
            };
            let slow =
                track.prev.is_none() || (self.cycle + track.phase).is_multiple_of(self.slow_every);
            let (r, errs) = track.reader.read_with(slow, &mut self.scratch);
            let mut r_io_override = None;
            let at = Instant::now();
            cs.io_source = track.reader.io_source().map(|s| s.as_str());
            if !errs.is_empty() {
                if errs.iter().all(|e| e.is_gone()) && r.cpu_ns.is_none() {
                    // Removed since discovery: churn, not an error. The next pass drops it; if
                    // it comes back under the same path, that is a new run.
                    track.gone = true;
                    track.prev = None;
                    continue;
                }
                let msg = errs
                    .iter()
                    .map(|e| e.to_string())
                    .collect::<Vec<_>>()
                    .join("; ");
                note_error(&mut errors, &c.name, &msg);
                cs.problem = Some(msg);
            }
            if r.cpu_ns.is_none() && cs.problem.is_none() {
                cs.problem = Some("no CPU accounting file in the container's cgroup".into());
            }
            if r.io.is_none() && cs.problem.is_none() {
                cs.problem = Some("no disk source: neither io.stat nor cgroup.procs".into());
            }
            // A new run under the same ID: a counter went down, or the cgroup was created again.
            let reset = std::mem::take(&mut track.gone)
                || r.recreated
                || track.prev.as_ref().is_some_and(|p| {
                    matches!((p.cpu_ns, r.cpu_ns), (Some(a), Some(b)) if b < a)
                        || matches!((p.io, r.io), (Some(a), Some(b)) if b.read < a.read || b.write < a.write)
                });
            if reset && let Some(last) = track.last_time {
                track.prev = None;
                track.start_nanos = last;
                track.restarted = true;
                // The task counters of the old run are not this run's.
                if track.reader.reset_task_counters() {
                    let (again, _) = track.reader.read_with(false, &mut self.scratch);
                    cs.processes = again.processes;
                    r_io_override = Some(again.io);
                }
            }
            if let Some(p) = &track.prev {
                let secs = at.duration_since(p.at).as_secs_f64();
                if let (Some(a), Some(b)) = (p.cpu_ns, r.cpu_ns) {
                    cs.cpu_usage = rate(a, b, secs).map(|ns| ns / 1e9);
                }
                if let (Some(a), Some(b)) = (p.io, r.io) {
                    cs.io_rate = rate(a.read, b.read, secs).zip(rate(a.write, b.write, secs));
                }
            }
            let io = r_io_override.unwrap_or(r.io);
            track.prev = Some(Prev {
                at,
                cpu_ns: r.cpu_ns,
                io,
            });
            track.last_time = Some(now_nanos);
            cs.start_nanos = track.start_nanos;
            cs.cpu_seconds = r.cpu_ns.map(|n| n as f64 / 1e9);
            if !track.limit_known {
                cs.cpu_limit = r.cpu_limit;
            }
            cs.throttled_seconds = r.throttled_ns.map(|n| n as f64 / 1e9);
            cs.memory_bytes = r.memory;
            cs.io = io;
            cs.pressure = r.pressure;
            if cs.processes.is_none() {
                cs.processes = r.processes;
            }
            out.containers.push(cs);
        }
        if errors.len() > MAX_ERRORS {
            let more = errors.len() - MAX_ERRORS;
            errors.truncate(MAX_ERRORS);
            errors.push(format!("and {more} more containers"));
        }
        self.budget();
        out.descriptors = self.descriptors;
        (out, errors)
    }

    /// Decides, for the next cycle, which files stay open: everything while it fits the budget;
    /// else the every-cycle files only; else the every-cycle files of as many containers as fit.
    fn budget(&mut self) {
        let counts: Vec<(usize, usize)> = self
            .tracks
            .iter()
            .flatten()
            .map(|t| t.reader.file_counts())
            .collect();
        let cycle: usize = counts.iter().map(|c| c.0).sum();
        let slow: usize = counts.iter().map(|c| c.1).sum();
        let budget = self.descriptors.budget;
        let keep_slow = cycle + slow <= budget;
        let mut room = budget;
        let mut fit = 0;
        for (c, _) in &counts {
            if *c > room {
                break;
            }
            room -= c;
            fit += 1;
        }
        for (i, t) in self.tracks.iter_mut().flatten().enumerate() {
            t.reader.set_keep(i < fit, keep_slow);
        }
        let kept: usize =
            counts[..fit].iter().map(|c| c.0).sum::<usize>() + if keep_slow { slow } else { 0 };
        let d = Descriptors {
            kept,
            per_read: cycle + slow - kept,
            containers_per_read: counts.len() - fit,
            ..self.descriptors
        };
        if d.per_read != self.descriptors.per_read
            || d.containers_per_read != self.descriptors.containers_per_read
        {
            match d.note() {
                Some(note) if self.descriptors.per_read == 0 => {
                    tracing::warn!("containers: {note}")
                }
                Some(note) => tracing::info!("containers: {note}"),
                None => tracing::info!(
                    kept,
                    "containers: every container file fits the descriptor budget again"
                ),
            }
        }
        self.descriptors = d;
    }
}

/// Cycles between two reads of the slow-changing files at a sample `interval`.
pub(crate) fn slow_every(interval: std::time::Duration) -> u32 {
    let ms = interval.as_millis().max(1);
    (SLOW_MAX_AGE_MS.div_ceil(ms)).clamp(1, 10) as u32
}

/// The age the slow-changing values may reach before they are read again.
pub(crate) const SLOW_MAX_AGE_MS: u128 = 10_000;

/// Container errors spelled out in one cycle's health record; the rest are counted.
const MAX_ERRORS: usize = 8;

/// Adds a container's error to the cycle's list (spelled out for the first [`MAX_ERRORS`]).
fn note_error(errors: &mut Vec<String>, name: &str, problem: &str) {
    if errors.len() < MAX_ERRORS {
        errors.push(format!("container {name}: {problem}"));
    } else {
        errors.push(String::new());
    }
}

/// Container files keep at most 7/8 of the open-file limit open (at least 64): the rest is for
/// sockets, the spool and everything else the agent opens.
pub(crate) fn fd_budget(limit: u64) -> usize {
    fd_budget_exact(limit).max(64)
}

fn fd_budget_exact(limit: u64) -> usize {
    let limit = usize::try_from(limit).unwrap_or(usize::MAX);
    limit - limit / 8
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::sources::cgroup::paths::Dirs;
    use crate::sources::containers::{ContainerInfo, SourceState};

    fn inv(id: &str, pid: i64, dir: &std::path::Path) -> Arc<Inventory> {
        Arc::new(Inventory {
            layout: Some(Layout::V2),
            docker: SourceState::Ok(String::new()),
            containers: vec![Arc::new(ContainerInfo {
                id: id.into(),
                name: "srv".into(),
                state: "running".into(),
                pid,
                started_nanos: 42,
                dirs: Some(Dirs {
                    v2: Some(dir.to_path_buf()),
                    ..Default::default()
                }),
                ..Default::default()
            })],
            ..Default::default()
        })
    }

    fn set(dir: &std::path::Path, usage_usec: u64, wbytes: u64) {
        std::fs::write(dir.join("cpu.stat"), format!("usage_usec {usage_usec}\n")).unwrap();
        std::fs::write(
            dir.join("io.stat"),
            format!("8:0 rbytes=0 wbytes={wbytes} rios=0 wios=0 dbytes=0 dios=0\n"),
        )
        .unwrap();
    }

    #[test]
    fn counter_reset_gives_no_rate_and_one_start_per_run() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("cgroup.procs"), "").unwrap();
        set(d.path(), 5_000_000, 1 << 30);
        let mut s = Sampler::new("/proc".into());
        let i = inv("a", 1, d.path());
        let (first, e) = s.sample(&i, 100);
        assert!(e.is_empty(), "{e:?}");
        let c = &first.containers[0];
        assert_eq!(
            (c.cpu_usage, c.start_nanos, c.io_source),
            (None, 42, Some("io.stat"))
        );
        assert_eq!(first.counts[1], (Cow::Borrowed("running"), 1));
        assert_eq!(first.counts[4], (Cow::Borrowed("exited"), 0));
        std::thread::sleep(std::time::Duration::from_millis(100));
        set(d.path(), 5_010_000, (1 << 30) + 1000);
        let (second, _) = s.sample(&i, 200);
        let c = &second.containers[0];
        let usage = c.cpu_usage.unwrap();
        // 10 ms of CPU in at least 100 ms of wall time.
        assert!(usage > 0.0 && usage <= 0.1, "{usage}");
        assert!(c.io_rate.unwrap().1 > 0.0);
        // Counters went down under the same ID (restarted in place): no rate, and the new run
        // starts at the previous point (never at its own time).
        set(d.path(), 10, 0);
        let (third, _) = s.sample(&i, 300);
        let c = &third.containers[0];
        assert_eq!((c.cpu_usage, c.io_rate, c.start_nanos), (None, None, 200));
        set(d.path(), 20, 10);
        let (fourth, _) = s.sample(&i, 400);
        assert!(fourth.containers[0].cpu_usage.unwrap() >= 0.0);
        assert_eq!(fourth.containers[0].start_nanos, 200);
        // Discovery then reports the new PID and Docker's StartedAt: the run keeps its start.
        let mut moved = (*i).clone();
        Arc::make_mut(&mut moved.containers[0]).pid = 2;
        Arc::make_mut(&mut moved.containers[0]).started_nanos = 250;
        let moved = Arc::new(moved);
        let (fifth, _) = s.sample(&moved, 500);
        assert_eq!(fifth.containers[0].start_nanos, 200);
        assert!(
            fifth.containers[0].cpu_usage.is_some(),
            "no reset at the PID change"
        );
        // A restart discovery sees first (new PID, StartedAt after the last point).
        let mut again = (*moved).clone();
        Arc::make_mut(&mut again.containers[0]).pid = 3;
        Arc::make_mut(&mut again.containers[0]).started_nanos = 550;
        let (sixth, _) = s.sample(&Arc::new(again), 600);
        assert_eq!(
            (
                sixth.containers[0].start_nanos,
                sixth.containers[0].cpu_usage
            ),
            (550, None)
        );
        // A new ID (Wings re-created the container): its own start, the old one is forgotten.
        let (seventh, _) = s.sample(&inv("b", 1, d.path()), 700);
        assert_eq!(seventh.containers.len(), 1);
        let c = &seventh.containers[0];
        assert_eq!(
            (
                seventh.inventory.containers[c.index].id.as_str(),
                c.start_nanos
            ),
            ("b", 42)
        );
        assert_eq!(c.cpu_usage, None);
        assert_eq!(s.tracks.iter().flatten().count(), 1);
    }

    #[test]
    fn slow_files_every_nth_cycle_and_budget() {
        let d = tempfile::tempdir().unwrap();
        set(d.path(), 1, 1);
        std::fs::write(d.path().join("memory.current"), "1000\n").unwrap();
        std::fs::write(d.path().join("memory.stat"), "inactive_file 100\n").unwrap();
        let mut s = Sampler::with("/proc".into(), 3, 1 << 20);
        let i = inv("a", 1, d.path());
        let mut mem = vec![];
        for n in 0..7 {
            std::fs::write(d.path().join("memory.stat"), format!("inactive_file {n}\n")).unwrap();
            mem.push(s.sample(&i, n).0.containers[0].memory_bytes.unwrap());
        }
        // Read at the first cycle, then every third one; the last value in between.
        let read_at: Vec<usize> = (1..7).filter(|k| mem[*k] != mem[k - 1]).collect();
        assert_eq!(mem[0], 1000);
        assert_eq!(read_at.len(), 2, "{mem:?}");
        assert_eq!(read_at[1] - read_at[0], 3, "{mem:?}");
        // A tiny open-file limit: the budget is below one container's files.
        let mut tight = Sampler::with("/proc".into(), 1, 0);
        tight.descriptors.budget = 2;
        let (x, e) = tight.sample(&i, 1);
        assert!(e.is_empty());
        assert!(x.containers[0].cpu_seconds.is_some());
        let (y, _) = tight.sample(&i, 2);
        assert_eq!(
            (y.descriptors.kept, y.descriptors.containers_per_read),
            (0, 1)
        );
        assert!(
            y.descriptors
                .note()
                .unwrap()
                .contains("opened for each read")
        );
        assert_eq!(fd_budget(20_000), 17_500);
        assert_eq!(fd_budget(0), 64);
    }

    #[test]
    fn rates_never_negative() {
        assert_eq!(rate(10, 5, 1.0), None);
        assert_eq!(rate(10, 30, 2.0), Some(10.0));
        assert_eq!(rate(0, 1, 0.0), None);
    }
}
