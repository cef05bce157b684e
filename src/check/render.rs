//! `node-agent check` as text: one block per part, sized for a terminal.

use super::{CPU_WINDOW, Report};
use std::fmt::Write;

fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    format!("{v:.1} {}", UNITS[u])
}

pub(crate) fn render_text(r: &Report) -> String {
    let mut o = String::new();
    let _ = writeln!(
        o,
        "node-agent {} check: {}",
        r.version,
        if r.healthy { "HEALTHY" } else { "UNHEALTHY" }
    );
    let _ = writeln!(o, "\nIdentity and capabilities (OTel resource)");
    for (k, v) in &r.resource {
        let _ = writeln!(o, "  {k:<28} {v}");
    }
    let n = &r.node;
    let _ = writeln!(o, "\nCPU ({} logical)", n.cpu.logical_cpus);
    if let (Some(busy), Some(iowait)) = (n.cpu.busy_pct(), n.cpu.iowait_pct()) {
        let _ = writeln!(
            o,
            "  busy {busy:.1} %   iowait {iowait:.1} %   (over {:.1} s)",
            CPU_WINDOW.as_secs_f64()
        );
    }
    let m = &n.memory;
    let _ = writeln!(
        o,
        "\nMemory\n  total {}  used {}  available {}  cached {}",
        bytes(m.total),
        bytes(m.used),
        bytes(m.available),
        bytes(m.cached)
    );
    let _ = writeln!(o, "\nFilesystems");
    for f in &n.filesystems {
        let _ = writeln!(
            o,
            "  {:<24} {:<8} {:<14} size {:>10}  used {:>10}  free {:>10}",
            f.mountpoint,
            f.fs_type,
            f.device,
            bytes(f.total),
            bytes(f.used),
            bytes(f.free)
        );
    }
    let _ = writeln!(o, "\nDisks");
    for d in &n.disks {
        let _ = writeln!(
            o,
            "  {:<12} read {:>10}  written {:>10}",
            d.device,
            bytes(d.read_bytes),
            bytes(d.write_bytes)
        );
    }
    let _ = writeln!(o, "\nNetwork");
    for i in &n.interfaces {
        let _ = writeln!(
            o,
            "  {:<12} rx {:>10}  tx {:>10}",
            i.interface,
            bytes(i.rx_bytes),
            bytes(i.tx_bytes)
        );
    }
    let _ = writeln!(o, "\nUptime {:.0} s", n.uptime_sec);
    render_gpus(&mut o, &r.gpus);
    render_containers(&mut o, &r.containers);
    if !r.game_servers.is_empty() {
        let _ = writeln!(o, "\nGame servers");
        for g in &r.game_servers {
            let players = match g.status.as_ref().map(|s| (s.online, s.max)) {
                Some((Some(on), Some(max))) => format!("{on}/{max}"),
                Some((Some(on), None)) => format!("{on}/?"),
                _ => "-".into(),
            };
            let latency = g
                .status
                .as_ref()
                .and_then(|s| s.latency)
                .map(|l| format!("{:.1} ms", l.as_secs_f64() * 1000.0))
                .unwrap_or_default();
            let _ = writeln!(
                o,
                "  {:<20} {:<18} {}:{}/{} {:<8} players {:<9} {}{}",
                g.name,
                g.protocol.name(),
                g.address,
                g.port,
                g.protocol.transport(),
                g.state.name(),
                players,
                latency,
                g.error
                    .as_deref()
                    .map(|e| format!("  ({e})"))
                    .unwrap_or_default()
            );
        }
    }
    if let Some(l) = &r.logs {
        super::logs::render(&mut o, l);
    }
    let _ = writeln!(o, "\nSources");
    for s in &r.sources {
        let _ = writeln!(
            o,
            "  [{}] {:<12} {}",
            if s.ok { " ok " } else { "FAIL" },
            s.name,
            s.detail
        );
    }
    render_endpoint(&mut o, &r.endpoint);
    o
}

/// The export destination: a failure only for a configured collector that does not answer.
fn render_endpoint(o: &mut String, e: &super::EndpointStatus) {
    use super::EndpointState as S;
    let err = e.error.as_deref().unwrap_or("");
    let _ = writeln!(o, "\nExport");
    let _ = match e.state {
        S::Answers => writeln!(
            o,
            "  [ ok ] the collector at {} ({}) accepted an empty export request",
            e.url, e.protocol
        ),
        S::Down => writeln!(
            o,
            "  [FAIL] the collector at {} ({}) does not answer: {err}\n         \
             check that it runs and that OTEL_EXPORTER_OTLP_ENDPOINT points at it",
            e.url, e.protocol
        ),
        S::NotConfigured => writeln!(
            o,
            "  [note] no collector configured, and nothing answers at the OpenTelemetry default {} \
             ({err}).\n         `node-agent run` keeps samples in its spool until one does; set \
             OTEL_EXPORTER_OTLP_ENDPOINT to send to your collector",
            e.url
        ),
        S::Console => writeln!(
            o,
            "  [note] console exporter (OTEL_METRICS_EXPORTER=console): samples are printed to \
             stdout; nothing is sent"
        ),
        S::Off => writeln!(
            o,
            "  [note] export is off (OTEL_METRICS_EXPORTER=none): samples are only served locally"
        ),
    };
}

fn render_gpus(o: &mut String, gpus: &[crate::sources::gpu::Gpu]) {
    let _ = writeln!(o, "\nGPUs ({})", gpus.len());
    for g in gpus {
        let i = &g.info;
        let _ = writeln!(
            o,
            "  {:<8} {}  memory {}  driver {} {}",
            i.name,
            if i.model.starts_with(&i.vendor) {
                i.model.clone()
            } else {
                format!("{} {}", i.vendor, i.model)
            },
            i.memory_total.map(bytes).unwrap_or_else(|| "?".into()),
            i.driver,
            i.driver_version.as_deref().unwrap_or("?")
        );
        let _ = writeln!(
            o,
            "           id {}  bus {}  via {}",
            i.id,
            i.bus_id.as_deref().unwrap_or("?"),
            i.source
        );
        let r = &g.reading;
        let opt = |v: Option<f64>, unit: &str| {
            v.map(|v| format!("{v:.1} {unit}"))
                .unwrap_or_else(|| "—".into())
        };
        let _ = writeln!(
            o,
            "           busy {}  memory used {}  temperature {}  power {}",
            opt(r.utilization.map(|u| u * 100.0), "%"),
            r.memory_used.map(bytes).unwrap_or_else(|| "—".into()),
            opt(r.temperature_c, "°C"),
            opt(r.power_w, "W"),
        );
    }
}

fn opt(v: Option<f64>, f: impl Fn(f64) -> String) -> String {
    v.map(f).unwrap_or_else(|| "-".into())
}

/// Every container and server with its numbers.
fn render_containers(o: &mut String, s: &crate::sources::containers::sampler::ContainersSample) {
    let counts: Vec<String> = s
        .counts
        .iter()
        .filter(|(_, n)| *n > 0)
        .map(|(k, n)| format!("{n} {k}"))
        .collect();
    let _ = writeln!(o, "\nContainers ({})", counts.join(", "));
    if let Some(note) = s.descriptors.note() {
        let _ = writeln!(o, "  NOTE: {note}");
    }
    for c in &s.containers {
        let i = s.info(c);
        let server = match (&i.server_uuid, &i.server_name) {
            (Some(u), Some(n)) => format!("  server {n} ({u})"),
            (Some(u), None) => format!("  server {u}"),
            _ => String::new(),
        };
        let _ = writeln!(
            o,
            "  {} {:<38} {:<10} image {}{}",
            &i.id[..i.id.len().min(12)],
            i.name,
            i.state,
            i.image,
            server
        );
        let (rr, wr) = c.io_rate.unzip();
        let _ = writeln!(
            o,
            "      cpu {} ({} %)  limit {}  cpu time {}  throttled {}  memory {}",
            opt(c.cpu_usage, |v| format!("{v:.3} cores")),
            opt(c.cpu_usage, |v| format!("{:.1}", v * 100.0)),
            opt(c.cpu_limit, |v| format!("{v:.2} cores")),
            opt(c.cpu_seconds, |v| format!("{v:.1} s")),
            opt(c.throttled_seconds, |v| format!("{v:.1} s")),
            c.memory_bytes.map(bytes).unwrap_or_else(|| "-".into()),
        );
        let _ = writeln!(
            o,
            "      disk read {} ({}/s)  written {} ({}/s)  source {}{}",
            c.io.map(|i| bytes(i.read)).unwrap_or_else(|| "-".into()),
            opt(rr, |v| bytes(v as u64)),
            c.io.map(|i| bytes(i.write)).unwrap_or_else(|| "-".into()),
            opt(wr, |v| bytes(v as u64)),
            c.io_source.unwrap_or("none"),
            c.processes
                .map(|n| format!(" over {n} processes"))
                .unwrap_or_default(),
        );
        let pressure = crate::sources::containers::sampler::ContainersSample::pressure(c);
        if !pressure.is_empty() {
            let p: Vec<String> = pressure
                .iter()
                .map(|(r, p)| format!("{r} {:.2} %", p.some_avg10))
                .collect();
            let _ = writeln!(o, "      pressure (some, avg10) {}", p.join("  "));
        }
        if let Some(cg) = &s.cgroup(c) {
            let _ = writeln!(o, "      cgroup {cg}");
        }
        if let Some(p) = &c.problem {
            let _ = writeln!(o, "      PROBLEM: {p}");
        }
    }
    if !s.inventory.servers.is_empty() {
        let _ = writeln!(o, "\nGame servers (Wings)");
        for sv in &s.inventory.servers {
            let _ = writeln!(
                o,
                "  {} {:<24} {:<9}{} cpu limit {}  Wings cpu_absolute {}  container {}",
                sv.uuid,
                sv.name,
                sv.state,
                if sv.suspended { " suspended" } else { "" },
                if sv.limits.cpu_limit_pct > 0 {
                    format!("{} %", sv.limits.cpu_limit_pct)
                } else {
                    "none".into()
                },
                opt(sv.cpu_absolute, |v| format!("{v:.1} %")),
                sv.container_id
                    .as_deref()
                    .map(|i| &i[..i.len().min(12)])
                    .unwrap_or("-"),
            );
        }
    }
}
