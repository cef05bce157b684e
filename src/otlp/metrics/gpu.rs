//! GPU samples as the OpenTelemetry `hw.gpu.*` metrics (semconv 1.44, `hardware/gpu`), plus the
//! generic `hw.temperature` and `hw.power` with `hw.type=gpu`. Every point carries `hw.id` (the
//! NVIDIA UUID, else the PCI address), `hw.name`, `hw.vendor` and `hw.model`.

use crate::otlp::builder::{MetricsBuilder, kv};
use crate::sources::gpu::{Gpu, GpuSample};

/// The `hw.gpu.*`, `hw.temperature` and `hw.power` metrics. `start` is the start time of the
/// updowncounters (boot).
pub(crate) fn gpus(sample: &GpuSample, start: u64, b: &mut MetricsBuilder) {
    if sample.gpus.is_empty() {
        return;
    }
    let attrs = |g: &Gpu| {
        vec![
            kv("hw.id", g.info.id.clone()),
            kv("hw.name", g.info.name.clone()),
            kv("hw.vendor", g.info.vendor.clone()),
            kv("hw.model", g.info.model.clone()),
        ]
    };
    let with = |g: &Gpu, k: &str, v: &str| {
        let mut a = attrs(g);
        a.push(kv(k, v.to_string()));
        a
    };
    let gpus = &sample.gpus;
    b.gauge(
        "hw.gpu.utilization",
        "1",
        "Share of time the GPU was busy",
        gpus.iter().filter_map(|g| {
            g.reading
                .utilization
                .map(|u| (u, with(g, "hw.gpu.task", "general")))
        }),
    );
    b.sum(
        "hw.gpu.memory.usage",
        "By",
        "GPU memory in use",
        false,
        gpus.iter()
            .filter_map(|g| g.reading.memory_used.map(|u| (u, start, attrs(g)))),
    );
    b.sum(
        "hw.gpu.memory.limit",
        "By",
        "GPU memory size",
        false,
        gpus.iter()
            .filter_map(|g| g.reading.memory_total.map(|t| (t, start, attrs(g)))),
    );
    b.gauge(
        "hw.gpu.memory.utilization",
        "1",
        "Share of GPU memory in use",
        gpus.iter()
            .filter_map(|g| match (g.reading.memory_used, g.reading.memory_total) {
                (Some(u), Some(t)) if t > 0 => Some((u as f64 / t as f64, attrs(g))),
                _ => None,
            }),
    );
    b.gauge(
        "hw.temperature",
        "Cel",
        "Temperature of the GPU",
        gpus.iter().filter_map(|g| {
            g.reading
                .temperature_c
                .map(|t| (t, with(g, "hw.type", "gpu")))
        }),
    );
    b.gauge(
        "hw.power",
        "W",
        "Power drawn by the GPU",
        gpus.iter()
            .filter_map(|g| g.reading.power_w.map(|p| (p, with(g, "hw.type", "gpu")))),
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::otlp::builder::attr_str;
    use crate::sources::gpu::GpuSampler;
    use opentelemetry_proto::tonic::metrics::v1::{metric, number_data_point};
    use std::collections::BTreeMap;
    use std::path::PathBuf;

    fn fixtures() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/gpu")
    }

    #[test]
    fn metrics_follow_hw_gpu_conventions() {
        let mut s = GpuSampler::new(
            PathBuf::from("/nonexistent"),
            fixtures().join("sysfs"),
            fixtures().join("rootfs"),
            Some("/nonexistent/libnvidia-ml.so.1".into()),
        );
        let (sample, _) = s.sample();
        let mut b = MetricsBuilder::new(42);
        gpus(&sample, 7, &mut b);
        let get = |name: &str| {
            b.metrics
                .iter()
                .find(|m| m.name == name)
                .unwrap_or_else(|| panic!("{name}"))
        };
        let points = |name: &str| -> Vec<(f64, BTreeMap<String, String>, bool)> {
            match get(name).data.as_ref().unwrap() {
                metric::Data::Gauge(g) => g
                    .data_points
                    .iter()
                    .map(|p| (num(p.value), attrs(&p.attributes), false))
                    .collect(),
                metric::Data::Sum(x) => {
                    assert!(!x.is_monotonic);
                    x.data_points
                        .iter()
                        .map(|p| {
                            assert_eq!(p.start_time_unix_nano, 7);
                            (num(p.value), attrs(&p.attributes), true)
                        })
                        .collect()
                }
                _ => panic!("{name}"),
            }
        };
        fn num(v: Option<number_data_point::Value>) -> f64 {
            match v.unwrap() {
                number_data_point::Value::AsDouble(d) => d,
                number_data_point::Value::AsInt(i) => i as f64,
            }
        }
        fn attrs(
            a: &[opentelemetry_proto::tonic::common::v1::KeyValue],
        ) -> BTreeMap<String, String> {
            a.iter()
                .map(|kv| (kv.key.clone(), attr_str(kv.value.as_ref().unwrap())))
                .collect()
        }
        let units: Vec<(&str, &str)> = b
            .metrics
            .iter()
            .map(|m| (m.name.as_str(), m.unit.as_str()))
            .collect();
        assert_eq!(
            units,
            [
                ("hw.gpu.utilization", "1"),
                ("hw.gpu.memory.usage", "By"),
                ("hw.gpu.memory.limit", "By"),
                ("hw.gpu.memory.utilization", "1"),
                ("hw.temperature", "Cel"),
                ("hw.power", "W"),
            ]
        );
        let util = points("hw.gpu.utilization");
        assert_eq!(util.len(), 2, "the Intel card has no busy file");
        assert_eq!(util[0].0, 0.37);
        assert_eq!(util[0].1["hw.gpu.task"], "general");
        assert_eq!(util[0].1["hw.id"], "0000:0b:00.0");
        assert_eq!(util[0].1["hw.name"], "card0");
        assert_eq!(util[0].1["hw.vendor"], "AMD");
        assert_eq!(
            util[0].1["hw.model"],
            "Navi 21 [Radeon RX 6800/6800 XT / 6900 XT]"
        );
        assert!(points("hw.gpu.memory.usage").iter().all(|p| p.2));
        assert_eq!(points("hw.gpu.memory.limit")[0].0, 17163091968.0);
        let mu = points("hw.gpu.memory.utilization");
        assert!((mu[0].0 - 1263534080.0 / 17163091968.0).abs() < 1e-12);
        let t = points("hw.temperature");
        assert_eq!(t[0].0, 45.0);
        assert_eq!(t[0].1["hw.type"], "gpu");
        let p = points("hw.power");
        assert_eq!(p[0].0, 33.0);
        assert_eq!(p[0].1["hw.type"], "gpu");
        assert!(get("hw.temperature").data.is_some());

        let mut empty = MetricsBuilder::new(42);
        gpus(&GpuSample::default(), 0, &mut empty);
        assert!(empty.metrics.is_empty());
    }
}
