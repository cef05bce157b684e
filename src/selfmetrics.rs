//! The agent's own telemetry, which doubles as its heartbeat: per-sampler duration, errors and
//! last success, delivery outcomes and queue depth, and the process's memory and CPU.
//!
//! An orchestrator that stops seeing these knows the agent is gone; `last_success` tells a dead
//! sampler from an empty host.

use crate::export::ExportStats;
use crate::otlp::{MetricsBuilder, kv};
use crate::procfile::ProcFile;
use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::Ordering;
use std::time::Duration;

#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct SamplerHealth {
    /// Passes since the agent started (this one included): a per-sample sequence number.
    pub passes: u64,
    pub last_duration_sec: f64,
    pub errors: u64,
    /// Unix seconds of the last pass without errors (0 = never).
    pub last_success: u64,
    pub last_error: Option<String>,
}

/// Health of every sampler, updated after each pass.
#[derive(Debug, Default)]
pub struct Health {
    samplers: Mutex<BTreeMap<&'static str, SamplerHealth>>,
    process: Mutex<ProcessFiles>,
}

impl Health {
    pub fn record(&self, sampler: &'static str, took: Duration, error: Option<String>) {
        let mut map = self.samplers.lock().expect("health lock");
        let h = map.entry(sampler).or_default();
        h.passes += 1;
        h.last_duration_sec = took.as_secs_f64();
        match error {
            Some(e) => {
                h.errors += 1;
                h.last_error = Some(e);
            }
            None => {
                h.last_success = crate::otlp::now_nanos() / 1_000_000_000;
                h.last_error = None;
            }
        }
    }

    pub fn snapshot(&self) -> BTreeMap<&'static str, SamplerHealth> {
        self.samplers.lock().expect("health lock").clone()
    }
}

/// `/proc/self/statm` and `/proc/self/stat`, kept open: they are read every node cycle.
#[derive(Debug)]
struct ProcessFiles {
    statm: ProcFile,
    stat: ProcFile,
}

impl Default for ProcessFiles {
    fn default() -> Self {
        ProcessFiles {
            statm: ProcFile::new("/proc/self/statm"),
            stat: ProcFile::new("/proc/self/stat"),
        }
    }
}

/// RSS pages from `statm`.
fn parse_statm_rss_pages(statm: &str) -> Option<u64> {
    statm.split_ascii_whitespace().nth(1)?.parse().ok()
}

/// (utime, stime) in clock ticks from `stat`. Fields after the command name, which may contain
/// spaces, start after the last ')'.
fn parse_stat_ticks(stat: &str) -> Option<(f64, f64)> {
    let mut f = stat.get(stat.rfind(')')? + 2..)?.split_ascii_whitespace();
    let utime = f.nth(11)?.parse().ok()?;
    let stime = f.next()?.parse().ok()?;
    Some((utime, stime))
}

impl Health {
    /// Resident memory and CPU seconds (user, system) of this process.
    pub fn process_usage(&self) -> Option<(u64, f64, f64)> {
        let mut files = self.process.lock().expect("process files lock");
        let rss_pages = parse_statm_rss_pages(files.statm.read_str().ok()?)?;
        let (utime, stime) = parse_stat_ticks(files.stat.read_str().ok()?)?;
        // SAFETY: sysconf has no preconditions.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(4096) as u64;
        let tck = crate::node::cpu::ticks_per_second();
        Some((rss_pages * page, utime / tck, stime / tck))
    }
}

pub fn metrics(health: &Health, export: &ExportStats, start_nanos: u64, b: &mut MetricsBuilder) {
    let samplers = health.snapshot();
    let by_sampler = |name: &str| vec![kv("node_agent.sampler", name.to_string())];
    b.gauge(
        "node_agent.sampler.duration",
        "s",
        "Duration of the sampler's last pass",
        samplers
            .iter()
            .map(|(n, h)| (h.last_duration_sec, by_sampler(n))),
    );
    b.sum(
        "node_agent.sampler.errors",
        "{error}",
        "Failed sampler passes since the agent started",
        true,
        samplers
            .iter()
            .map(|(n, h)| (h.errors, start_nanos, by_sampler(n))),
    );
    b.sum(
        "node_agent.sampler.passes",
        "{pass}",
        "Sampler passes since the agent started, this one included (a per-sample sequence number)",
        true,
        samplers
            .iter()
            .map(|(n, h)| (h.passes, start_nanos, by_sampler(n))),
    );
    b.gauge(
        "node_agent.sampler.last_success",
        "s",
        "Unix time of the sampler's last successful pass",
        samplers
            .iter()
            .map(|(n, h)| (h.last_success, by_sampler(n))),
    );
    let outcome = |o: &str| vec![kv("outcome", o.to_string())];
    b.sum(
        "node_agent.export.batches",
        "{batch}",
        "Export attempts by outcome: sent, retried (a failed attempt that will be repeated), dropped",
        true,
        [
            (export.sent.load(Ordering::Relaxed), start_nanos, outcome("sent")),
            (export.retried.load(Ordering::Relaxed), start_nanos, outcome("retried")),
            (export.dropped.load(Ordering::Relaxed), start_nanos, outcome("dropped")),
        ],
    );
    let tier = |t: &str| vec![kv("node_agent.queue.tier", t.to_string())];
    let load = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
    b.sum(
        "node_agent.queue.batches",
        "{batch}",
        "Batches waiting for delivery, by tier (memory, disk spool)",
        false,
        [
            (load(&export.memory_batches), start_nanos, tier("memory")),
            (load(&export.disk_batches), start_nanos, tier("disk")),
        ],
    );
    b.sum(
        "node_agent.queue.bytes",
        "By",
        "Bytes waiting for delivery, by tier (memory, disk spool)",
        false,
        [
            (load(&export.memory_bytes), start_nanos, tier("memory")),
            (load(&export.disk_bytes), start_nanos, tier("disk")),
        ],
    );
    if let Some((rss, user, system)) = health.process_usage() {
        b.sum(
            "process.memory.usage",
            "By",
            "Resident memory of the agent",
            false,
            [(rss, start_nanos, vec![])],
        );
        b.sum(
            "process.cpu.time",
            "s",
            "CPU seconds used by the agent",
            true,
            [
                (user, start_nanos, vec![kv("cpu.mode", "user")]),
                (system, start_nanos, vec![kv("cpu.mode", "system")]),
            ],
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_own_process_files() {
        assert_eq!(parse_statm_rss_pages("1000 250 30 1 0 200 0\n"), Some(250));
        let stat = "42 (a) b) c) S 1 42 42 0 -1 4194560 100 0 0 0 7 3 0 0 20 0 1 0 5 0 0\n";
        assert_eq!(parse_stat_ticks(stat), Some((7.0, 3.0)));
        assert_eq!(parse_stat_ticks("garbage"), None);
        let (rss, user, system) = Health::default().process_usage().unwrap();
        assert!(rss > 0 && user >= 0.0 && system >= 0.0);
    }
}
