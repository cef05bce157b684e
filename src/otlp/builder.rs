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

/// A Resource of these attributes.
pub(crate) fn resource(attributes: Vec<KeyValue>) -> Option<Resource> {
    Some(Resource {
        attributes,
        dropped_attributes_count: 0,
        entity_refs: Vec::new(),
    })
}

/// The agent's instrumentation scope, the same on every request of every signal.
pub(crate) fn scope() -> Option<InstrumentationScope> {
    Some(InstrumentationScope {
        name: SCOPE_NAME.to_string(),
        version: env!("CARGO_PKG_VERSION").to_string(),
        attributes: Vec::new(),
        dropped_attributes_count: 0,
    })
}

pub(crate) fn request(resource: &[KeyValue], metrics: Vec<Metric>) -> ExportMetricsServiceRequest {
    ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: self::resource(resource.to_vec()),
            scope_metrics: vec![ScopeMetrics {
                scope: scope(),
                metrics,
                schema_url: SCHEMA_URL.to_string(),
            }],
            schema_url: SCHEMA_URL.to_string(),
        }],
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
