//! cgroup v1 files: `cpuacct.usage` (ns), `cpu.cfs_quota_us` + `cpu.cfs_period_us`,
//! `memory.usage_in_bytes` + `memory.stat`, `blkio.throttle.io_service_bytes`.
//!
//! `blkio` is parsed for completeness and for the `check` report, but it is not the disk source on
//! v1: v1 does not charge buffered writeback to the container, and on our CI kernel its counters
//! stay 0 even for O_DIRECT writes (see [`super::taskio`]).

use super::IoBytes;

/// A file holding one integer (`cpuacct.usage`, `memory.usage_in_bytes`, `cpu.cfs_quota_us`).
pub(crate) fn parse_int(text: &str) -> Option<i64> {
    text.trim().parse().ok()
}

/// CFS quota and period (µs) to cores; `None` when unlimited (quota -1) or nonsense.
pub(crate) fn cfs_limit(quota: i64, period: i64) -> Option<f64> {
    (quota > 0 && period > 0).then(|| quota as f64 / period as f64)
}

/// Sums the `Read`/`Write` rows of `blkio.throttle.io_service_bytes[_recursive]`
/// (`MAJ:MIN Op value`), skipping the final `Total N` line; the op is matched case-insensitively.
pub fn parse_blkio(text: &str) -> IoBytes {
    let mut io = IoBytes::default();
    for line in text.lines() {
        let f: Vec<&str> = line.split_ascii_whitespace().collect();
        if f.len() != 3 {
            continue;
        }
        let Ok(v) = f[2].parse::<u64>() else { continue };
        if f[1].eq_ignore_ascii_case("read") {
            io.read = io.read.saturating_add(v);
        } else if f[1].eq_ignore_ascii_case("write") {
            io.write = io.write.saturating_add(v);
        }
    }
    io
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blkio_rows() {
        let t = "8:0 Read 4096\n8:0 Write 8192\n8:0 Sync 8192\n8:0 Async 4096\n8:0 Discard 0\n8:0 Total 12288\n254:0 Write 1\nTotal 12289\n";
        assert_eq!(
            parse_blkio(t),
            IoBytes {
                read: 4096,
                write: 8193
            }
        );
        assert_eq!(parse_blkio("Total 0\n"), IoBytes::default());
    }

    #[test]
    fn cfs() {
        assert_eq!(cfs_limit(50_000, 100_000), Some(0.5));
        assert_eq!(cfs_limit(150_000, 50_000), Some(3.0));
        assert_eq!(cfs_limit(-1, 100_000), None);
        assert_eq!(parse_int("-1\n"), Some(-1));
        assert_eq!(parse_int("x"), None);
    }
}
