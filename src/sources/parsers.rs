//! The agent's parsers of the node-level files read every cycle, public for the benchmark helper
//! only (`node-agent-bench parsers`, built with `--features bench`), which times them against
//! `procfs-core`'s on the same text. Each returns a few of the values it read, so that the helper
//! can check that both parsers agree before it compares their cost.

/// `/proc/stat`: user ticks of the `cpu` line, and the boot time.
pub fn proc_stat(text: &str) -> Option<(u64, u64)> {
    super::node::cpu::parse_proc_stat(text).map(|s| (s.ticks.0[0], s.boot_time))
}

/// `/proc/meminfo`: `MemTotal` and `MemAvailable`, bytes.
pub fn meminfo(text: &str) -> Option<(u64, u64)> {
    super::node::memory::parse_meminfo(text).map(|m| (m.total, m.available))
}

/// `/proc/uptime`: seconds.
pub fn uptime(text: &str) -> Option<f64> {
    super::node::uptime::parse_uptime(text)
}

/// `/proc/diskstats`, every device kept: how many, and their sectors read summed (as bytes).
pub fn diskstats(text: &str) -> (usize, u64) {
    let d = super::node::disk::parse_diskstats(text, |_| true);
    (d.len(), d.iter().map(|d| d.read_bytes).sum())
}

/// `/proc/net/dev`: interfaces (without `lo` and `veth*`, as the agent reports them) and their
/// received bytes summed.
pub fn net_dev(text: &str) -> (usize, u64) {
    let i = super::node::network::parse_net_dev(text);
    (i.len(), i.iter().map(|i| i.rx_bytes).sum())
}

/// `/proc/self/stat`: user and system time, clock ticks.
pub fn self_stat(text: &str) -> Option<(f64, f64)> {
    super::agent::parse_stat_ticks(text)
}

/// `/proc/self/statm`: resident pages.
pub fn self_statm(text: &str) -> Option<u64> {
    super::agent::parse_statm_rss_pages(text)
}
