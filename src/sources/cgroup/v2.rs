//! cgroup v2 files: `cpu.stat`, `cpu.max`, `io.stat`, `memory.current` + `memory.stat`.
//!
//! `cpu.stat` is a core file on v2 (present even without the `cpu` controller) with
//! `usage_usec`; `throttled_usec` only appears with the controller. `cpu.max` is
//! `"<quota|max> <period>"`: the period is read, never assumed to be 100000. `io.stat` has one
//! line per device that saw I/O (`MAJ:MIN rbytes=… wbytes=… …`), charged to the cgroup including
//! page-cache writeback, so it sees buffered writes (a world save) as well as direct ones.

use super::{CpuStat, IoBytes};

/// `cpu.stat` of v2 (µs keys) and v1 (`throttled_time` in ns) alike, in one pass
/// ([`uint_fields`]).
pub(crate) fn parse_cpu_stat(text: &str) -> CpuStat {
    let [
        usage_us,
        throttled_us,
        throttled_ns,
        nr_throttled,
        nr_periods,
    ] = uint_fields(
        text,
        [
            "usage_usec",
            "throttled_usec",
            "throttled_time",
            "nr_throttled",
            "nr_periods",
        ],
        b' ',
    );
    CpuStat {
        usage_ns: usage_us.map(|v| v.saturating_mul(1000)),
        throttled_ns: throttled_us
            .map(|v| v.saturating_mul(1000))
            .or(throttled_ns),
        nr_throttled,
        nr_periods,
    }
}

/// `cpu.max`: the limit in cores, `None` when unlimited (`max`) or unreadable.
pub(crate) fn parse_cpu_max(text: &str) -> Option<f64> {
    let mut it = text.split_ascii_whitespace();
    let quota = it.next()?;
    let period: f64 = it.next().and_then(|p| p.parse().ok()).unwrap_or(100_000.0);
    if quota == "max" || period <= 0.0 {
        return None;
    }
    let q: f64 = quota.parse().ok()?;
    (q > 0.0).then(|| q / period)
}

/// Sums `rbytes`/`wbytes` over the devices of `io.stat`.
pub(crate) fn parse_io_stat(text: &str) -> IoBytes {
    let mut io = IoBytes::default();
    for line in text.lines() {
        for field in line.split_ascii_whitespace().skip(1) {
            let Some((k, v)) = field.split_once('=') else {
                continue;
            };
            let Ok(v) = v.parse::<u64>() else { continue };
            match k {
                "rbytes" => io.read = io.read.saturating_add(v),
                "wbytes" => io.write = io.write.saturating_add(v),
                _ => {}
            }
        }
    }
    io
}

/// One `key value` field of `memory.stat` (v2 `inactive_file`, v1 `total_inactive_file`).
pub(crate) fn stat_field(text: &str, key: &str) -> Option<u64> {
    uint_field(text, key, b' ')
}

/// The unsigned number after `key` and `sep` at the start of a line (`key value` files such as
/// `memory.stat`, `key: value` files such as `/proc/<pid>/io`); see [`uint_fields`].
pub(crate) fn uint_field(text: &str, key: &str, sep: u8) -> Option<u64> {
    let [v] = uint_fields(text, [key], sep);
    v
}

/// The unsigned numbers after each of `keys` and `sep` at the start of a line, in one pass over
/// the lines that stops when every key is found; a key's first line counts (`None` when it has
/// no digits or overflows). A walk from line start to line start with a byte compare, not a
/// substring search per key: building `str::find`'s searcher for every key of every file was
/// 30 % of a cycle's user instructions at 1000 containers (callgrind, docs/benchmarks.md).
pub(crate) fn uint_fields<const N: usize>(
    text: &str,
    keys: [&str; N],
    sep: u8,
) -> [Option<u64>; N] {
    let mut out = [None; N];
    let mut found = [false; N];
    let mut left = N;
    let b = text.as_bytes();
    let mut start = 0;
    while left > 0 && start < b.len() {
        let end = memchr::memchr(b'\n', &b[start..]).map_or(b.len(), |i| start + i);
        let line = &b[start..end];
        for ((k, slot), f) in keys.iter().zip(out.iter_mut()).zip(found.iter_mut()) {
            let k = k.as_bytes();
            if !*f && line.len() > k.len() && line[k.len()] == sep && line.starts_with(k) {
                *f = true;
                left -= 1;
                *slot = leading_uint(&line[k.len() + 1..]);
            }
        }
        start = end + 1;
    }
    out
}

/// The unsigned number at the start of `rest` after blanks; `None` without digits or on overflow.
fn leading_uint(rest: &[u8]) -> Option<u64> {
    let mut v: u64 = 0;
    let mut any = false;
    for c in rest
        .iter()
        .skip_while(|c| **c == b' ' || **c == b'\t')
        .take_while(|c| c.is_ascii_digit())
    {
        v = v.checked_mul(10)?.checked_add(u64::from(c - b'0'))?;
        any = true;
    }
    any.then_some(v)
}

/// Docker CLI semantics: usage minus inactive file cache (what Wings shows as `memory_bytes`).
pub(crate) fn memory_usage(usage: u64, inactive_file: Option<u64>) -> u64 {
    match inactive_file {
        Some(i) if i < usage => usage - i,
        _ => usage,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_stat_v2_and_v1() {
        let v2 = "usage_usec 2823889\nuser_usec 2793431\nsystem_usec 30458\nnr_periods 10\nnr_throttled 4\nthrottled_usec 1500\n";
        let s = parse_cpu_stat(v2);
        assert_eq!(s.usage_ns, Some(2_823_889_000));
        assert_eq!(s.throttled_ns, Some(1_500_000));
        assert_eq!(s.nr_throttled, Some(4));
        let v1 = "nr_periods 31\nnr_throttled 28\nthrottled_time 1417563063\n";
        let s = parse_cpu_stat(v1);
        assert_eq!((s.usage_ns, s.throttled_ns), (None, Some(1_417_563_063)));
        assert_eq!(
            parse_cpu_stat("garbage\nusage_usec x\n"),
            CpuStat::default()
        );
    }

    #[test]
    fn cpu_max_reads_the_period() {
        assert_eq!(parse_cpu_max("200000 100000\n"), Some(2.0));
        assert_eq!(parse_cpu_max("25000 50000\n"), Some(0.5));
        assert_eq!(parse_cpu_max("max 100000\n"), None);
        assert_eq!(parse_cpu_max(""), None);
        assert_eq!(parse_cpu_max("1 0"), None);
    }

    #[test]
    fn io_stat_sums_devices() {
        let t = "254:0 rbytes=1024 wbytes=4096 rios=1 wios=2 dbytes=0 dios=0\n8:0 rbytes=1 wbytes=10 rios=1 wios=1 dbytes=0 dios=0\n";
        assert_eq!(
            parse_io_stat(t),
            IoBytes {
                read: 1025,
                write: 4106
            }
        );
        assert_eq!(parse_io_stat("junk wbytes=x\n"), IoBytes::default());
    }

    #[test]
    fn fields_found_at_line_starts_only() {
        let t = "total_inactive_file 5\ninactive_file 7\nx_inactive_file 9\n";
        assert_eq!(stat_field(t, "inactive_file"), Some(7));
        assert_eq!(stat_field(t, "total_inactive_file"), Some(5));
        assert_eq!(stat_field("inactive_file x\n", "inactive_file"), None);
        assert_eq!(
            stat_field("inactive_file 99999999999999999999999\n", "inactive_file"),
            None
        );
        assert_eq!(
            uint_field("rchar: 1\nread_bytes:\t42\n", "read_bytes", b':'),
            Some(42)
        );
        assert_eq!(uint_field("", "read_bytes", b':'), None);
    }

    /// The one-pass walk agrees with the plain reading of the rule (first line that starts with
    /// the key and the separator) on generated texts: keys at the start, inside and at the end
    /// of lines, prefixes of other keys, empty lines, no final newline, overflow.
    #[test]
    fn one_pass_fields_agree_with_the_rule() {
        fn reference(text: &str, key: &str, sep: u8) -> Option<u64> {
            let line = text.split('\n').find(|l| {
                l.len() > key.len() && l.starts_with(key) && l.as_bytes()[key.len()] == sep
            })?;
            leading_uint(&line.as_bytes()[key.len() + 1..])
        }
        let words = [
            "read_bytes",
            "write_bytes",
            "cancelled_write_bytes",
            "x",
            "",
            ":",
            " ",
            "\t",
            "\n",
            "12",
            "007",
            "99999999999999999999999",
            "18446744073709551615",
            "read_bytes:",
            "write_bytes: 5",
        ];
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..20_000 {
            let mut text = String::new();
            for _ in 0..(seed % 12) {
                seed = seed
                    .wrapping_mul(6_364_136_223_846_793_005)
                    .wrapping_add(1_442_695_040_888_963_407);
                text.push_str(words[(seed >> 33) as usize % words.len()]);
            }
            let keys = ["read_bytes", "write_bytes", "cancelled_write_bytes"];
            let got = uint_fields(&text, keys, b':');
            for (k, g) in keys.iter().zip(got) {
                assert_eq!(g, reference(&text, k, b':'), "{k} in {text:?}");
            }
        }
    }

    #[test]
    fn memory_like_docker_cli() {
        let stat = "anon 100\nfile 900\ninactive_file 300\n";
        assert_eq!(memory_usage(1000, stat_field(stat, "inactive_file")), 700);
        assert_eq!(memory_usage(100, Some(300)), 100);
        assert_eq!(stat_field(stat, "missing"), None);
    }
}
