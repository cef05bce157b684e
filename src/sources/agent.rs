//! The agent as a source of its own measurements: how each sampler fared (passes, errors, last
//! success) and the process's resident memory and CPU time. `otlp::metrics::agent` encodes them;
//! `/readyz`, `check` and the control plane read the same record.

use crate::sys::procfile::ProcFile;
use parking_lot::Mutex;
use std::collections::BTreeMap;
use std::time::Duration;

/// Resident memory and CPU time of the agent's process.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct ProcessUsage {
    pub(crate) rss_bytes: u64,
    pub(crate) user_seconds: f64,
    pub(crate) system_seconds: f64,
}

#[derive(Debug, Clone, Default, serde::Serialize)]
pub(crate) struct SamplerHealth {
    /// Passes since the agent started (this one included): a per-sample sequence number.
    pub(crate) passes: u64,
    pub(crate) last_duration_sec: f64,
    pub(crate) errors: u64,
    /// Unix seconds of the last pass without errors (0 = never).
    pub(crate) last_success: u64,
    pub(crate) last_error: Option<String>,
}

/// Health of every sampler, updated after each pass.
#[derive(Debug, Default)]
pub(crate) struct Health {
    samplers: Mutex<BTreeMap<&'static str, SamplerHealth>>,
    process: Mutex<ProcessFiles>,
}

impl Health {
    pub(crate) fn record(&self, sampler: &'static str, took: Duration, error: Option<String>) {
        let mut map = self.samplers.lock();
        let h = map.entry(sampler).or_default();
        h.passes += 1;
        h.last_duration_sec = took.as_secs_f64();
        match error {
            Some(e) => {
                h.errors += 1;
                h.last_error = Some(e);
            }
            None => {
                h.last_success = crate::sys::clock::now_nanos() / 1_000_000_000;
                h.last_error = None;
            }
        }
    }

    pub(crate) fn snapshot(&self) -> BTreeMap<&'static str, SamplerHealth> {
        self.samplers.lock().clone()
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
pub(crate) fn parse_statm_rss_pages(statm: &str) -> Option<u64> {
    statm.split_ascii_whitespace().nth(1)?.parse().ok()
}

/// (utime, stime) in clock ticks from `stat`. Fields after the command name, which may contain
/// spaces, start after the last ')'.
pub(crate) fn parse_stat_ticks(stat: &str) -> Option<(f64, f64)> {
    let mut f = stat.get(stat.rfind(')')? + 2..)?.split_ascii_whitespace();
    let utime = f.nth(11)?.parse().ok()?;
    let stime = f.next()?.parse().ok()?;
    Some((utime, stime))
}

impl Health {
    /// Resident memory and CPU seconds (user, system) of this process.
    pub(crate) fn process_usage(&self) -> Option<ProcessUsage> {
        let mut files = self.process.lock();
        let rss_pages = parse_statm_rss_pages(files.statm.read_str().ok()?)?;
        let (utime, stime) = parse_stat_ticks(files.stat.read_str().ok()?)?;
        // SAFETY: sysconf has no preconditions.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(4096) as u64;
        let tck = crate::sources::node::cpu::ticks_per_second();
        Some(ProcessUsage {
            rss_bytes: rss_pages * page,
            user_seconds: utime / tck,
            system_seconds: stime / tck,
        })
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
        let p = Health::default().process_usage().unwrap();
        assert!(p.rss_bytes > 0 && p.user_seconds >= 0.0 && p.system_seconds >= 0.0);
    }
}
