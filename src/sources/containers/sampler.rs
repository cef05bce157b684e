//! Per-container metrics, sampled in the node cycle so they share its interval and timestamp.
//!
//! For each running container in the current [`Inventory`] a [`Reader`] keeps the cgroup files
//! open; rates are Δcounter / Δwall between two readings on the monotonic clock, so
//! `container.cpu.usage` is Wings' `cpu_absolute` / 100 (1.0 = one core, not capped by the
//! limit). A counter that goes down (the container was restarted under the same ID) or a reader
//! whose files vanished (the container was removed, Wings re-creates it at every start) resets
//! that container: no rate that cycle, a new start time, never a negative or huge rate. Counters
//! carry the container's start as their start time.

use super::Inventory;
use crate::sources::cgroup::paths::Layout;
use crate::sources::cgroup::psi::Pressure;
use crate::sources::cgroup::{IoBytes, Reader};
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
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

/// One container's numbers in one sample.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct ContainerSample {
    pub id: String,
    pub name: String,
    pub image: String,
    pub state: String,
    pub server_uuid: Option<String>,
    pub server_name: Option<String>,
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
    pub pressure: Vec<(&'static str, Pressure)>,
    pub processes: Option<usize>,
    pub cgroup: Option<String>,
    pub start_nanos: u64,
    /// Why numbers are missing, if they are.
    pub problem: Option<String>,
}

/// A Wings server's state in one sample.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct ServerStatus {
    pub uuid: String,
    pub name: String,
    pub state: String,
    pub suspended: bool,
    pub container_id: Option<String>,
    pub cpu_limit_pct: i64,
    pub wings_cpu_absolute: Option<f64>,
}

#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct ContainersSample {
    pub containers: Vec<ContainerSample>,
    pub servers: Vec<ServerStatus>,
    /// Containers by Docker state; empty when Docker could not be asked.
    pub counts: BTreeMap<String, u64>,
}

struct Prev {
    at: Instant,
    cpu_ns: Option<u64>,
    io: Option<IoBytes>,
}

struct Track {
    reader: Reader,
    pid: i64,
    start_nanos: u64,
    prev: Option<Prev>,
}

/// Keeps one reader per running container between samples.
#[derive(Default)]
pub struct Sampler {
    proc_path: PathBuf,
    tracks: HashMap<String, Track>,
}

/// Δ / seconds, or `None` when a counter went down (reset) or no time passed.
fn rate(prev: u64, cur: u64, secs: f64) -> Option<f64> {
    (cur >= prev && secs > 0.0).then(|| (cur - prev) as f64 / secs)
}

impl Sampler {
    pub fn new(proc_path: PathBuf) -> Sampler {
        Sampler {
            proc_path,
            tracks: HashMap::new(),
        }
    }

    /// Samples every running container of `inv`. Errors are per container, for the health record.
    pub fn sample(&mut self, inv: &Inventory, now_nanos: u64) -> (ContainersSample, Vec<String>) {
        let mut out = ContainersSample::default();
        let mut errors = Vec::new();
        let layout = inv.layout.unwrap_or(Layout::V1);
        if matches!(inv.docker, super::SourceState::Ok(_)) {
            for s in DOCKER_STATES {
                out.counts.insert(s.to_string(), 0);
            }
            for c in &inv.containers {
                *out.counts.entry(c.state.clone()).or_default() += 1;
            }
        }
        // Forget containers that are gone or stopped: their series end here.
        self.tracks
            .retain(|id, _| inv.containers.iter().any(|c| &c.id == id && c.is_running()));
        for c in inv.containers.iter().filter(|c| c.is_running()) {
            let mut cs = ContainerSample {
                id: c.id.clone(),
                name: c.name.clone(),
                image: c.image.clone(),
                state: c.state.clone(),
                server_uuid: c.server_uuid.clone(),
                server_name: c.server_name.clone(),
                start_nanos: c.started_nanos,
                ..Default::default()
            };
            let Some(dirs) = &c.dirs else {
                cs.problem = Some(format!(
                    "no cgroup found (pid {}: /proc/{}/cgroup unreadable and no driver path exists)",
                    c.pid, c.pid
                ));
                errors.push(format!(
                    "container {}: {}",
                    c.name,
                    cs.problem.as_deref().unwrap_or("")
                ));
                out.containers.push(cs);
                continue;
            };
            let track = match self.tracks.get_mut(&c.id) {
                Some(t) if t.pid == c.pid => t,
                _ => {
                    // New container, or restarted under the same ID: fresh reader and start.
                    self.tracks.insert(
                        c.id.clone(),
                        Track {
                            reader: Reader::new(layout, dirs.clone(), &self.proc_path),
                            pid: c.pid,
                            start_nanos: c.started_nanos,
                            prev: None,
                        },
                    );
                    self.tracks.get_mut(&c.id).expect("just inserted")
                }
            };
            let (r, errs) = track.reader.read();
            let at = Instant::now();
            cs.cgroup = dirs.procs_dir(layout).map(|p| p.display().to_string());
            cs.io_source = track.reader.io_source().map(|s| s.as_str());
            if !errs.is_empty() {
                if errs.iter().all(|e| e.is_gone()) && r.cpu_ns.is_none() {
                    // Removed since discovery: churn, not an error. The next pass drops it.
                    self.tracks.remove(&c.id);
                    continue;
                }
                let msg = errs
                    .iter()
                    .map(|e| e.to_string())
                    .collect::<Vec<_>>()
                    .join("; ");
                errors.push(format!("container {}: {msg}", c.name));
                cs.problem = Some(msg);
            }
            if r.cpu_ns.is_none() && cs.problem.is_none() {
                cs.problem = Some("no CPU accounting file in the container's cgroup".into());
            }
            if r.io.is_none() && cs.problem.is_none() {
                cs.problem = Some("no disk source: neither io.stat nor cgroup.procs".into());
            }
            // Reset detection: a counter that went down means new counters under the same ID.
            let reset = track.prev.as_ref().is_some_and(|p| {
                matches!((p.cpu_ns, r.cpu_ns), (Some(a), Some(b)) if b < a)
                    || matches!((p.io, r.io), (Some(a), Some(b)) if b.read < a.read || b.write < a.write)
            });
            if reset {
                track.prev = None;
                track.start_nanos = now_nanos;
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
            track.prev = Some(Prev {
                at,
                cpu_ns: r.cpu_ns,
                io: r.io,
            });
            cs.start_nanos = track.start_nanos;
            cs.cpu_seconds = r.cpu_ns.map(|n| n as f64 / 1e9);
            cs.cpu_limit = r.cpu_limit;
            cs.throttled_seconds = r.throttled_ns.map(|n| n as f64 / 1e9);
            cs.memory_bytes = r.memory;
            cs.io = r.io;
            cs.pressure = r.pressure;
            cs.processes = r.processes;
            out.containers.push(cs);
        }
        for s in &inv.servers {
            out.servers.push(ServerStatus {
                uuid: s.uuid.clone(),
                name: s.name.clone(),
                state: s.state.clone(),
                suspended: s.suspended,
                container_id: inv
                    .containers
                    .iter()
                    .find(|c| c.name == s.uuid)
                    .map(|c| c.id.clone()),
                cpu_limit_pct: s.limits.cpu_limit_pct,
                wings_cpu_absolute: s.cpu_absolute,
            });
        }
        (out, errors)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::sources::cgroup::paths::Dirs;
    use crate::sources::containers::{ContainerInfo, SourceState};

    fn inv(id: &str, dir: &std::path::Path) -> Inventory {
        Inventory {
            layout: Some(Layout::V2),
            docker: SourceState::Ok(String::new()),
            containers: vec![ContainerInfo {
                id: id.into(),
                name: "srv".into(),
                state: "running".into(),
                pid: 1,
                started_nanos: 42,
                dirs: Some(Dirs {
                    v2: Some(dir.to_path_buf()),
                    ..Default::default()
                }),
                ..Default::default()
            }],
            ..Default::default()
        }
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
    fn counter_reset_gives_no_rate_and_a_new_start() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("cgroup.procs"), "").unwrap();
        set(d.path(), 5_000_000, 1 << 30);
        let mut s = Sampler::new("/proc".into());
        let i = inv("a", d.path());
        let (first, e) = s.sample(&i, 100);
        assert!(e.is_empty(), "{e:?}");
        let c = &first.containers[0];
        assert_eq!(
            (c.cpu_usage, c.start_nanos, c.io_source),
            (None, 42, Some("io.stat"))
        );
        assert_eq!(first.counts["running"], 1);
        assert_eq!(first.counts["exited"], 0);
        std::thread::sleep(std::time::Duration::from_millis(100));
        set(d.path(), 5_010_000, (1 << 30) + 1000);
        let (second, _) = s.sample(&i, 200);
        let c = &second.containers[0];
        let usage = c.cpu_usage.unwrap();
        // 10 ms of CPU in at least 100 ms of wall time.
        assert!(usage > 0.0 && usage <= 0.1, "{usage}");
        assert!(c.io_rate.unwrap().1 > 0.0);
        // Counters went down under the same ID: no rate, counters start now.
        set(d.path(), 10, 0);
        let (third, _) = s.sample(&i, 300);
        let c = &third.containers[0];
        assert_eq!((c.cpu_usage, c.io_rate, c.start_nanos), (None, None, 300));
        set(d.path(), 20, 10);
        let (fourth, _) = s.sample(&i, 400);
        assert!(fourth.containers[0].cpu_usage.unwrap() >= 0.0);
        assert_eq!(fourth.containers[0].start_nanos, 300);
        // A new ID (Wings re-created the container): its own start, the old one is forgotten.
        let (fifth, _) = s.sample(&inv("b", d.path()), 500);
        assert_eq!(fifth.containers.len(), 1);
        assert_eq!(
            (
                fifth.containers[0].id.as_str(),
                fifth.containers[0].start_nanos
            ),
            ("b", 42)
        );
        assert_eq!(fifth.containers[0].cpu_usage, None);
        assert_eq!(s.tracks.len(), 1);
    }

    #[test]
    fn rates_never_negative() {
        assert_eq!(rate(10, 5, 1.0), None);
        assert_eq!(rate(10, 30, 2.0), Some(10.0));
        assert_eq!(rate(0, 1, 0.0), None);
    }
}
