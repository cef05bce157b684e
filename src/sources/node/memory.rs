//! Memory from `/proc/meminfo`: `system.memory.usage`, `.limit`, `.utilization`,
//! `system.memory.linux.available`.
//!
//! States follow the collector's hostmetrics receiver so the numbers match what operators know:
//! `cached` = Cached + SReclaimable, `used` = Total − Free − Buffers − cached. used, free, buffers
//! and cached add up to the total; `shared` (Shmem) overlaps `cached` and is reported alone.

#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub(crate) struct MemorySample {
    pub(crate) total: u64,
    pub(crate) free: u64,
    pub(crate) buffers: u64,
    pub(crate) cached: u64,
    pub(crate) shared: u64,
    pub(crate) used: u64,
    pub(crate) available: u64,
}

/// Parses `/proc/meminfo` (values in kB). `None` without MemTotal.
pub(crate) fn parse_meminfo(text: &str) -> Option<MemorySample> {
    let mut m = MemorySample::default();
    let (mut cached, mut sreclaimable, mut have_total, mut have_avail) = (0, 0, false, false);
    for line in text.lines() {
        let Some((key, rest)) = line.split_once(':') else {
            continue;
        };
        let kb: u64 = rest
            .split_ascii_whitespace()
            .next()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let bytes = kb.saturating_mul(1024);
        match key {
            "MemTotal" => {
                m.total = bytes;
                have_total = true;
            }
            "MemFree" => m.free = bytes,
            "MemAvailable" => {
                m.available = bytes;
                have_avail = true;
            }
            "Buffers" => m.buffers = bytes,
            "Cached" => cached = bytes,
            "SReclaimable" => sreclaimable = bytes,
            "Shmem" => m.shared = bytes,
            _ => {}
        }
    }
    if !have_total || m.total == 0 {
        return None;
    }
    m.cached = cached.saturating_add(sreclaimable);
    m.used = m
        .total
        .saturating_sub(m.free)
        .saturating_sub(m.buffers)
        .saturating_sub(m.cached);
    if !have_avail {
        m.available = m.free.saturating_add(m.cached).saturating_add(m.buffers);
    }
    Some(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_add_up_to_total() {
        let t = "MemTotal: 1000 kB\nMemFree: 200 kB\nMemAvailable: 600 kB\nBuffers: 50 kB\nCached: 300 kB\nShmem: 10 kB\nSReclaimable: 20 kB\n";
        let m = parse_meminfo(t).unwrap();
        assert_eq!(m.used + m.free + m.buffers + m.cached, m.total);
        assert_eq!(m.cached, 320 * 1024);
        assert_eq!(m.available, 600 * 1024);
        assert!(parse_meminfo("garbage").is_none());
        assert!(parse_meminfo("MemTotal: x kB").is_none());
    }
}
