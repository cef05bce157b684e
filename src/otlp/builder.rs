//! The OTLP metric builder: data points, metrics and the request, straight from samples.
//!
//! The agent does not run the OpenTelemetry SDK's aggregation pipeline: every sample is turned into
//! one `ExportMetricsServiceRequest` right after it is taken, stamped with the time it was taken,
//! and handed to the delivery queue. That gives "every sample exported exactly once" by
//! construction, costs no per-cycle hashing of attribute sets, and lets per-container series
//! disappear the moment a container does (no stale synchronous gauges, no cardinality overflow).
//! The messages are the reference `opentelemetry-proto` types, so what goes on the wire is the
//! same OTLP the SDK would send.

use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use opentelemetry_proto::tonic::metrics::v1::{
    AggregationTemporality, Gauge, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum,
    metric, number_data_point,
};
use opentelemetry_proto::tonic::resource::v1::Resource;

/// Semantic-convention schema the names follow.
pub(crate) const SCHEMA_URL: &str = "https://opentelemetry.io/schemas/1.44.0";
pub(crate) const SCOPE_NAME: &str = "node-agent";

pub(crate) fn kv(key: &str, value: impl Into<String>) -> KeyValue {
    KeyValue {
        key: key.to_string(),
        key_strindex: 0,
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value.into())),
        }),
    }
}

pub(crate) fn kv_int(key: &str, value: i64) -> KeyValue {
    KeyValue {
        key: key.to_string(),
        key_strindex: 0,
        value: Some(AnyValue {
            value: Some(any_value::Value::IntValue(value)),
        }),
    }
}

/// A value of a data point.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Value {
    Int(i64),
    Double(f64),
}

impl From<f64> for Value {
    fn from(v: f64) -> Self {
        Value::Double(v)
    }
}
impl From<i64> for Value {
    fn from(v: i64) -> Self {
        Value::Int(v)
    }
}
impl From<u64> for Value {
    fn from(v: u64) -> Self {
        Value::Int(v.min(i64::MAX as u64) as i64)
    }
}

/// Collects the metrics of one sample, all stamped with the sample's time.
pub(crate) struct MetricsBuilder {
    pub(crate) time_nanos: u64,
    pub(crate) metrics: Vec<Metric>,
}

pub(crate) fn point(
    time: u64,
    start: u64,
    value: Value,
    attributes: Vec<KeyValue>,
) -> NumberDataPoint {
    NumberDataPoint {
        attributes,
        start_time_unix_nano: start,
        time_unix_nano: time,
        value: Some(match value {
            Value::Int(i) => number_data_point::Value::AsInt(i),
            Value::Double(d) => number_data_point::Value::AsDouble(d),
        }),
        exemplars: Vec::new(),
        flags: 0,
    }
}

impl MetricsBuilder {
    pub(crate) fn new(time_nanos: u64) -> Self {
        MetricsBuilder {
            time_nanos,
            metrics: Vec::new(),
        }
    }

    /// A gauge with one point per `(value, attributes)`; non-finite values are left out (the
    /// OTLP receivers reject them and they are never a real measurement).
    pub(crate) fn gauge<V: Into<Value>>(
        &mut self,
        name: &str,
        unit: &str,
        description: &str,
        points: impl IntoIterator<Item = (V, Vec<KeyValue>)>,
    ) {
        let t = self.time_nanos;
        let data_points: Vec<_> = points
            .into_iter()
            .map(|(v, a)| (v.into(), a))
            .filter(|(v, _)| !matches!(v, Value::Double(d) if !d.is_finite()))
            .map(|(v, a)| point(t, 0, v, a))
            .collect();
        if data_points.is_empty() {
            return;
        }
        self.metrics.push(Metric {
            name: name.to_string(),
            description: description.to_string(),
            unit: unit.to_string(),
            metadata: Vec::new(),
            data: Some(metric::Data::Gauge(Gauge { data_points })),
        });
    }

    /// A cumulative sum. `monotonic` = counter; otherwise an updowncounter. Each point carries its
    /// own start time (the moment its counter started: boot, container start, agent start).
    pub(crate) fn sum<V: Into<Value>>(
        &mut self,
        name: &str,
        unit: &str,
        description: &str,
        monotonic: bool,
        points: impl IntoIterator<Item = (V, u64, Vec<KeyValue>)>,
    ) {
        let t = self.time_nanos;
        let data_points: Vec<_> = points
            .into_iter()
            .map(|(v, start, a)| (v.into(), start, a))
            .filter(|(v, _, _)| !matches!(v, Value::Double(d) if !d.is_finite()))
            .map(|(v, start, a)| point(t, start, v, a))
            .collect();
        if data_points.is_empty() {
            return;
        }
        self.metrics.push(Metric {
            name: name.to_string(),
            description: description.to_string(),
            unit: unit.to_string(),
            metadata: Vec::new(),
            data: Some(metric::Data::Sum(Sum {
                data_points,
                aggregation_temporality: AggregationTemporality::Cumulative as i32,
                is_monotonic: monotonic,
            })),
        });
    }

    /// Wraps the collected metrics into a request for `resource`.
    pub(crate) fn into_request(self, resource: &[KeyValue]) -> ExportMetricsServiceRequest {
        request(resource, self.metrics)
    }
}

/// Writes the `ResourceMetrics` envelope (field 1 of the request) for one resource with one
/// scope, the scope's metrics written by `metrics`. Append several to one buffer and the buffer is
/// a request with several resources (repeated fields may be concatenated).
pub(crate) fn resource_metrics(
    buf: &mut Vec<u8>,
    attributes: impl FnOnce(&mut Pb),
    metrics: impl FnOnce(&mut Pb),
) {
    let mut pb = Pb { buf };
    let rm = pb.open(1, 2);
    let res = pb.open(1, 2);
    attributes(&mut pb);
    pb.close(res);
    let sm = pb.open(2, 2);
    let scope = pb.open(1, 1);
    pb.str(1, SCOPE_NAME);
    pb.str(2, env!("CARGO_PKG_VERSION"));
    pb.close(scope);
    metrics(&mut pb);
    pb.str(3, SCHEMA_URL);
    pb.close(sm);
    pb.str(3, SCHEMA_URL);
    pb.close(rm);
}

/// One metric of a resource written by [`resource_metrics`]: a gauge or a cumulative sum whose
/// points carry at most one attribute each. Nothing is written when no point is.
pub(crate) struct MetricWriter<'p, 'b> {
    pub(crate) pb: &'p mut Pb<'b>,
    pub(crate) time: u64,
}

/// A point: value and at most one attribute.
pub(crate) type Point<'a> = (Value, Option<(&'a str, &'a str)>);

impl MetricWriter<'_, '_> {
    fn metric<'a>(
        &mut self,
        name: &str,
        unit: &str,
        description: &str,
        sum: Option<(bool, u64)>,
        points: impl IntoIterator<Item = Point<'a>>,
    ) {
        let rollback = self.pb.buf.len();
        let m = self.pb.open(2, 2);
        self.pb.str(1, name);
        self.pb.str(2, description);
        self.pb.str(3, unit);
        let data = self.pb.open(if sum.is_some() { 7 } else { 5 }, 2);
        let mut n = 0;
        for (v, attr) in points {
            if matches!(v, Value::Double(d) if !d.is_finite()) {
                continue;
            }
            n += 1;
            // Fields in tag order, as prost writes them.
            let p = self.pb.open(1, 1);
            if let Some((_, start)) = sum {
                self.pb.fixed64(2, start);
            }
            self.pb.fixed64(3, self.time);
            match v {
                Value::Double(d) => self.pb.double_always(4, d),
                Value::Int(i) => self.pb.sfixed64_always(6, i),
            }
            if let Some((k, val)) = attr {
                self.pb.kv(7, k, val);
            }
            self.pb.close(p);
        }
        if let Some((monotonic, _)) = sum {
            self.pb.uint(2, AggregationTemporality::Cumulative as u64);
            self.pb.uint(3, u64::from(monotonic));
        }
        self.pb.close(data);
        self.pb.close(m);
        if n == 0 {
            self.pb.buf.truncate(rollback);
        }
    }

    /// A gauge; same arguments as [`MetricsBuilder::gauge`].
    pub(crate) fn gauge<'a>(
        &mut self,
        name: &str,
        unit: &str,
        description: &str,
        points: impl IntoIterator<Item = Point<'a>>,
    ) {
        self.metric(name, unit, description, None, points);
    }

    /// A cumulative sum whose points all start at `start`; same arguments as
    /// [`MetricsBuilder::sum`].
    pub(crate) fn sum<'a>(
        &mut self,
        name: &str,
        unit: &str,
        description: &str,
        monotonic: bool,
        start: u64,
        points: impl IntoIterator<Item = Point<'a>>,
    ) {
        self.metric(name, unit, description, Some((monotonic, start)), points);
    }
}

pub(crate) fn request(resource: &[KeyValue], metrics: Vec<Metric>) -> ExportMetricsServiceRequest {
    ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: Some(Resource {
                attributes: resource.to_vec(),
                dropped_attributes_count: 0,
                entity_refs: Vec::new(),
            }),
            scope_metrics: vec![ScopeMetrics {
                scope: Some(InstrumentationScope {
                    name: SCOPE_NAME.to_string(),
                    version: env!("CARGO_PKG_VERSION").to_string(),
                    attributes: Vec::new(),
                    dropped_attributes_count: 0,
                }),
                metrics,
                schema_url: SCHEMA_URL.to_string(),
            }],
            schema_url: SCHEMA_URL.to_string(),
        }],
    }
}

/// Protobuf written straight into a byte buffer, for the part of a request that grows with the
/// number of containers (`metrics::containers`): no message structs are built, nothing is
/// allocated per point, and a nested message's length is written in front of it once its
/// content is there (shifting the content only when the guessed width of the length was wrong).
/// The field numbers are those of `opentelemetry-proto`; the tests decode what is written here
/// with prost and compare it with the reference types.
pub(crate) struct Pb<'a> {
    pub(crate) buf: &'a mut Vec<u8>,
}

/// A nested message being written: where its length goes and how many bytes were kept for it.
#[must_use]
pub(crate) struct Open {
    at: usize,
    width: usize,
}

const LEN: u32 = 2;
const I64: u32 = 1;
const VARINT: u32 = 0;

fn varint_width(v: u64) -> usize {
    (64 - (v | 1).leading_zeros() as usize).div_ceil(7)
}

impl Pb<'_> {
    fn key(&mut self, field: u32, wire: u32) {
        self.varint(u64::from(field << 3 | wire));
    }

    pub(crate) fn varint(&mut self, mut v: u64) {
        while v >= 0x80 {
            self.buf.push((v as u8) | 0x80);
            v >>= 7;
        }
        self.buf.push(v as u8);
    }

    /// A string field; proto3 leaves out an empty one.
    pub(crate) fn str(&mut self, field: u32, v: &str) {
        if !v.is_empty() {
            self.key(field, LEN);
            self.varint(v.len() as u64);
            self.buf.extend_from_slice(v.as_bytes());
        }
    }

    /// A `fixed64`; left out when 0.
    pub(crate) fn fixed64(&mut self, field: u32, v: u64) {
        if v != 0 {
            self.key(field, I64);
            self.buf.extend_from_slice(&v.to_le_bytes());
        }
    }

    /// A member of a oneof: written even when 0.
    pub(crate) fn double_always(&mut self, field: u32, v: f64) {
        self.key(field, I64);
        self.buf.extend_from_slice(&v.to_le_bytes());
    }

    pub(crate) fn sfixed64_always(&mut self, field: u32, v: i64) {
        self.key(field, I64);
        self.buf.extend_from_slice(&v.to_le_bytes());
    }

    pub(crate) fn uint(&mut self, field: u32, v: u64) {
        if v != 0 {
            self.key(field, VARINT);
            self.varint(v);
        }
    }

    /// Starts a nested message; `guess` bytes are kept for its length (1 below 128 bytes, 2
    /// below 16 KiB).
    pub(crate) fn open(&mut self, field: u32, guess: usize) -> Open {
        self.key(field, LEN);
        let at = self.buf.len();
        self.buf.resize(at + guess, 0);
        Open { at, width: guess }
    }

    /// Ends a nested message: writes its length in front of it.
    pub(crate) fn close(&mut self, o: Open) {
        let start = o.at + o.width;
        let len = self.buf.len() - start;
        let need = varint_width(len as u64);
        if need != o.width {
            let end = self.buf.len();
            if need > o.width {
                self.buf.resize(end + need - o.width, 0);
                self.buf.copy_within(start..end, o.at + need);
            } else {
                self.buf.copy_within(start..end, o.at + need);
                self.buf.truncate(end - (o.width - need));
            }
        }
        let mut v = len as u64;
        for i in 0..need {
            let more = if i + 1 < need { 0x80 } else { 0 };
            self.buf[o.at + i] = (v as u8 & 0x7f) | more;
            v >>= 7;
        }
    }

    /// A `KeyValue` with a string value.
    pub(crate) fn kv(&mut self, field: u32, key: &str, value: &str) {
        let kv = self.open(field, 1);
        self.str(1, key);
        let any = self.open(2, 1);
        // A oneof member: written even when empty.
        self.key(1, LEN);
        self.varint(value.len() as u64);
        self.buf.extend_from_slice(value.as_bytes());
        self.close(any);
        self.close(kv);
    }
}

/// Value of a string attribute, for tests and the Prometheus rendering.
pub(crate) fn attr_str(v: &AnyValue) -> String {
    match &v.value {
        Some(any_value::Value::StringValue(s)) => s.clone(),
        Some(any_value::Value::IntValue(i)) => i.to_string(),
        Some(any_value::Value::DoubleValue(d)) => d.to_string(),
        Some(any_value::Value::BoolValue(b)) => b.to_string(),
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    #[test]
    fn written_bytes_decode_to_the_reference_messages() {
        for len in [0usize, 1, 127, 128, 300, 16_383, 16_384, 70_000] {
            let text = "x".repeat(len);
            let mut buf = Vec::new();
            resource_metrics(
                &mut buf,
                |pb| pb.kv(1, "container.name", &text),
                |pb| {
                    let mut w = MetricWriter { pb, time: 9 };
                    w.gauge("g", "1", "", [(Value::Double(0.5), Some(("a", "b")))]);
                    w.sum("s", "By", "d", true, 3, [(Value::Int(7), None)]);
                    w.gauge("empty", "1", "", [(Value::Double(f64::NAN), None)]);
                },
            );
            let got = ExportMetricsServiceRequest::decode(buf.as_slice()).unwrap();
            let mut b = MetricsBuilder::new(9);
            b.gauge("g", "1", "", [(0.5, vec![kv("a", "b")])]);
            b.sum("s", "By", "d", true, [(7i64, 3, vec![])]);
            let want = b.into_request(&[kv("container.name", text)]);
            assert_eq!(got, want, "length {len}");
            // And prost writes the same bytes (canonical lengths).
            assert_eq!(buf, want.encode_to_vec(), "length {len}");
        }
    }
}
