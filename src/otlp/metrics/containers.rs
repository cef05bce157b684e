//! Container and game-server samples as OTLP metrics: `container.*` per container (the names of
//! the Collector's `docker_stats` receiver where one exists) and `pterodactyl.server.status` per
//! Wings server. Every container point carries the container's identity (`container.id`,
//! `container.name`, `container.image.name`, and `pterodactyl.server.uuid`/`.name` for Wings
//! servers); counters start when the container (re)started.

use crate::otlp::builder::{MetricsBuilder, kv};
use crate::sources::containers::sampler::{ContainerSample, ContainersSample, SERVER_STATES};
use opentelemetry_proto::tonic::common::v1::KeyValue;

fn attrs(c: &ContainerSample) -> Vec<KeyValue> {
    let mut a = vec![
        kv("container.id", c.id.clone()),
        kv("container.name", c.name.clone()),
        kv("container.image.name", c.image.clone()),
    ];
    if let Some(u) = &c.server_uuid {
        a.push(kv("pterodactyl.server.uuid", u.clone()));
    }
    if let Some(n) = &c.server_name {
        a.push(kv("pterodactyl.server.name", n.clone()));
    }
    a
}

fn with(mut a: Vec<KeyValue>, k: &str, v: &str) -> Vec<KeyValue> {
    a.push(kv(k, v.to_string()));
    a
}

pub(crate) fn containers(s: &ContainersSample, b: &mut MetricsBuilder) {
    let cs = &s.containers;
    b.gauge(
        "container.cpu.usage",
        "{cpu}",
        "CPU used since the previous sample; 1.0 = one full core (Wings cpu_absolute / 100)",
        cs.iter().filter_map(|c| c.cpu_usage.map(|v| (v, attrs(c)))),
    );
    b.sum(
        "container.cpu.time",
        "s",
        "CPU time consumed by the container",
        true,
        cs.iter()
            .filter_map(|c| c.cpu_seconds.map(|v| (v, c.start_nanos, attrs(c)))),
    );
    b.gauge(
        "container.cpu.limit",
        "{cpu}",
        "CPU limit (CFS quota / period); absent when unlimited",
        cs.iter().filter_map(|c| c.cpu_limit.map(|v| (v, attrs(c)))),
    );
    b.sum(
        "container.cpu.throttled.time",
        "s",
        "Time the container was throttled by its CPU limit",
        true,
        cs.iter()
            .filter_map(|c| c.throttled_seconds.map(|v| (v, c.start_nanos, attrs(c)))),
    );
    b.sum(
        "container.disk.io",
        "By",
        "Bytes read from and written to storage by the container",
        true,
        cs.iter().flat_map(|c| {
            c.io.map(|io| {
                [
                    (
                        io.read,
                        c.start_nanos,
                        with(attrs(c), "disk.io.direction", "read"),
                    ),
                    (
                        io.write,
                        c.start_nanos,
                        with(attrs(c), "disk.io.direction", "write"),
                    ),
                ]
            })
            .into_iter()
            .flatten()
        }),
    );
    b.gauge(
        "container.disk.io.rate",
        "By/s",
        "Storage bytes per second since the previous sample (write = io_write_bytes_per_s)",
        cs.iter().flat_map(|c| {
            c.io_rate
                .map(|(r, w)| {
                    [
                        (r, with(attrs(c), "disk.io.direction", "read")),
                        (w, with(attrs(c), "disk.io.direction", "write")),
                    ]
                })
                .into_iter()
                .flatten()
        }),
    );
    b.sum(
        "container.memory.usage",
        "By",
        "Memory in use, without inactive file cache (docker stats / Wings memory_bytes)",
        false,
        cs.iter()
            .filter_map(|c| c.memory_bytes.map(|v| (v, c.start_nanos, attrs(c)))),
    );
    b.sum(
        "container.pressure.stall.time",
        "s",
        "Time some task of the container waited for the resource (PSI some total)",
        true,
        cs.iter().flat_map(|c| {
            c.pressure.iter().map(|(res, p)| {
                (
                    p.some_total_us as f64 / 1e6,
                    c.start_nanos,
                    with(attrs(c), "pressure.resource", res),
                )
            })
        }),
    );
    b.gauge(
        "container.pressure.stall.ratio",
        "1",
        "Share of the last 10 s in which some task of the container waited (PSI some avg10)",
        cs.iter().flat_map(|c| {
            c.pressure.iter().map(|(res, p)| {
                (
                    p.some_avg10 / 100.0,
                    with(attrs(c), "pressure.resource", res),
                )
            })
        }),
    );
    b.gauge(
        "container.count",
        "{container}",
        "Containers on the node by Docker state",
        s.counts
            .iter()
            .map(|(st, n)| (*n as i64, vec![kv("container.state", st.clone())])),
    );
    b.gauge(
        "pterodactyl.server.status",
        "1",
        "1 for the Wings server's current state, 0 for the others",
        s.servers.iter().flat_map(|sv| {
            let mut states: Vec<&str> = SERVER_STATES.to_vec();
            if !states.contains(&sv.state.as_str()) && !sv.state.is_empty() {
                states.push(sv.state.as_str());
            }
            states.into_iter().map(move |st| {
                (
                    i64::from(st == sv.state),
                    vec![
                        kv("pterodactyl.server.uuid", sv.uuid.clone()),
                        kv("pterodactyl.server.name", sv.name.clone()),
                        kv("pterodactyl.server.state", st.to_string()),
                    ],
                )
            })
        }),
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sources::cgroup::IoBytes;
    use crate::sources::cgroup::psi::Pressure;
    use crate::sources::containers::sampler::ServerStatus;
    use std::collections::BTreeMap;

    #[test]
    fn metric_contract() {
        use opentelemetry_proto::tonic::metrics::v1::metric::Data;
        let c = ContainerSample {
            id: "id".into(),
            name: "u".into(),
            image: "img".into(),
            server_uuid: Some("u".into()),
            server_name: Some("Survival".into()),
            cpu_usage: Some(0.5),
            cpu_seconds: Some(3.0),
            cpu_limit: Some(2.0),
            throttled_seconds: Some(0.1),
            memory_bytes: Some(100),
            io: Some(IoBytes { read: 1, write: 2 }),
            io_rate: Some((0.0, 2.0)),
            pressure: vec![("cpu", Pressure::default())],
            start_nanos: 7,
            ..Default::default()
        };
        let s = ContainersSample {
            containers: vec![c],
            servers: vec![ServerStatus {
                uuid: "u".into(),
                name: "Survival".into(),
                state: "running".into(),
                ..Default::default()
            }],
            counts: [("running".to_string(), 1)].into_iter().collect(),
        };
        let mut b = MetricsBuilder::new(10);
        containers(&s, &mut b);
        let kinds: BTreeMap<&str, (&str, &str)> = b
            .metrics
            .iter()
            .map(|m| {
                let kind = match &m.data {
                    Some(Data::Gauge(_)) => "gauge",
                    Some(Data::Sum(x)) if x.is_monotonic => "counter",
                    Some(Data::Sum(_)) => "updowncounter",
                    _ => "other",
                };
                (m.name.as_str(), (kind, m.unit.as_str()))
            })
            .collect();
        let want = [
            ("container.cpu.usage", ("gauge", "{cpu}")),
            ("container.cpu.time", ("counter", "s")),
            ("container.cpu.limit", ("gauge", "{cpu}")),
            ("container.cpu.throttled.time", ("counter", "s")),
            ("container.disk.io", ("counter", "By")),
            ("container.disk.io.rate", ("gauge", "By/s")),
            ("container.memory.usage", ("updowncounter", "By")),
            ("container.pressure.stall.time", ("counter", "s")),
            ("container.pressure.stall.ratio", ("gauge", "1")),
            ("container.count", ("gauge", "{container}")),
            ("pterodactyl.server.status", ("gauge", "1")),
        ];
        assert_eq!(kinds, want.into_iter().collect());
        let status = b
            .metrics
            .iter()
            .find(|m| m.name == "pterodactyl.server.status")
            .unwrap();
        let Some(Data::Gauge(g)) = &status.data else {
            panic!()
        };
        let ones: Vec<_> = g
            .data_points
            .iter()
            .filter(|p| {
                p.value
                    == Some(
                        opentelemetry_proto::tonic::metrics::v1::number_data_point::Value::AsInt(1),
                    )
            })
            .collect();
        assert_eq!((g.data_points.len(), ones.len()), (4, 1));
        let time = b
            .metrics
            .iter()
            .find(|m| m.name == "container.cpu.time")
            .unwrap();
        let Some(Data::Sum(sum)) = &time.data else {
            panic!()
        };
        assert_eq!(sum.data_points[0].start_time_unix_nano, 7);
        let keys: Vec<&str> = sum.data_points[0]
            .attributes
            .iter()
            .map(|a| a.key.as_str())
            .collect();
        assert_eq!(
            keys,
            [
                "container.id",
                "container.name",
                "container.image.name",
                "pterodactyl.server.uuid",
                "pterodactyl.server.name"
            ]
        );
    }
}
