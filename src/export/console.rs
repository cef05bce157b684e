//! The console exporter (`OTEL_METRICS_EXPORTER=console`): each sample printed to stdout as it
//! is exported, for a person trying the agent or checking what it measures (logs stay on stderr).
//!
//! By default a readable listing: one block per sample, a header line with the sample's time,
//! one line per resource, and one line per point with the metric, its attributes and the value in
//! its unit (`1.53 GiB`, `12.5 %`, `8 cpu`). No line is longer than [`LINE_MAX`] characters, and
//! text that came from a peer (a container name, a server's MOTD) is escaped like every peer's text
//! the agent shows. Log records (the logs lane) are listed one per line: time, severity, body and
//! attributes. `console_format = otlp-json` prints one OTLP/JSON request per line instead (an
//! `ExportMetricsServiceRequest` or an `ExportLogsServiceRequest`), for `jq` and other tools.

use super::config::ConsoleFormat;
use super::json;
use super::{Accepted, SendError, Signal};
use crate::sys::text::peer_text;
use bytes::Bytes;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::metrics::v1::{metric::Data, number_data_point};
use parking_lot::Mutex;
use prost::Message;
use std::fmt::Write as _;
use std::io::Write as _;

/// The longest line the readable listing prints, in characters.
pub(crate) const LINE_MAX: usize = 1000;
/// The longest attribute value shown, in characters.
const VALUE_MAX: usize = 120;

pub struct Console {
    format: ConsoleFormat,
    buf: Mutex<String>,
}

impl Console {
    pub(crate) fn new(format: ConsoleFormat) -> Self {
        Console {
            format,
            buf: Mutex::new(String::new()),
        }
    }

    pub(crate) fn send(&self, signal: Signal, payload: Bytes) -> Result<Accepted, SendError> {
        let invalid = |e: prost::DecodeError| SendError::Invalid {
            reason: format!("invalid batch: {e}"),
        };
        let mut buf = self.buf.lock();
        match signal {
            Signal::Metrics => {
                let req = ExportMetricsServiceRequest::decode(payload).map_err(invalid)?;
                match self.format {
                    ConsoleFormat::Text => render_text(&req, &mut buf),
                    ConsoleFormat::OtlpJson => {
                        json::write_request(&req, &mut buf);
                        buf.push('\n');
                    }
                }
            }
            Signal::Logs => {
                let req = ExportLogsServiceRequest::decode(payload).map_err(invalid)?;
                match self.format {
                    ConsoleFormat::Text => render_logs(&req, &mut buf),
                    ConsoleFormat::OtlpJson => {
                        json::write_logs_request(&req, &mut buf);
                        buf.push('\n');
                    }
                }
            }
        }
        let mut out = std::io::stdout().lock();
        // A closed stdout (`| head`) is not a delivery failure worth retrying.
        let _ = out.write_all(buf.as_bytes()).and_then(|_| out.flush());
        Ok(Accepted::default())
    }
}

/// One block for the request: a header, then per resource one line of its attributes and one line
/// per point.
pub(crate) fn render_text(req: &ExportMetricsServiceRequest, out: &mut String) {
    out.clear();
    let mut points = 0usize;
    let mut time = 0u64;
    for m in req
        .resource_metrics
        .iter()
        .flat_map(|r| &r.scope_metrics)
        .flat_map(|s| &s.metrics)
    {
        let (n, t) = match &m.data {
            Some(Data::Gauge(g)) => (
                g.data_points.len(),
                g.data_points.iter().map(|p| p.time_unix_nano).max(),
            ),
            Some(Data::Sum(s)) => (
                s.data_points.len(),
                s.data_points.iter().map(|p| p.time_unix_nano).max(),
            ),
            Some(Data::Histogram(h)) => (
                h.data_points.len(),
                h.data_points.iter().map(|p| p.time_unix_nano).max(),
            ),
            Some(Data::ExponentialHistogram(h)) => (
                h.data_points.len(),
                h.data_points.iter().map(|p| p.time_unix_nano).max(),
            ),
            Some(Data::Summary(s)) => (
                s.data_points.len(),
                s.data_points.iter().map(|p| p.time_unix_nano).max(),
            ),
            None => (0, None),
        };
        points += n;
        time = time.max(t.unwrap_or(0));
    }
    let _ = writeln!(out, "── sample at {} ── {points} points ──", utc_time(time));
    for rm in &req.resource_metrics {
        if let Some(r) = &rm.resource {
            let mut line = String::from("resource ");
            attrs(&mut line, &r.attributes);
            push_line(out, &line);
        }
        for m in rm.scope_metrics.iter().flat_map(|s| &s.metrics) {
            let mut each = |attributes: &[KeyValue], value: String| {
                let mut line = String::new();
                let _ = write!(line, "  {:<36} ", m.name);
                let start = line.len();
                attrs(&mut line, attributes);
                let width = line[start..].chars().count();
                for _ in width..40 {
                    line.push(' ');
                }
                line.push(' ');
                line.push_str(&value);
                push_line(out, &line);
            };
            match &m.data {
                Some(Data::Gauge(g)) => {
                    for p in &g.data_points {
                        each(&p.attributes, number(p.value, &m.unit, &m.name));
                    }
                }
                Some(Data::Sum(s)) => {
                    for p in &s.data_points {
                        each(&p.attributes, number(p.value, &m.unit, &m.name));
                    }
                }
                Some(Data::Histogram(h)) => {
                    for p in &h.data_points {
                        let sum = p.sum.map(|s| with_unit(s, &m.unit, &m.name));
                        each(&p.attributes, distribution(p.count, sum));
                    }
                }
                Some(Data::ExponentialHistogram(h)) => {
                    for p in &h.data_points {
                        let sum = p.sum.map(|s| with_unit(s, &m.unit, &m.name));
                        each(&p.attributes, distribution(p.count, sum));
                    }
                }
                Some(Data::Summary(s)) => {
                    for p in &s.data_points {
                        let sum = Some(with_unit(p.sum, &m.unit, &m.name));
                        each(&p.attributes, distribution(p.count, sum));
                    }
                }
                None => {}
            }
        }
    }
    // A blank line between samples.
    out.push('\n');
}

/// The log records of a request: per resource one line of its attributes, then one line per
/// record: time, severity, body, attributes.
pub(crate) fn render_logs(req: &ExportLogsServiceRequest, out: &mut String) {
    out.clear();
    for rl in &req.resource_logs {
        if let Some(r) = &rl.resource {
            let mut line = String::from("resource ");
            attrs(&mut line, &r.attributes);
            push_line(out, &line);
        }
        for l in rl.scope_logs.iter().flat_map(|s| &s.log_records) {
            let time = match l.time_unix_nano {
                0 => l.observed_time_unix_nano,
                t => t,
            };
            let mut line = format!("  {} ", utc_time(time));
            match l.severity_text.as_str() {
                "" => line.push('-'),
                s => line.push_str(&peer_text(s, 20)),
            }
            line.push(' ');
            any(&mut line, l.body.as_ref());
            if !l.attributes.is_empty() {
                line.push_str("  ");
                attrs(&mut line, &l.attributes);
            }
            push_line(out, &line);
        }
    }
}

/// Appends `line` cut to [`LINE_MAX`] characters, and a newline.
fn push_line(out: &mut String, line: &str) {
    let line = line.trim_end();
    match line.char_indices().nth(LINE_MAX - 1) {
        Some((cut, _)) => {
            out.push_str(&line[..cut]);
            out.push('…');
        }
        None => out.push_str(line),
    }
    out.push('\n');
}

/// `k=v k2=v2`, values escaped and capped.
fn attrs(line: &mut String, kvs: &[KeyValue]) {
    for (i, kv) in kvs.iter().enumerate() {
        if i > 0 {
            line.push(' ');
        }
        line.push_str(&peer_text(&kv.key, VALUE_MAX));
        line.push('=');
        any(line, kv.value.as_ref());
        if line.len() > LINE_MAX * 4 {
            break;
        }
    }
}

fn any(line: &mut String, v: Option<&AnyValue>) {
    use any_value::Value;
    match v.and_then(|v| v.value.as_ref()) {
        None => {}
        Some(Value::StringValue(s)) => {
            let s = peer_text(s, VALUE_MAX);
            if s.is_empty() || s.contains([' ', '=', '"']) {
                let _ = write!(line, "\"{}\"", s.replace('"', "\\\""));
            } else {
                line.push_str(&s);
            }
        }
        Some(Value::BoolValue(b)) => {
            let _ = write!(line, "{b}");
        }
        Some(Value::IntValue(i)) => {
            let _ = write!(line, "{i}");
        }
        Some(Value::DoubleValue(d)) => line.push_str(&plain(*d)),
        Some(Value::ArrayValue(a)) => {
            line.push('[');
            for (i, v) in a.values.iter().enumerate() {
                if i > 0 {
                    line.push(',');
                }
                any(line, Some(v));
            }
            line.push(']');
        }
        Some(Value::KvlistValue(l)) => {
            line.push('{');
            attrs(line, &l.values);
            line.push('}');
        }
        Some(Value::BytesValue(b)) => {
            let _ = write!(line, "<{} bytes>", b.len());
        }
        Some(Value::StringValueStrindex(i)) => {
            let _ = write!(line, "<string #{i}>");
        }
    }
}

fn number(v: Option<number_data_point::Value>, unit: &str, name: &str) -> String {
    match v {
        Some(number_data_point::Value::AsDouble(d)) => with_unit(d, unit, name),
        Some(number_data_point::Value::AsInt(i)) => with_unit(i as f64, unit, name),
        None => "(no value)".into(),
    }
}

fn distribution(count: u64, sum: Option<String>) -> String {
    match sum {
        Some(s) => format!("count {count}, sum {s}"),
        None => format!("count {count}"),
    }
}

/// A value in its unit, the way a person reads it.
fn with_unit(v: f64, unit: &str, name: &str) -> String {
    match unit {
        "By" => bytes(v),
        "By/s" => format!("{}/s", bytes(v)),
        "1" if name.ends_with(".utilization") => format!("{} %", plain(v * 100.0)),
        "1" | "" => plain(v),
        "Cel" => format!("{} °C", plain(v)),
        u if u.starts_with('{') && u.ends_with('}') => {
            format!("{} {}", plain(v), &u[1..u.len() - 1])
        }
        u => format!("{} {}", plain(v), peer_text(u, 20)),
    }
}

fn bytes(v: f64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut x = v;
    let mut i = 0;
    while x.abs() >= 1024.0 && i < UNITS.len() - 1 {
        x /= 1024.0;
        i += 1;
    }
    if i == 0 {
        format!("{} B", plain(v))
    } else {
        format!("{x:.2} {}", UNITS[i])
    }
}

/// A number without noise: integers whole, others with four significant digits at least.
fn plain(v: f64) -> String {
    if !v.is_finite() {
        return format!("{v}");
    }
    if v.fract() == 0.0 && v.abs() < 1e15 {
        return format!("{v:.0}");
    }
    let decimals = decimals(v);
    let s = format!("{v:.decimals$}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    s.to_string()
}

/// Decimals for four significant digits, between 2 and 9: `3 − ⌊log₁₀ |v|⌋`, counted by
/// comparison. `log10` was the agent's only use of libm; without it the library is not loaded at
/// all (about 300 KB of resident pages: docs/benchmarks.md, "Memory").
fn decimals(v: f64) -> usize {
    let a = v.abs();
    if a == 0.0 {
        return 3;
    }
    2 + [10.0, 1.0, 0.1, 0.01, 1e-3, 1e-4, 1e-5]
        .iter()
        .filter(|&&t| a < t)
        .count()
}

/// `2026-11-30 12:00:00.123 UTC` from Unix nanoseconds.
fn utc_time(nanos: u64) -> String {
    let secs = nanos / 1_000_000_000;
    let millis = (nanos % 1_000_000_000) / 1_000_000;
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (year, month, day) = crate::sys::clock::civil_from_days(days as i64);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}.{millis:03} UTC",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::metrics::v1::{
        Gauge, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum,
    };
    use opentelemetry_proto::tonic::resource::v1::Resource;

    fn kv(k: &str, v: &str) -> KeyValue {
        KeyValue {
            key: k.into(),
            value: Some(AnyValue {
                value: Some(any_value::Value::StringValue(v.into())),
            }),
            ..Default::default()
        }
    }

    fn point(attrs: Vec<KeyValue>, v: f64) -> NumberDataPoint {
        NumberDataPoint {
            attributes: attrs,
            time_unix_nano: 1_764_504_000_123_000_000,
            value: Some(number_data_point::Value::AsDouble(v)),
            ..Default::default()
        }
    }

    #[test]
    fn log_records_one_line_each_escaped() {
        use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
        let req = ExportLogsServiceRequest {
            resource_logs: vec![ResourceLogs {
                resource: Some(Resource {
                    attributes: vec![kv("container.name", "mc-1")],
                    ..Default::default()
                }),
                scope_logs: vec![ScopeLogs {
                    log_records: vec![
                        LogRecord {
                            time_unix_nano: 1_764_504_000_123_000_000,
                            severity_text: "INFO".into(),
                            body: Some(AnyValue {
                                value: Some(any_value::Value::StringValue(
                                    "joined\n\u{1b}[2Jforged".into(),
                                )),
                            }),
                            attributes: vec![kv("log.iostream", "stdout")],
                            ..Default::default()
                        },
                        LogRecord {
                            observed_time_unix_nano: 1_764_504_001_000_000_000,
                            ..Default::default()
                        },
                    ],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        };
        let mut out = String::new();
        render_logs(&req, &mut out);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 3, "{out}");
        assert_eq!(lines[0], "resource container.name=mc-1");
        assert_eq!(
            lines[1],
            "  2025-11-30 12:00:00.123 UTC INFO joined\\n\\u{1b}[2Jforged  log.iostream=stdout"
        );
        assert_eq!(lines[2], "  2025-11-30 12:00:01.000 UTC -");
    }

    #[test]
    fn one_line_per_point_with_units() {
        let req = ExportMetricsServiceRequest {
            resource_metrics: vec![ResourceMetrics {
                resource: Some(Resource {
                    attributes: vec![kv("host.name", "node-1")],
                    ..Default::default()
                }),
                scope_metrics: vec![ScopeMetrics {
                    metrics: vec![
                        Metric {
                            name: "system.memory.usage".into(),
                            unit: "By".into(),
                            data: Some(Data::Sum(Sum {
                                data_points: vec![point(
                                    vec![kv("system.memory.state", "used")],
                                    1_642_000_000.0,
                                )],
                                ..Default::default()
                            })),
                            ..Default::default()
                        },
                        Metric {
                            name: "system.cpu.utilization".into(),
                            unit: "1".into(),
                            data: Some(Data::Gauge(Gauge {
                                data_points: vec![point(vec![], 0.125)],
                            })),
                            ..Default::default()
                        },
                        Metric {
                            name: "container.name.test".into(),
                            unit: "{player}".into(),
                            data: Some(Data::Gauge(Gauge {
                                data_points: vec![point(
                                    vec![kv("motd", &format!("a\nb {}", "x".repeat(5000)))],
                                    3.0,
                                )],
                            })),
                            ..Default::default()
                        },
                    ],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        };
        let mut out = String::new();
        render_text(&req, &mut out);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(
            lines[0],
            "── sample at 2025-11-30 12:00:00.123 UTC ── 3 points ──"
        );
        assert_eq!(lines[1], "resource host.name=node-1");
        assert!(
            lines[2].starts_with("  system.memory.usage "),
            "{}",
            lines[2]
        );
        assert!(
            lines[2].ends_with("system.memory.state=used                 1.53 GiB"),
            "{}",
            lines[2]
        );
        assert!(lines[3].ends_with(" 12.5 %"), "{}", lines[3]);
        assert!(lines[4].contains("motd=\"a\\nb xxx"), "{}", lines[4]);
        assert!(lines[4].ends_with(" 3 player"), "{}", lines[4]);
        assert_eq!(lines.len(), 6);
        assert_eq!(lines[5], "");
        assert!(lines.iter().all(|l| l.chars().count() <= LINE_MAX));
    }

    #[test]
    fn numbers_read_well() {
        assert_eq!(plain(12345.678), "12345.68");
        assert_eq!(plain(0.000123456), "0.0001235");
        assert_eq!(plain(8.0), "8");
        assert_eq!(plain(0.5), "0.5");
        assert_eq!(bytes(512.0), "512 B");
        assert_eq!(bytes(1536.0), "1.50 KiB");
        assert_eq!(utc_time(0), "1970-01-01 00:00:00.000 UTC");
        assert_eq!(
            utc_time(951_782_400_000_000_000),
            "2000-02-29 00:00:00.000 UTC"
        );
    }

    /// The comparisons give what `3 − ⌊log₁₀ |v|⌋` clamped to 2..=9 gives, away from the exact
    /// powers of ten where `log10` itself rounds.
    #[test]
    fn decimals_match_the_logarithm() {
        let mut rng = fastrand::Rng::with_seed(15);
        for _ in 0..200_000 {
            let v = (rng.f64() * 2.0 - 1.0) * 10f64.powi(rng.i32(-12..12));
            let l = v.abs().log10();
            if v == 0.0 || (l - l.round()).abs() < 1e-9 {
                continue;
            }
            let want = (3 - l.floor() as i32).clamp(2, 9) as usize;
            assert_eq!(decimals(v), want, "{v}");
        }
        assert_eq!(decimals(0.0), 3);
        assert_eq!(decimals(1.0), 3);
        assert_eq!(decimals(10.0), 2);
        assert_eq!(decimals(0.1), 4);
        assert_eq!(decimals(-0.05), 5);
    }
}
