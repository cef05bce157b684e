//! Node samples as OTLP metrics: CPU, memory, filesystems, disks, network, uptime.
//!
//! Every node counter starts at boot; each metric follows the semantic conventions (v1.44) and
//! the names, units and attributes of the Collector's hostmetrics receiver.

use crate::otlp::builder::{MetricsBuilder, kv};
use crate::sources::node::NodeSample;
use crate::sources::node::cpu::{CpuSample, MODES};
use crate::sources::node::disk::DiskSample;
use crate::sources::node::filesystem::FsSample;
use crate::sources::node::memory::MemorySample;
use crate::sources::node::network::InterfaceSample;

/// Every node metric of one sample.
pub(crate) fn node(s: &NodeSample, b: &mut MetricsBuilder) {
    let boot = s.boot_time.saturating_mul(1_000_000_000);
    cpu(&s.cpu, boot, b);
    memory(&s.memory, boot, b);
    filesystems(&s.filesystems, boot, b);
    disks(&s.disks, boot, b);
    network(&s.interfaces, boot, b);
    uptime(s.uptime_sec, b);
}

fn cpu(s: &CpuSample, boot_nanos: u64, b: &mut MetricsBuilder) {
    b.sum(
        "system.cpu.time",
        "s",
        "Seconds each logical CPU spent in each mode, summed over CPUs",
        true,
        MODES
            .iter()
            .zip(s.seconds)
            .map(|(m, v)| (v, boot_nanos, vec![kv("cpu.mode", *m)])),
    );
    if let Some(u) = s.utilization {
        b.gauge(
            "system.cpu.utilization",
            "1",
            "Share of CPU time per mode since the previous sample, over all CPUs",
            MODES
                .iter()
                .zip(u)
                .map(|(m, v)| (v, vec![kv("cpu.mode", *m)])),
        );
    }
    b.sum(
        "system.cpu.logical.count",
        "{cpu}",
        "Logical CPUs online",
        false,
        [(s.logical_cpus as i64, boot_nanos, vec![])],
    );
}

fn memory(m: &MemorySample, boot_nanos: u64, b: &mut MetricsBuilder) {
    // These four add up to MemTotal exactly. Shmem overlaps `cached` (tmpfs pages are page
    // cache), so it is not a state here: semconv deprecated `state=shared` for its own metric.
    let states = [
        ("used", m.used),
        ("free", m.free),
        ("buffers", m.buffers),
        ("cached", m.cached),
    ];
    b.sum(
        "system.memory.usage",
        "By",
        "Memory in each state; the states add up to the total",
        false,
        states
            .iter()
            .map(|(s, v)| (*v, boot_nanos, vec![kv("system.memory.state", *s)])),
    );
    b.sum(
        "system.memory.limit",
        "By",
        "Total memory",
        false,
        [(m.total, boot_nanos, vec![])],
    );
    b.gauge(
        "system.memory.utilization",
        "1",
        "Share of total memory in each state",
        states.iter().map(|(s, v)| {
            (
                *v as f64 / m.total as f64,
                vec![kv("system.memory.state", *s)],
            )
        }),
    );
    b.sum(
        "system.memory.shared",
        "By",
        "Shmem: shared memory (tmpfs, shared anonymous mappings), part of cached",
        false,
        [(m.shared, boot_nanos, vec![])],
    );
    b.sum(
        "system.memory.linux.available",
        "By",
        "MemAvailable: memory available for new work without swapping",
        false,
        [(m.available, boot_nanos, vec![])],
    );
}

fn disks(disks: &[DiskSample], boot_nanos: u64, b: &mut MetricsBuilder) {
    let points = |f: fn(&DiskSample) -> (u64, u64)| {
        disks
            .iter()
            .flat_map(move |d| {
                let (r, w) = f(d);
                [
                    (
                        r,
                        boot_nanos,
                        vec![
                            kv("system.device", d.device.clone()),
                            kv("disk.io.direction", "read"),
                        ],
                    ),
                    (
                        w,
                        boot_nanos,
                        vec![
                            kv("system.device", d.device.clone()),
                            kv("disk.io.direction", "write"),
                        ],
                    ),
                ]
            })
            .collect::<Vec<_>>()
    };
    b.sum(
        "system.disk.io",
        "By",
        "Bytes read from and written to each disk",
        true,
        points(|d| (d.read_bytes, d.write_bytes)),
    );
    b.sum(
        "system.disk.operations",
        "{operation}",
        "Completed reads and writes per disk",
        true,
        points(|d| (d.reads, d.writes)),
    );
}

fn network(ifs: &[InterfaceSample], boot_nanos: u64, b: &mut MetricsBuilder) {
    let points = |f: fn(&InterfaceSample) -> (u64, u64)| {
        ifs.iter()
            .flat_map(move |i| {
                let (rx, tx) = f(i);
                [
                    (
                        rx,
                        boot_nanos,
                        vec![
                            kv("network.interface.name", i.interface.clone()),
                            kv("network.io.direction", "receive"),
                        ],
                    ),
                    (
                        tx,
                        boot_nanos,
                        vec![
                            kv("network.interface.name", i.interface.clone()),
                            kv("network.io.direction", "transmit"),
                        ],
                    ),
                ]
            })
            .collect::<Vec<_>>()
    };
    b.sum(
        "system.network.io",
        "By",
        "Bytes received and transmitted per interface",
        true,
        points(|i| (i.rx_bytes, i.tx_bytes)),
    );
    b.sum(
        "system.network.errors",
        "{error}",
        "Receive and transmit errors per interface",
        true,
        points(|i| (i.rx_errors, i.tx_errors)),
    );
    b.sum(
        "system.network.packet.dropped",
        "{packet}",
        "Dropped packets per interface",
        true,
        points(|i| (i.rx_dropped, i.tx_dropped)),
    );
}

fn uptime(uptime: f64, b: &mut MetricsBuilder) {
    b.gauge(
        "system.uptime",
        "s",
        "Seconds since the node booted",
        [(uptime, vec![])],
    );
}

fn filesystems(fs: &[FsSample], boot_nanos: u64, b: &mut MetricsBuilder) {
    let attrs = |f: &FsSample| {
        vec![
            kv("system.device", f.device.clone()),
            kv("system.filesystem.mountpoint", f.mountpoint.clone()),
            kv("system.filesystem.type", f.fs_type.clone()),
            kv("system.filesystem.mode", f.mode),
        ]
    };
    let with_state = |f: &FsSample, state: &str| {
        let mut a = attrs(f);
        a.push(kv("system.filesystem.state", state));
        a
    };
    b.sum(
        "system.filesystem.usage",
        "By",
        "Filesystem space used, free (for unprivileged users) and reserved (for root)",
        false,
        fs.iter().flat_map(|f| {
            [
                (f.used, boot_nanos, with_state(f, "used")),
                (f.free, boot_nanos, with_state(f, "free")),
                (f.reserved, boot_nanos, with_state(f, "reserved")),
            ]
        }),
    );
    b.sum(
        "system.filesystem.limit",
        "By",
        "Filesystem size",
        false,
        fs.iter().map(|f| (f.total, boot_nanos, attrs(f))),
    );
    // Like df and the Collector's hostmetrics: used / (used + available to unprivileged users),
    // so a filesystem that is full for everyone but root reads 1.0, not 0.95. One point per
    // filesystem, without a state.
    b.gauge(
        "system.filesystem.utilization",
        "1",
        "Share of the filesystem in use, of what unprivileged users can use: used / (used + free), like df",
        fs.iter()
            .filter_map(|f| f.utilization().map(|u| (u, attrs(f)))),
    );
}
