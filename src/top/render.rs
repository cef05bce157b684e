//! One screen of `node-agent top` as plain lines, cut to the terminal's width and height. ASCII
//! only, so that it reads the same over any SSH client and locale; 80 columns is the narrowest
//! layout, wider terminals get the container ID and the CPU limit in cores as well.

use super::model::{NodeView, Players, Row, SortKey};

/// Everything one screen shows.
pub(crate) struct Screen<'a> {
    pub(crate) host: &'a str,
    /// The wall-clock time of the sample, `HH:MM:SS`.
    pub(crate) clock: &'a str,
    pub(crate) node: &'a NodeView,
    /// Sorted already.
    pub(crate) rows: &'a [Row],
    pub(crate) sort: SortKey,
    pub(crate) descending: bool,
    /// The first row shown (scrolling).
    pub(crate) offset: usize,
    /// Short notes about the sources (Docker or Wings not found, a failing probe pass).
    pub(crate) notes: &'a [String],
}

/// A rendered screen: its lines, and which of them is the table header (drawn highlighted).
pub(crate) struct Frame {
    pub(crate) lines: Vec<String>,
    pub(crate) header: Option<usize>,
    /// The offset actually used (clamped to the rows there are).
    pub(crate) offset: usize,
}

/// `1.5K`, `12M`, `3.1G`: powers of 1024, at most 5 characters.
pub(crate) fn size(n: f64) -> String {
    const UNITS: [&str; 6] = ["B", "K", "M", "G", "T", "P"];
    let mut v = n.max(0.0);
    let mut u = 0;
    while v >= 1000.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{v:.0}B")
    } else if v < 10.0 {
        format!("{v:.1}{}", UNITS[u])
    } else {
        format!("{v:.0}{}", UNITS[u])
    }
}

fn uptime(secs: f64) -> String {
    let s = secs as u64;
    let (d, h, m) = (s / 86_400, s % 86_400 / 3600, s % 3600 / 60);
    if d > 0 {
        format!("{d}d {h}h")
    } else if h > 0 {
        format!("{h}h {m}m")
    } else {
        format!("{m}m")
    }
}

/// Cuts a line to `width` characters.
fn fit(s: &str, width: usize) -> String {
    s.chars().take(width).collect()
}

/// `label` then items, wrapped over at most `max_lines` lines of `width`.
fn wrapped(label: &str, items: &[String], width: usize, max_lines: usize) -> Vec<String> {
    let mut lines = vec![format!("{label:<6}")];
    for (i, item) in items.iter().enumerate() {
        let cur = lines.last_mut().expect("one line at least");
        let sep = if cur.trim_end().len() > label.len() {
            "   "
        } else {
            ""
        };
        if cur.len() + sep.len() + item.len() <= width || cur.trim_end() == label {
            cur.push_str(sep);
            cur.push_str(item);
        } else if lines.len() < max_lines {
            lines.push(format!("{:<6}{item}", ""));
        } else {
            let more = format!(" +{}", items.len() - i);
            let cur = lines.last_mut().expect("one line at least");
            if cur.len() + more.len() <= width {
                cur.push_str(&more);
            }
            break;
        }
    }
    lines.into_iter().map(|l| fit(&l, width)).collect()
}

fn bar(pct: f64, cells: usize) -> String {
    let full = ((pct / 100.0) * cells as f64)
        .round()
        .clamp(0.0, cells as f64) as usize;
    format!("[{}{}]", "#".repeat(full), ".".repeat(cells - full))
}

fn node_lines(s: &Screen<'_>, width: usize) -> Vec<String> {
    let n = s.node;
    let mut out = Vec::new();
    let head = format!(
        "node-agent top - {} - {} up {} - {} rows",
        s.host,
        s.clock,
        uptime(n.uptime_sec),
        s.rows.len()
    );
    out.push(fit(&head, width));
    let cpu = match (n.busy_pct, n.iowait_pct) {
        (Some(b), Some(w)) => {
            let text = format!(
                "CPU   {b:5.1}% busy  {w:5.1}% iowait  {} cpus",
                n.logical_cpus
            );
            // Two spaces and the brackets around the bar.
            let room = width.saturating_sub(text.len() + 4);
            if room >= 10 {
                format!("{text}  {}", bar(b, room.min(40)))
            } else {
                text
            }
        }
        _ => format!("CPU   measuring...  {} cpus", n.logical_cpus),
    };
    out.push(fit(&cpu, width));
    let pct = if n.mem_total > 0 {
        100.0 * n.mem_used as f64 / n.mem_total as f64
    } else {
        0.0
    };
    out.push(fit(
        &format!(
            "Mem   {} used of {} ({pct:.0}%)  {} available",
            size(n.mem_used as f64),
            size(n.mem_total as f64),
            size(n.mem_available as f64)
        ),
        width,
    ));
    let disks: Vec<String> = n
        .disks
        .iter()
        .map(|(d, r, w)| format!("{d} r {}/s w {}/s", size(*r), size(*w)))
        .collect();
    if !disks.is_empty() {
        out.extend(wrapped("Disk", &disks, width, 2));
    }
    let fs: Vec<String> = n
        .filesystems
        .iter()
        .map(|(m, used, total)| {
            let p = if *total > 0 {
                100.0 * *used as f64 / *total as f64
            } else {
                0.0
            };
            format!("{m} {p:.0}% of {}", size(*total as f64))
        })
        .collect();
    if !fs.is_empty() {
        out.extend(wrapped("FS", &fs, width, 2));
    }
    for note in s.notes {
        out.push(fit(note, width));
    }
    out
}

fn players(p: &Players) -> String {
    match p {
        Players::Unknown => "-".into(),
        Players::State(s) => (*s).into(),
        Players::Counts(n, Some(m)) => format!("{n}/{m}"),
        Players::Counts(n, None) => format!("{n}/?"),
    }
}

fn opt(v: Option<String>) -> String {
    v.unwrap_or_else(|| "-".into())
}

/// The table: fixed columns on the right, the name takes what is left.
fn table_line(r: Option<&Row>, width: usize) -> String {
    let wide = width >= 120;
    let fixed = 9 + 7 + 5 + 7 + 8 + 9 + 6 + if wide { 7 + 13 } else { 0 };
    let name_w = width.saturating_sub(fixed).max(8);
    let cols: Vec<String> = match r {
        None => {
            let mut v = vec![
                format!("{:<name_w$}", "NAME"),
                format!("{:<9}", "STATUS"),
                format!("{:>7}", "CPU"),
                format!("{:>5}", "%LIM"),
            ];
            if wide {
                v.push(format!("{:>6}", "LIMIT"));
            }
            v.extend([
                format!("{:>7}", "MEM"),
                format!("{:>8}", "WRITE/s"),
                format!("{:>9}", "PLAYERS"),
            ]);
            if wide {
                v.push(format!("{:<12}", "ID"));
            }
            v
        }
        Some(r) => {
            let name = if r.name.chars().count() > name_w {
                let cut: String = r.name.chars().take(name_w.saturating_sub(1)).collect();
                format!("{cut}~")
            } else {
                r.name.clone()
            };
            let mut v = vec![
                format!("{name:<name_w$}"),
                format!("{:<9}", fit(&r.status, 9)),
                format!("{:>7}", opt(r.cpu.map(|c| format!("{c:.2}")))),
                format!("{:>5}", opt(r.cpu_limit_pct().map(|p| format!("{p:.0}%")))),
            ];
            if wide {
                v.push(format!(
                    "{:>6}",
                    opt(r.cpu_limit.map(|l| format!("{l:.2}")))
                ));
            }
            v.extend([
                format!("{:>7}", opt(r.memory.map(|m| size(m as f64)))),
                format!("{:>8}", opt(r.disk_write.map(size))),
                format!("{:>9}", fit(&players(&r.players), 9)),
            ]);
            if wide {
                v.push(format!("{:<12}", r.id));
            }
            v
        }
    };
    fit(cols.join(" ").trim_end(), width)
}

fn footer(s: &Screen<'_>, width: usize) -> String {
    let keys: Vec<String> = SortKey::KEYS
        .iter()
        .map(|(k, _, l)| format!("{k} {l}"))
        .collect();
    let text = format!(
        "q quit | sort: {} {} | {} | up/down scroll",
        s.sort.label(),
        if s.descending { "desc" } else { "asc" },
        keys.join(" ")
    );
    fit(&text, width)
}

/// Lays out one screen.
pub(crate) fn frame(s: &Screen<'_>, width: usize, height: usize) -> Frame {
    let width = width.max(20);
    let mut lines = node_lines(s, width);
    // Leave room for the header, at least a few rows and the footer on a short terminal.
    lines.truncate(height.saturating_sub(4).max(1));
    lines.push(String::new());
    let header = lines.len();
    lines.push(table_line(None, width));
    let room = height.saturating_sub(lines.len() + 1);
    let offset = s.offset.min(s.rows.len().saturating_sub(room));
    if s.rows.is_empty() {
        lines.push(fit("  no containers or game servers found", width));
    }
    for r in s.rows.iter().skip(offset).take(room) {
        lines.push(table_line(Some(r), width));
    }
    while lines.len() + 1 < height {
        lines.push(String::new());
    }
    lines.push(footer(s, width));
    lines.truncate(height.max(1));
    Frame {
        lines,
        header: (header < height).then_some(header),
        offset,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(name: &str) -> Row {
        Row {
            name: name.into(),
            status: "running".into(),
            cpu: Some(1.234),
            cpu_limit: Some(2.0),
            memory: Some(3 << 30),
            disk_write: Some(1_500_000.0),
            players: Players::Counts(12, Some(20)),
            id: "0123456789ab".into(),
        }
    }

    #[test]
    fn sizes_are_short() {
        assert_eq!(size(512.0), "512B");
        assert_eq!(size(1536.0), "1.5K");
        assert_eq!(size(3.0 * 1024.0 * 1024.0 * 1024.0), "3.0G");
        assert_eq!(size(999_999.0), "977K");
        assert!(size(1e18).len() <= 5);
    }

    #[test]
    fn fits_80_columns_and_the_height() {
        let node = NodeView {
            logical_cpus: 8,
            busy_pct: Some(23.44),
            iowait_pct: Some(1.2),
            mem_total: 16 << 30,
            mem_used: 5 << 30,
            mem_available: 10 << 30,
            disks: (0..9).map(|i| (format!("nvme{i}n1"), 1e6, 2e6)).collect(),
            filesystems: vec![("/".into(), 45 << 30, 100 << 30)],
            uptime_sec: 3.0 * 86_400.0 + 4.0 * 3600.0,
        };
        let rows: Vec<Row> = (0..60)
            .map(|i| row(&format!("a very long game server name number {i}")))
            .collect();
        for (w, h) in [(80, 24), (160, 45), (40, 10)] {
            let f = frame(
                &Screen {
                    host: "node-1",
                    clock: "12:00:00",
                    node: &node,
                    rows: &rows,
                    sort: SortKey::Cpu,
                    descending: true,
                    offset: 1000,
                    notes: &[],
                },
                w,
                h,
            );
            assert_eq!(f.lines.len(), h);
            assert!(f.lines.iter().all(|l| l.chars().count() <= w), "{w}x{h}");
            assert!(f.lines[1].contains("23.4% busy"), "{:?}", f.lines[1]);
            assert_eq!(f.offset, 60 - (h - f.header.unwrap() - 2));
        }
        let f = frame(
            &Screen {
                host: "node-1",
                clock: "12:00:00",
                node: &node,
                rows: &rows[..1],
                sort: SortKey::Cpu,
                descending: true,
                offset: 0,
                notes: &[],
            },
            80,
            24,
        );
        let h = f.header.unwrap();
        let line = &f.lines[h + 1];
        assert!(line.contains("1.23") && line.contains("62%") && line.contains("12/20"));
        assert!(line.contains("3.0G") && line.contains("1.4M"), "{line}");
        assert!(f.lines[h].contains("PLAYERS"));
        assert!(f.lines[1].ends_with(']'), "the bar fits: {:?}", f.lines[1]);
        assert!(
            f.lines[23].starts_with("q quit | sort: cpu desc"),
            "{:?}",
            f.lines[23]
        );
    }
}
