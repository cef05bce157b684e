//! Container and game-server samples as OTLP metrics.
//!
//! **One Resource per container** (the Collector's `docker_stats` shape): each running container
//! is a `ResourceMetrics` of its own whose attributes are the container's identity
//! (`container.id`, `container.name`, `container.image.name`, and `pterodactyl.server.uuid`/`.name`
//! for Wings servers) next to the node's `service.name` and `service.instance.id`; its points
//! carry no identity attributes. Per container and interval that is about 100–120 gzip bytes on
//! the wire instead of about 400 with the identity on every point (docs/benchmarks.md#wire-bytes-by-otlp-layout).
//! Prometheus needs the identity as labels: the Collector configs promote it
//! (collector-config/README.md), and so does the agent's own `/metrics`.
//!
//! These resources are written straight into the request's bytes ([`Encoder`], through
//! `otlp::pb`), without building message structs, from a template per container that only gets
//! its numbers patched each cycle: this is the part of a cycle that grows with the number of
//! containers. `container.count` and `pterodactyl.server.status` describe the node
//! and stay on the node's resource ([`node_level`]). Counters start when the container's run
//! started.

use crate::otlp::builder::{MetricsBuilder, Value, kv};
use crate::otlp::pb::{MetricWriter, Pb, SHAPE_SEED, Sink, Skeleton, resource_bytes};
use crate::sources::cgroup::PRESSURE;
use crate::sources::containers::sampler::{ContainerSample, ContainersSample, SERVER_STATES};
use crate::sources::containers::{ContainerInfo, Inventory};
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

/// The node's identity attributes every container resource repeats (so that `job` and
/// `instance` are the node's wherever the resource goes).
pub(crate) const IDENTITY_KEYS: [&str; 3] =
    ["service.name", "service.namespace", "service.instance.id"];

/// The container attributes of a container's resource.
fn identity(c: &ContainerInfo) -> impl Iterator<Item = (&'static str, &str)> {
    [
        ("container.id", Some(c.id.as_str())),
        ("container.name", Some(c.name.as_str())),
        ("container.image.name", Some(c.image.as_str())),
        ("pterodactyl.server.uuid", c.server_uuid.as_deref()),
        ("pterodactyl.server.name", c.server_name.as_deref()),
    ]
    .into_iter()
    .filter_map(|(k, v)| Some((k, v?)))
}

const READ: Option<(&str, &str)> = Some(("disk.io.direction", "read"));
const WRITE: Option<(&str, &str)> = Some(("disk.io.direction", "write"));
const RESOURCE_KEY: &str = "pressure.resource";

/// The metrics of one container.
fn container(c: &ContainerSample, w: &mut MetricWriter) {
    let start = c.start_nanos;
    let one = |v: Option<f64>| v.map(|v| (Value::Double(v), None));
    w.gauge(
        "container.cpu.usage",
        "{cpu}",
        "CPU used since the previous sample; 1.0 = one full core (Wings cpu_absolute / 100)",
        one(c.cpu_usage),
    );
    w.sum(
        "container.cpu.time",
        "s",
        "CPU time consumed by the container",
        true,
        start,
        one(c.cpu_seconds),
    );
    w.gauge(
        "container.cpu.limit",
        "{cpu}",
        "CPU limit (CFS quota / period); absent when unlimited",
        one(c.cpu_limit),
    );
    w.sum(
        "container.cpu.throttled.time",
        "s",
        "Time the container was throttled by its CPU limit",
        true,
        start,
        one(c.throttled_seconds),
    );
    w.sum(
        "container.disk.io",
        "By",
        "Bytes read from and written to storage by the container",
        true,
        start,
        c.io.into_iter()
            .flat_map(|io| [(Value::from(io.read), READ), (Value::from(io.write), WRITE)]),
    );
    w.gauge(
        "container.disk.io.rate",
        "By/s",
        "Storage bytes per second since the previous sample (write = io_write_bytes_per_s)",
        c.io_rate
            .into_iter()
            .flat_map(|(r, wr)| [(Value::Double(r), READ), (Value::Double(wr), WRITE)]),
    );
    w.sum(
        "container.memory.usage",
        "By",
        "Memory in use, without inactive file cache (docker stats / Wings memory_bytes)",
        false,
        start,
        c.memory_bytes.map(|v| (Value::from(v), None)),
    );
    let psi = || {
        PRESSURE
            .iter()
            .zip(c.pressure.iter())
            .filter_map(|(res, p)| Some((*res, (*p)?)))
    };
    w.sum(
        "container.pressure.stall.time",
        "s",
        "Time some task of the container waited for the resource (PSI some total)",
        true,
        start,
        psi().map(|(res, p)| {
            (
                Value::Double(p.some_total_us as f64 / 1e6),
                Some((RESOURCE_KEY, res)),
            )
        }),
    );
    w.gauge(
        "container.pressure.stall.ratio",
        "1",
        "Share of the last 10 s in which some task of the container waited (PSI some avg10)",
        psi().map(|(res, p)| {
            (
                Value::Double(p.some_avg10 / 100.0),
                Some((RESOURCE_KEY, res)),
            )
        }),
    );
}

/// Writes the per-container resources of each cycle: each container's attributes encoded once
/// per identity, its metrics from a skeleton shared by the containers of the same shape.
#[derive(Default)]
pub(crate) struct Encoder {
    /// The inventory the resources are aligned with (by index).
    inventory: Option<Arc<Inventory>>,
    /// Each container's encoded resource, with the key of the identity it was written for.
    resources: Vec<Option<(u64, Vec<u8>)>>,
    keys: Vec<u64>,
    node_key: u64,
    /// By shape; a handful, searched in order (hashing the shape twice per container was a
    /// measurable part of a 1000-container cycle).
    skeletons: Vec<Skeleton>,
    values: Vec<u64>,
    /// Resources and skeletons written (not patched) in the last cycle; for tests.
    pub(crate) written: usize,
}

/// Shapes kept: a handful in practice (which optional numbers a container has).
const MAX_SKELETONS: usize = 64;

fn hash_of(parts: &[&str]) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    for p in parts {
        p.hash(&mut h);
    }
    h.finish()
}

impl Encoder {
    /// Re-aligns the resources with a new inventory, keeping those of containers whose identity
    /// (and the node's) did not change.
    fn align(&mut self, inv: &Arc<Inventory>, node_key: u64) {
        let mut old: HashMap<u64, Vec<u8>> = self.resources.drain(..).flatten().collect();
        self.keys.clear();
        for c in &inv.containers {
            let mut parts = [""; 6];
            for (slot, (_, v)) in parts.iter_mut().zip(identity(c)) {
                *slot = v;
            }
            let key = hash_of(&parts) ^ node_key;
            self.keys.push(key);
            self.resources.push(old.remove(&key).map(|r| (key, r)));
        }
        self.inventory = Some(inv.clone());
        self.node_key = node_key;
    }

    /// Appends one `ResourceMetrics` per measured container to `buf` (the tail of an encoded
    /// request), stamped `time`. `node` holds the node's identity attributes
    /// ([`IDENTITY_KEYS`]).
    pub(crate) fn write(
        &mut self,
        s: &ContainersSample,
        node: &[(&str, &str)],
        time: u64,
        buf: &mut Vec<u8>,
    ) {
        let node_key = node.iter().fold(0xcbf2_9ce4_8422_2325_u64, |h, (k, v)| {
            h.rotate_left(5) ^ hash_of(&[k, v])
        });
        if node_key != self.node_key
            || !self
                .inventory
                .as_ref()
                .is_some_and(|i| Arc::ptr_eq(i, &s.inventory))
        {
            self.align(&s.inventory, node_key);
        }
        self.written = 0;
        for c in &s.containers {
            let Some(info) = s.inventory.containers.get(c.index) else {
                continue;
            };
            if c.cpu_seconds.is_none() && c.memory_bytes.is_none() && c.io.is_none() {
                continue;
            }
            self.values.clear();
            let mut shape = SHAPE_SEED;
            container(
                c,
                &mut MetricWriter {
                    sink: Sink::Collect {
                        values: &mut self.values,
                        shape: &mut shape,
                    },
                    time,
                },
            );
            let key = self.keys[c.index];
            let resource = match &mut self.resources[c.index] {
                Some((k, r)) if *k == key => r,
                slot => {
                    self.written += 1;
                    let r = resource_bytes(|pb: &mut Pb| {
                        for (k, v) in node {
                            pb.kv(1, k, v);
                        }
                        for (k, v) in identity(info) {
                            pb.kv(1, k, v);
                        }
                    });
                    &mut slot.insert((key, r)).1
                }
            };
            let at = match self.skeletons.iter().position(|k| k.shape() == shape) {
                Some(at) => at,
                None => {
                    if self.skeletons.len() >= MAX_SKELETONS {
                        self.skeletons.clear();
                    }
                    self.written += 1;
                    let sk = Skeleton::write(time, |w| container(c, w));
                    debug_assert_eq!(
                        sk.shape(),
                        shape,
                        "written with the shape it was collected with"
                    );
                    self.skeletons.push(sk);
                    self.skeletons.len() - 1
                }
            };
            let emitted = self.skeletons[at].emit(resource, shape, &self.values, buf);
            debug_assert!(emitted, "a skeleton has the shape it is filed under");
        }
    }
}

/// The node-level container metrics: containers by Docker state, and each Wings server's state.
pub(crate) fn node_level(s: &ContainersSample, b: &mut MetricsBuilder) {
    b.gauge(
        "container.count",
        "{container}",
        "Containers on the node by Docker state",
        s.counts
            .iter()
            .map(|(st, n)| (*n as i64, vec![kv("container.state", st.to_string())])),
    );
    b.gauge(
        "pterodactyl.server.status",
        "1",
        "1 for the Wings server's current state, 0 for the others",
        s.inventory.servers.iter().flat_map(|sv| {
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
    use crate::otlp::builder::attr_str;
    use crate::sources::cgroup::IoBytes;
    use crate::sources::cgroup::psi::Pressure;
    use crate::sources::containers::Inventory;
    use crate::sources::containers::wings::Server;
    use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
    use opentelemetry_proto::tonic::metrics::v1::metric::Data;
    use prost::Message;
    use std::borrow::Cow;
    use std::collections::BTreeMap;
    use std::sync::Arc;

    #[test]
    fn metric_contract() {
        let c = ContainerSample {
            index: 0,
            cpu_usage: Some(0.5),
            cpu_seconds: Some(3.0),
            cpu_limit: Some(2.0),
            throttled_seconds: Some(0.1),
            memory_bytes: Some(100),
            io: Some(IoBytes { read: 1, write: 2 }),
            io_rate: Some((0.0, 2.0)),
            pressure: [Some(Pressure::default()), None, None],
            start_nanos: 7,
            ..Default::default()
        };
        let inventory = Arc::new(Inventory {
            containers: vec![Arc::new(ContainerInfo {
                id: "id".into(),
                name: "u".into(),
                image: "img".into(),
                server_uuid: Some("u".into()),
                server_name: Some("Survival".into()),
                ..Default::default()
            })],
            servers: vec![Server {
                uuid: "u".into(),
                name: "Survival".into(),
                state: "running".into(),
                ..Default::default()
            }],
            ..Default::default()
        });
        let s = ContainersSample {
            inventory,
            containers: vec![c],
            counts: vec![(Cow::Borrowed("running"), 1)],
            ..Default::default()
        };
        let mut b = MetricsBuilder::new(10);
        node_level(&s, &mut b);
        let mut buf = b
            .into_request(&[kv("service.name", "node-agent")])
            .encode_to_vec();
        let node = [
            ("service.name", "node-agent"),
            ("service.instance.id", "n1"),
        ];
        let mut enc = Encoder::default();
        let head = buf.len();
        enc.write(&s, &node, 10, &mut buf);
        assert_eq!(enc.written, 2, "its resource and the skeleton of its shape");
        // The next cycle patches the template: same bytes but the numbers.
        let mut again = Vec::new();
        enc.write(&s, &node, 10, &mut again);
        assert_eq!((enc.written, &again[..]), (0, &buf[head..]));
        let mut later = s.clone();
        later.containers[0].cpu_seconds = Some(4.5);
        let mut patched = Vec::new();
        enc.write(&later, &node, 20, &mut patched);
        assert_eq!(enc.written, 0);
        let p = ExportMetricsServiceRequest::decode(patched.as_slice()).unwrap();
        let m = &p.resource_metrics[0].scope_metrics[0].metrics;
        let t = m.iter().find(|m| m.name == "container.cpu.time").unwrap();
        let Some(Data::Sum(t)) = &t.data else {
            panic!()
        };
        assert_eq!(
            (t.data_points[0].time_unix_nano, t.data_points[0].value),
            (
                20,
                Some(
                    opentelemetry_proto::tonic::metrics::v1::number_data_point::Value::AsDouble(
                        4.5
                    )
                )
            )
        );
        // A value that appears changes the shape: written again.
        later.containers[0].pressure[2] = Some(Pressure::default());
        enc.write(&later, &node, 30, &mut Vec::new());
        assert_eq!(enc.written, 1, "a skeleton for the new shape");
        let req = ExportMetricsServiceRequest::decode(buf.as_slice()).unwrap();
        assert_eq!(
            req.resource_metrics.len(),
            2,
            "the node's resource and one per container"
        );
        let kinds: BTreeMap<&str, (&str, &str)> = req
            .resource_metrics
            .iter()
            .flat_map(|r| &r.scope_metrics)
            .flat_map(|s| &s.metrics)
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
        let node = &req.resource_metrics[0].scope_metrics[0].metrics;
        let status = node
            .iter()
            .find(|m| m.name == "pterodactyl.server.status")
            .unwrap();
        let Some(Data::Gauge(g)) = &status.data else {
            panic!()
        };
        let ones = g
            .data_points
            .iter()
            .filter(|p| {
                p.value
                    == Some(
                        opentelemetry_proto::tonic::metrics::v1::number_data_point::Value::AsInt(1),
                    )
            })
            .count();
        assert_eq!((g.data_points.len(), ones), (4, 1));
        // The container's resource: the node's identity, then the container's.
        let rm = &req.resource_metrics[1];
        let attrs: Vec<(String, String)> = rm
            .resource
            .as_ref()
            .unwrap()
            .attributes
            .iter()
            .map(|a| (a.key.clone(), attr_str(a.value.as_ref().unwrap())))
            .collect();
        let expect = [
            ("service.name", "node-agent"),
            ("service.instance.id", "n1"),
            ("container.id", "id"),
            ("container.name", "u"),
            ("container.image.name", "img"),
            ("pterodactyl.server.uuid", "u"),
            ("pterodactyl.server.name", "Survival"),
        ];
        assert_eq!(attrs, expect.map(|(k, v)| (k.to_string(), v.to_string())));
        let sm = &rm.scope_metrics[0];
        assert_eq!(sm.scope.as_ref().unwrap().name, "node-agent");
        let time = sm
            .metrics
            .iter()
            .find(|m| m.name == "container.cpu.time")
            .unwrap();
        let Some(Data::Sum(sum)) = &time.data else {
            panic!()
        };
        assert_eq!(sum.data_points[0].start_time_unix_nano, 7);
        assert_eq!(sum.data_points[0].time_unix_nano, 10);
        assert!(sum.data_points[0].attributes.is_empty());
        let io = sm
            .metrics
            .iter()
            .find(|m| m.name == "container.disk.io")
            .unwrap();
        let Some(Data::Sum(io)) = &io.data else {
            panic!()
        };
        let dirs: Vec<String> = io
            .data_points
            .iter()
            .map(|p| attr_str(p.attributes[0].value.as_ref().unwrap()))
            .collect();
        assert_eq!(dirs, ["read", "write"]);
        let psi = sm
            .metrics
            .iter()
            .find(|m| m.name == "container.pressure.stall.time")
            .unwrap();
        let Some(Data::Sum(psi)) = &psi.data else {
            panic!()
        };
        assert_eq!(psi.data_points.len(), 1);
    }
}
