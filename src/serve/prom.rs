//! `/metrics`: the Prometheus text format, rendered from the very OTLP requests the agent exports.
//!
//! Why render from OTLP rather than from the samples: dashboards must work the same whether they
//! read the Collector's `prometheus` exporter or this endpoint, so the names here are produced by
//! the same translation (`UnderscoreEscapingWithSuffixes`, docs/metrics.md#prometheus-names): dots to
//! underscores, unit suffixes (`s` → `_seconds`, `By` → `_bytes`, `X/Y` → `_X_per_Y`, `{curly}`
//! units add nothing), `_total` on monotonic cumulative sums, `_ratio` on gauges of unit `1`, a
//! non-monotonic sum is a gauge. `service.name`/`service.namespace` become `job`,
//! `service.instance.id` becomes `instance`, and every other resource attribute goes on
//! `target_info`, except for the one resource per container: its attributes (`container.id`,
//! `container.name`, …) become labels of its own points and it adds no `target_info`, exactly as
//! the `transform/container_labels` processor of the Collector configs does
//! (collector-config/README.md). Points carry `otel_scope_name`/`otel_scope_version` like the
//! Collector's.

use crate::otlp::attr_str;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::metrics::v1::{NumberDataPoint, metric, number_data_point};
use std::collections::BTreeMap;
use std::fmt::Write;

/// Prometheus type of an OTLP metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Gauge,
    Counter,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Gauge => "gauge",
            Kind::Counter => "counter",
        }
    }
}

fn unit_word(u: &str) -> Option<&str> {
    Some(match u {
        "d" => "days",
        "h" => "hours",
        "min" => "minutes",
        "s" => "seconds",
        "ms" => "milliseconds",
        "us" => "microseconds",
        "ns" => "nanoseconds",
        "By" => "bytes",
        "KiBy" => "kibibytes",
        "MiBy" => "mebibytes",
        "GiBy" => "gibibytes",
        "TiBy" => "tibibytes",
        "KBy" => "kilobytes",
        "MBy" => "megabytes",
        "GBy" => "gigabytes",
        "TBy" => "terabytes",
        "m" => "meters",
        "V" => "volts",
        "A" => "amperes",
        "J" => "joules",
        "W" => "watts",
        "g" => "grams",
        "Cel" => "celsius",
        "Hz" => "hertz",
        "%" => "percent",
        "1" => return None,
        other => other,
    })
}

fn per_unit_word(u: &str) -> &str {
    match u {
        "s" => "second",
        "m" => "minute",
        "h" => "hour",
        "d" => "day",
        "w" => "week",
        "mo" => "month",
        "y" => "year",
        other => other,
    }
}

/// Splits on everything that is not `[A-Za-z0-9]`, dropping empty pieces (so `_` runs collapse).
fn tokens(s: &str) -> Vec<String> {
    s.split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|t| !t.is_empty())
        .map(str::to_string)
        .collect()
}

/// The Prometheus metric name the Collector gives an OTLP metric.
pub(crate) fn metric_name(name: &str, unit: &str, kind: Kind) -> String {
    let mut t = tokens(name);
    let mut parts = unit.splitn(2, '/');
    let main = parts.next().unwrap_or("").trim();
    let per = parts.next().unwrap_or("").trim();
    if !main.is_empty()
        && !main.contains(['{', '}'])
        && let Some(w) = unit_word(main)
    {
        for wt in tokens(w) {
            if !t.contains(&wt) {
                t.push(wt);
            }
        }
    }
    if !per.is_empty() && !per.contains(['{', '}']) {
        let w = per_unit_word(per);
        let wt = tokens(w).join("_");
        if !wt.is_empty() && !t.contains(&wt) {
            t.push("per".into());
            t.push(wt);
        }
    }
    if kind == Kind::Counter {
        t.retain(|x| x != "total");
        t.push("total".into());
    }
    if unit == "1" && kind == Kind::Gauge {
        t.retain(|x| x != "ratio");
        t.push("ratio".into());
    }
    let mut out = t.join("_");
    if out.starts_with(|c: char| c.is_ascii_digit()) {
        out.insert(0, '_');
    }
    out
}

/// The Prometheus label name of an OTLP attribute key.
pub(crate) fn label_name(key: &str) -> String {
    let mut out = String::with_capacity(key.len());
    for c in key.chars() {
        let c = if c.is_ascii_alphanumeric() { c } else { '_' };
        if c == '_' && out.ends_with('_') {
            continue;
        }
        out.push(c);
    }
    if out.starts_with(|c: char| c.is_ascii_digit()) {
        out.insert_str(0, "key_");
    }
    out
}

fn escape_value(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn escape_help(v: &str) -> String {
    v.replace('\\', "\\\\").replace('\n', "\\n")
}

fn format_value(p: &NumberDataPoint) -> Option<String> {
    Some(match p.value? {
        number_data_point::Value::AsInt(i) => i.to_string(),
        number_data_point::Value::AsDouble(d) if d.is_nan() => "NaN".into(),
        number_data_point::Value::AsDouble(d) if d.is_infinite() => {
            if d > 0.0 { "+Inf" } else { "-Inf" }.into()
        }
        number_data_point::Value::AsDouble(d) => format!("{d}"),
    })
}

type Labels = BTreeMap<String, String>;

/// Adds attributes as labels; keys that collide after translation are joined with `;`.
fn add_labels(labels: &mut Labels, attrs: &[KeyValue]) {
    for a in attrs {
        let v = a.value.as_ref().map(attr_str).unwrap_or_default();
        labels
            .entry(label_name(&a.key))
            .and_modify(|old| {
                old.push(';');
                old.push_str(&v);
            })
            .or_insert(v);
    }
}

fn write_labels(out: &mut String, labels: &Labels) {
    if labels.is_empty() {
        return;
    }
    out.push('{');
    for (i, (k, v)) in labels.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        let _ = write!(out, "{k}=\"{}\"", escape_value(v));
    }
    out.push('}');
}

struct Family {
    kind: Kind,
    help: String,
    samples: Vec<(Labels, String)>,
}

/// Renders the requests (one per sampler) as one Prometheus text exposition.
pub(crate) fn render<'a>(
    requests: impl IntoIterator<Item = &'a ExportMetricsServiceRequest>,
) -> String {
    let mut families: BTreeMap<String, Family> = BTreeMap::new();
    let mut targets: BTreeMap<(String, String), Labels> = BTreeMap::new();
    for req in requests {
        for rm in &req.resource_metrics {
            let attrs = rm
                .resource
                .as_ref()
                .map(|r| r.attributes.as_slice())
                .unwrap_or(&[]);
            let get = |k: &str| {
                attrs
                    .iter()
                    .find(|a| a.key == k)
                    .and_then(|a| a.value.as_ref())
                    .map(attr_str)
            };
            let job = match (get("service.namespace"), get("service.name")) {
                (Some(ns), Some(n)) if !ns.is_empty() => format!("{ns}/{n}"),
                (_, Some(n)) => n,
                _ => String::new(),
            };
            let instance = get("service.instance.id").unwrap_or_default();
            let others: Vec<KeyValue> = attrs
                .iter()
                .filter(|a| {
                    !matches!(
                        a.key.as_str(),
                        "service.name" | "service.namespace" | "service.instance.id"
                    )
                })
                .cloned()
                .collect();
            // A container's resource: its identity labels its points; target_info is the node's.
            let container = attrs.iter().any(|a| a.key == "container.id");
            let mut resource_labels = Labels::new();
            if container {
                add_labels(&mut resource_labels, &others);
            } else {
                let mut target = Labels::new();
                add_labels(&mut target, &others);
                target.insert("job".into(), job.clone());
                target.insert("instance".into(), instance.clone());
                targets.insert((job.clone(), instance.clone()), target);
            }
            for sm in &rm.scope_metrics {
                let (scope_name, scope_version) = sm
                    .scope
                    .as_ref()
                    .map(|s| (s.name.clone(), s.version.clone()))
                    .unwrap_or_default();
                for m in &sm.metrics {
                    let (kind, points) = match &m.data {
                        Some(metric::Data::Gauge(g)) => (Kind::Gauge, &g.data_points),
                        Some(metric::Data::Sum(s)) => {
                            // A delta counter has no cumulative value to show; the Collector
                            // would need state to convert it. We never send one.
                            if s.is_monotonic && s.aggregation_temporality != 2 {
                                continue;
                            }
                            (
                                if s.is_monotonic {
                                    Kind::Counter
                                } else {
                                    Kind::Gauge
                                },
                                &s.data_points,
                            )
                        }
                        _ => continue,
                    };
                    let name = metric_name(&m.name, &m.unit, kind);
                    let fam = families.entry(name).or_insert_with(|| Family {
                        kind,
                        help: m.description.clone(),
                        samples: Vec::new(),
                    });
                    for p in points {
                        let Some(v) = format_value(p) else { continue };
                        let mut labels = resource_labels.clone();
                        add_labels(&mut labels, &p.attributes);
                        labels.insert("job".into(), job.clone());
                        labels.insert("instance".into(), instance.clone());
                        labels.insert("otel_scope_name".into(), scope_name.clone());
                        labels.insert("otel_scope_version".into(), scope_version.clone());
                        fam.samples.push((labels, v));
                    }
                }
            }
        }
    }
    let mut out = String::new();
    for (name, fam) in &families {
        if !fam.help.is_empty() {
            let _ = writeln!(out, "# HELP {name} {}", escape_help(&fam.help));
        }
        let _ = writeln!(out, "# TYPE {name} {}", fam.kind.as_str());
        for (labels, v) in &fam.samples {
            out.push_str(name);
            write_labels(&mut out, labels);
            let _ = writeln!(out, " {v}");
        }
    }
    if !targets.is_empty() {
        out.push_str("# HELP target_info Target metadata\n# TYPE target_info gauge\n");
        for labels in targets.values() {
            out.push_str("target_info");
            write_labels(&mut out, labels);
            out.push_str(" 1\n");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::otlp::builder::{MetricsBuilder, kv};

    #[test]
    fn names_match_the_collector_translation() {
        // The translator's documented examples (docs/metrics.md#prometheus-names).
        let cases = [
            (
                "system.cpu.time",
                "s",
                Kind::Counter,
                "system_cpu_time_seconds_total",
            ),
            (
                "system.cpu.utilization",
                "1",
                Kind::Gauge,
                "system_cpu_utilization_ratio",
            ),
            (
                "system.network.io",
                "By",
                Kind::Counter,
                "system_network_io_bytes_total",
            ),
            (
                "container.memory.usage",
                "By",
                Kind::Gauge,
                "container_memory_usage_bytes",
            ),
            (
                "container.cpu.usage",
                "{cpu}",
                Kind::Gauge,
                "container_cpu_usage",
            ),
            (
                "system.memory.usage",
                "By",
                Kind::Gauge,
                "system_memory_usage_bytes",
            ),
            (
                "container.disk.io.rate",
                "By/s",
                Kind::Gauge,
                "container_disk_io_rate_bytes_per_second",
            ),
            (
                "node_agent.sampler.errors",
                "{error}",
                Kind::Counter,
                "node_agent_sampler_errors_total",
            ),
            ("system.uptime", "s", Kind::Gauge, "system_uptime_seconds"),
            ("packets", "{packet}/s", Kind::Gauge, "packets_per_second"),
            // Counters of unit 1 get no _ratio; a name already carrying the unit gets no repeat.
            ("hits", "1", Kind::Counter, "hits_total"),
            ("x.total.seconds", "s", Kind::Counter, "x_seconds_total"),
            ("temp-celsius", "Cel", Kind::Gauge, "temp_celsius"),
            ("2xx.count", "", Kind::Gauge, "_2xx_count"),
            (
                "weird__name..x",
                "ms",
                Kind::Gauge,
                "weird_name_x_milliseconds",
            ),
        ];
        for (name, unit, kind, want) in cases {
            assert_eq!(metric_name(name, unit, kind), want, "{name} [{unit}]");
        }
        assert_eq!(label_name("cpu.mode"), "cpu_mode");
        assert_eq!(label_name("2fa"), "key_2fa");
        assert_eq!(label_name("a..b"), "a_b");
    }

    #[test]
    fn renders_types_labels_job_instance_and_target_info() {
        let mut b = MetricsBuilder::new(1_000);
        b.gauge(
            "system.cpu.utilization",
            "1",
            "CPU \"share\"\nper mode",
            [(0.25, vec![kv("cpu.mode", "idle")])],
        );
        b.sum(
            "system.cpu.time",
            "s",
            "CPU time",
            true,
            [(12.5, 7, vec![kv("cpu.mode", "user")])],
        );
        b.sum(
            "container.memory.usage",
            "By",
            "",
            false,
            [(1024u64, 7, vec![kv("container.name", "a\"b\\c")])],
        );
        let req = b.into_request(&[
            kv("service.name", "node-agent"),
            kv("service.instance.id", "n1"),
            kv("host.name", "box"),
        ]);
        let text = render([&req]);
        let v = env!("CARGO_PKG_VERSION");
        let expect = format!(
            "# TYPE container_memory_usage_bytes gauge\n\
             container_memory_usage_bytes{{container_name=\"a\\\"b\\\\c\",instance=\"n1\",job=\"node-agent\",otel_scope_name=\"node-agent\",otel_scope_version=\"{v}\"}} 1024\n\
             # HELP system_cpu_time_seconds_total CPU time\n\
             # TYPE system_cpu_time_seconds_total counter\n\
             system_cpu_time_seconds_total{{cpu_mode=\"user\",instance=\"n1\",job=\"node-agent\",otel_scope_name=\"node-agent\",otel_scope_version=\"{v}\"}} 12.5\n\
             # HELP system_cpu_utilization_ratio CPU \"share\"\\nper mode\n\
             # TYPE system_cpu_utilization_ratio gauge\n\
             system_cpu_utilization_ratio{{cpu_mode=\"idle\",instance=\"n1\",job=\"node-agent\",otel_scope_name=\"node-agent\",otel_scope_version=\"{v}\"}} 0.25\n\
             # HELP target_info Target metadata\n\
             # TYPE target_info gauge\n\
             target_info{{host_name=\"box\",instance=\"n1\",job=\"node-agent\"}} 1\n"
        );
        assert_eq!(text, expect);
    }

    #[test]
    fn container_resources_label_their_points_and_add_no_target_info() {
        let mut node = MetricsBuilder::new(1_000);
        node.gauge("system.uptime", "s", "", [(5.0, vec![])]);
        let ident = [
            kv("service.name", "node-agent"),
            kv("service.instance.id", "n1"),
        ];
        let mut res = ident.to_vec();
        res.push(kv("host.name", "box"));
        let node = node.into_request(&res);
        let mut c = MetricsBuilder::new(1_000);
        c.gauge("container.cpu.usage", "{cpu}", "", [(0.5, vec![])]);
        let mut cres = ident.to_vec();
        cres.push(kv("container.id", "abc"));
        cres.push(kv("container.name", "srv"));
        let container = c.into_request(&cres);
        let text = render([&node, &container]);
        let v = env!("CARGO_PKG_VERSION");
        assert!(text.contains(&format!(
            "container_cpu_usage{{container_id=\"abc\",container_name=\"srv\",instance=\"n1\",job=\"node-agent\",otel_scope_name=\"node-agent\",otel_scope_version=\"{v}\"}} 0.5\n"
        )), "{text}");
        assert_eq!(text.matches("target_info{").count(), 1, "{text}");
        assert!(
            text.contains("target_info{host_name=\"box\",instance=\"n1\",job=\"node-agent\"} 1")
        );
    }
}
