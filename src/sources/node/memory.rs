//! Memory from `/proc/meminfo`: `system.memory.usage`, `.limit`, `.utilization`,
//! `system.memory.linux.available`.
//!
//! States follow the collector's hostmetrics receiver so the numbers match what operators know:
//! `cached` = Cached + SReclaimable, `used` = Total − Free − Buffers − cached. used, free, buffers
//! and cached add up to MemTotal exactly (cached is cut in the rare case the kernel's counters
//! overshoot the total, so the sum still holds); `shared` (Shmem) is part of `cached` (tmpfs
//! pages live in the page cache), so it is no state of its own: it goes out as
//! `system.memory.shared`.

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
    let (mut cached, mut sreclaimable) = (0, 0);
    // The seven keys read are in the first half of the file's 50-odd lines: stop once each has
    // been seen (a bit each, so a repeated key cannot end the walk early).
    let mut seen = 0u8;
    const TOTAL: u8 = 0;
    const AVAILABLE: u8 = 2;
    for line in text.lines() {
        let Some((key, rest)) = line.split_once(':') else {
            continue;
        };
        let (bit, slot) = match key {
            "MemTotal" => (TOTAL, &mut m.total),
            "MemFree" => (1, &mut m.free),
            "MemAvailable" => (AVAILABLE, &mut m.available),
            "Buffers" => (3, &mut m.buffers),
            "Cached" => (4, &mut cached),
            "SReclaimable" => (5, &mut sreclaimable),
            "Shmem" => (6, &mut m.shared),
            _ => continue,
        };
        let kb: u64 = rest
            .split_ascii_whitespace()
            .next()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        *slot = kb.saturating_mul(1024);
        seen |= 1 << bit;
        if seen == 0x7f {
            break;
        }
    }
    if seen & (1 << TOTAL) == 0 || m.total == 0 {
        return None;
    }
    m.free = m.free.min(m.total);
    m.buffers = m.buffers.min(m.total - m.free);
    m.cached = cached
        .saturating_add(sreclaimable)
        .min(m.total - m.free - m.buffers);
    m.used = m.total - m.free - m.buffers - m.cached;
    if seen & (1 << AVAILABLE) == 0 {
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
        // Counters that overshoot the total still add up to it.
        let m = parse_meminfo("MemTotal: 100 kB\nMemFree: 60 kB\nBuffers: 10 kB\nCached: 40 kB\n")
            .unwrap();
        assert_eq!((m.used, m.cached), (0, 30 * 1024));
        assert_eq!(m.used + m.free + m.buffers + m.cached, m.total);
        assert!(parse_meminfo("MemTotal: x kB").is_none());
        // A repeated key does not end the walk before the other keys are seen.
        let t = "MemTotal: 1000 kB\nMemTotal: 1000 kB\nMemTotal: 1000 kB\nMemFree: 1 kB\nBuffers: 1 kB\nCached: 1 kB\nShmem: 1 kB\nSReclaimable: 1 kB\nMemAvailable: 900 kB\n";
        assert_eq!(parse_meminfo(t).unwrap().available, 900 * 1024);
    }
}
