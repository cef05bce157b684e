//! CPU time per mode from `/proc/stat`: `system.cpu.time`, `system.cpu.utilization`,
//! `system.cpu.logical.count`.
//!
//! Utilization is Δ(mode ticks) / Δ(all ticks) between two samples, so the modes add up to 1 and
//! `node_cpu_pct = 100·(1 − idle − iowait)` of the original agent falls out directly. `guest` and
//! `guest_nice` are already included in `user` and `nice` by the kernel and are not added again;
//! `irq` and `softirq` are reported together as the semantic conventions' `interrupt`.

/// Modes in the order they are reported.
pub(crate) const MODES: [&str; 7] = [
    "user",
    "nice",
    "system",
    "idle",
    "iowait",
    "interrupt",
    "steal",
];

/// Cumulative ticks per mode (indexes as [`MODES`]).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct CpuTicks(pub [u64; 7]);

/// What one parse of `/proc/stat` yields.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct ProcStat {
    pub(crate) ticks: CpuTicks,
    pub(crate) logical_cpus: u32,
    /// Boot time, Unix seconds.
    pub(crate) boot_time: u64,
}

/// Parses `/proc/stat`. Missing trailing fields (old kernels) count as 0.
pub(crate) fn parse_proc_stat(text: &str) -> Option<ProcStat> {
    let mut out = ProcStat::default();
    let mut saw_total = false;
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("cpu ") {
            let f: Vec<u64> = rest
                .split_ascii_whitespace()
                .map(|x| x.parse().unwrap_or(0))
                .collect();
            let g = |i: usize| f.get(i).copied().unwrap_or(0);
            // user nice system idle iowait irq softirq steal guest guest_nice
            out.ticks = CpuTicks([g(0), g(1), g(2), g(3), g(4), g(5) + g(6), g(7)]);
            saw_total = f.len() >= 4;
        } else if line.starts_with("cpu") {
            if line.as_bytes().get(3).is_some_and(u8::is_ascii_digit) {
                out.logical_cpus += 1;
            }
        } else if let Some(rest) = line.strip_prefix("btime ") {
            out.boot_time = rest.trim().parse().unwrap_or(0);
        }
    }
    saw_total.then_some(out)
}

/// Clock ticks per second (`CLK_TCK`).
pub(crate) fn ticks_per_second() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 { t as f64 } else { 100.0 }
}

/// One CPU sample: cumulative times and, from the second sample on, utilization.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub(crate) struct CpuSample {
    /// Seconds per mode since boot.
    pub(crate) seconds: [f64; 7],
    /// Share of all CPU time per mode since the previous sample (sums to 1).
    pub(crate) utilization: Option<[f64; 7]>,
    pub(crate) logical_cpus: u32,
}

impl CpuSample {
    /// `node_cpu_pct` of the original agent: 100·(1 − idle − iowait).
    pub(crate) fn busy_pct(&self) -> Option<f64> {
        self.utilization.map(|u| 100.0 * (1.0 - u[3] - u[4]))
    }

    pub(crate) fn iowait_pct(&self) -> Option<f64> {
        self.utilization.map(|u| 100.0 * u[4])
    }
}

/// Turns consecutive readings into samples.
#[derive(Debug, Default)]
pub(crate) struct CpuState {
    prev: Option<CpuTicks>,
}

impl CpuState {
    pub(crate) fn sample(&mut self, stat: &ProcStat, tck: f64) -> CpuSample {
        let cur = stat.ticks;
        let utilization = self.prev.and_then(|prev| utilization(&prev, &cur));
        self.prev = Some(cur);
        let mut seconds = [0.0; 7];
        for (s, t) in seconds.iter_mut().zip(cur.0) {
            *s = t as f64 / tck;
        }
        CpuSample {
            seconds,
            utilization,
            logical_cpus: stat.logical_cpus,
        }
    }
}

/// Δmode / Δtotal; `None` when no time passed or a counter went backwards (CPU hot-unplug can
/// make the aggregate line drop).
pub(crate) fn utilization(prev: &CpuTicks, cur: &CpuTicks) -> Option<[f64; 7]> {
    let mut delta = [0u64; 7];
    for ((d, c), p) in delta.iter_mut().zip(cur.0).zip(prev.0) {
        *d = c.checked_sub(p)?;
    }
    let total: u64 = delta.iter().sum();
    if total == 0 {
        return None;
    }
    let out = delta.map(|d| d as f64 / total as f64);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const STAT: &str = "cpu  100 5 50 800 40 3 2 0 7 0\ncpu0 50 2 25 400 20 1 1 0 0 0\ncpu1 50 3 25 400 20 2 1 0 0 0\nintr 1\nbtime 1700000000\n";

    #[test]
    fn parses_modes_and_counts() {
        let s = parse_proc_stat(STAT).unwrap();
        assert_eq!(s.ticks.0, [100, 5, 50, 800, 40, 5, 0]);
        assert_eq!(s.logical_cpus, 2);
        assert_eq!(s.boot_time, 1_700_000_000);
    }

    #[test]
    fn utilization_sums_to_one_and_matches_deltas() {
        let a = CpuTicks([100, 0, 50, 800, 40, 10, 0]);
        let b = CpuTicks([150, 0, 75, 850, 90, 20, 15]);
        let u = utilization(&a, &b).unwrap();
        assert!((u.iter().sum::<f64>() - 1.0).abs() < 1e-12);
        assert!((u[4] - 50.0 / 200.0).abs() < 1e-12);
        assert!(utilization(&a, &a).is_none());
        assert!(utilization(&b, &a).is_none());
    }

    #[test]
    fn garbage_is_rejected_not_panicking() {
        assert!(parse_proc_stat("").is_none());
        assert!(parse_proc_stat("cpu x y").is_none());
        assert!(parse_proc_stat("cpu  1 2 3 4").is_some());
    }
}
