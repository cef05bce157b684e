//! Block-device I/O from `/proc/diskstats`: `system.disk.io`, `system.disk.operations`.
//!
//! Only whole disks are reported (a name that has an entry in `/sys/block`): partitions would
//! count the same bytes twice, and loop/ram devices are not disks.

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub(crate) struct DiskSample {
    pub(crate) device: String,
    pub(crate) read_bytes: u64,
    pub(crate) write_bytes: u64,
    pub(crate) reads: u64,
    pub(crate) writes: u64,
}

/// Parses `/proc/diskstats`; `keep(name)` decides which devices are reported.
pub(crate) fn parse_diskstats(text: &str, mut keep: impl FnMut(&str) -> bool) -> Vec<DiskSample> {
    let mut out = Vec::new();
    for line in text.lines() {
        // `major minor name` and then the counters; the fields are walked, not collected (a
        // vector per line was 4 allocations of a parse that needs none).
        let mut f = line.split_ascii_whitespace();
        let Some(name) = f.nth(2) else {
            continue;
        };
        // Fields 3 to 9: reads, merged, sectors read, ms, writes, merged, sectors written.
        let mut n = [""; 7];
        let mut got = 0;
        for (slot, v) in n.iter_mut().zip(&mut f) {
            *slot = v;
            got += 1;
        }
        if got < n.len() || !keep(name) {
            continue;
        }
        let n = |i: usize| n[i - 3].parse::<u64>().unwrap_or(0);
        // Sectors in diskstats are always 512 bytes, whatever the device's sector size.
        out.push(DiskSample {
            device: name.to_string(),
            reads: n(3),
            read_bytes: n(5).saturating_mul(512),
            writes: n(7),
            write_bytes: n(9).saturating_mul(512),
        });
    }
    out
}

/// Devices that are never disks, whatever sysfs says.
pub(crate) fn is_virtual_device(name: &str) -> bool {
    ["loop", "ram", "zram", "fd", "nbd"]
        .iter()
        .any(|p| name.starts_with(p))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_bytes_from_sectors() {
        let t = "   8       0 sda 100 0 2000 10 50 0 4000 20 0 30 30\n   8       1 sda1 1 0 8 0 0 0 0 0 0 0 0\n short line\n";
        let d = parse_diskstats(t, |n| n == "sda");
        assert_eq!(d.len(), 1);
        assert_eq!(
            (d[0].read_bytes, d[0].write_bytes, d[0].reads, d[0].writes),
            (1_024_000, 2_048_000, 100, 50)
        );
        assert!(is_virtual_device("loop3") && !is_virtual_device("vda"));
        // Ten fields are enough (old kernels), nine are not.
        let d = parse_diskstats("8 16 sdb 1 2 3 4 5 6 7\n8 32 sdc 1 2 3 4 5 6\n", |_| true);
        assert_eq!(d.len(), 1);
        assert_eq!(
            (d[0].device.as_str(), d[0].read_bytes, d[0].write_bytes),
            ("sdb", 1536, 3584)
        );
    }
}
