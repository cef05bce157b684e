//! OTLP/JSON: an `ExportMetricsServiceRequest` or `ExportLogsServiceRequest` in the proto3 JSON
//! mapping with the OTLP deviations, written straight from the prost types into a reused buffer.
//!
//! Why not `serde_json::to_vec` of the generated types: their serde derives write every field,
//! default or not (`"entityRefs": []`, `"metadata": []`, `"schemaUrl": ""`, `"flags": 0`), and a
//! NaN as `null`. Proto3 JSON omits fields that hold their default value, and a receiver built on
//! an older `opentelemetry-proto` (one that predates `entityRefs` or `metadata`) may reject a field
//! it does not know. So this writer follows the mapping exactly:
//!
//! - a scalar or repeated field is written only when it is not its default (0, "", false, empty);
//! - a set oneof member and a set `optional` field are always written (`"asDouble": 0`);
//! - a present message field is written even when empty (`"resource": {}`);
//! - 64-bit integers are decimal strings, enums are integers (OTLP: never names), doubles are
//!   numbers or `"NaN"`, `"Infinity"`, `"-Infinity"`;
//! - `bytes` are base64, except `traceId`/`spanId`, which OTLP writes as hex;
//! - keys are lowerCamelCase.

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{
    AnyValue, EntityRef, InstrumentationScope, KeyValue, any_value,
};
use opentelemetry_proto::tonic::logs::v1::LogRecord;
use opentelemetry_proto::tonic::metrics::v1::{
    Exemplar, ExponentialHistogramDataPoint, HistogramDataPoint, Metric, NumberDataPoint,
    SummaryDataPoint, exemplar, exponential_histogram_data_point::Buckets, metric,
    number_data_point,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use std::fmt::Write as _;

/// Writes `req` as OTLP/JSON into `out` (cleared first).
pub(crate) fn write_request(req: &ExportMetricsServiceRequest, out: &mut String) {
    out.clear();
    let mut o = Obj::open(out);
    o.list("resourceMetrics", &req.resource_metrics, |out, rm| {
        let mut o = Obj::open(out);
        if let Some(r) = &rm.resource {
            o.key("resource");
            resource(o.out, r);
        }
        o.list("scopeMetrics", &rm.scope_metrics, |out, sm| {
            let mut o = Obj::open(out);
            if let Some(s) = &sm.scope {
                o.key("scope");
                scope(o.out, s);
            }
            o.list("metrics", &sm.metrics, metric);
            o.str("schemaUrl", &sm.schema_url);
            o.close();
        });
        o.str("schemaUrl", &rm.schema_url);
        o.close();
    });
    o.close();
}

/// Writes `req` as OTLP/JSON into `out` (cleared first).
pub(crate) fn write_logs_request(req: &ExportLogsServiceRequest, out: &mut String) {
    out.clear();
    let mut o = Obj::open(out);
    o.list("resourceLogs", &req.resource_logs, |out, rl| {
        let mut o = Obj::open(out);
        if let Some(r) = &rl.resource {
            o.key("resource");
            resource(o.out, r);
        }
        o.list("scopeLogs", &rl.scope_logs, |out, sl| {
            let mut o = Obj::open(out);
            if let Some(s) = &sl.scope {
                o.key("scope");
                scope(o.out, s);
            }
            o.list("logRecords", &sl.log_records, log_record);
            o.str("schemaUrl", &sl.schema_url);
            o.close();
        });
        o.str("schemaUrl", &rl.schema_url);
        o.close();
    });
    o.close();
}

fn log_record(out: &mut String, l: &LogRecord) {
    let mut o = Obj::open(out);
    o.u64("timeUnixNano", l.time_unix_nano);
    o.u64("observedTimeUnixNano", l.observed_time_unix_nano);
    o.i32("severityNumber", l.severity_number);
    o.str("severityText", &l.severity_text);
    if let Some(b) = &l.body {
        o.key("body");
        any_value(o.out, b);
    }
    o.attrs("attributes", &l.attributes);
    o.u32("droppedAttributesCount", l.dropped_attributes_count);
    o.u32("flags", l.flags);
    if !l.trace_id.is_empty() {
        o.key("traceId");
        hex(o.out, &l.trace_id);
    }
    if !l.span_id.is_empty() {
        o.key("spanId");
        hex(o.out, &l.span_id);
    }
    o.str("eventName", &l.event_name);
    o.close();
}

/// A JSON object being written: remembers whether a comma is due.
struct Obj<'a> {
    out: &'a mut String,
    first: bool,
}

impl<'a> Obj<'a> {
    fn open(out: &'a mut String) -> Self {
        out.push('{');
        Obj { out, first: true }
    }

    fn close(self) {
        self.out.push('}');
    }

    fn key(&mut self, k: &str) {
        if !self.first {
            self.out.push(',');
        }
        self.first = false;
        self.out.push('"');
        self.out.push_str(k);
        self.out.push_str("\":");
    }

    fn str(&mut self, k: &str, v: &str) {
        if !v.is_empty() {
            self.key(k);
            string(self.out, v);
        }
    }

    fn u32(&mut self, k: &str, v: u32) {
        if v != 0 {
            self.key(k);
            let _ = write!(self.out, "{v}");
        }
    }

    fn i32(&mut self, k: &str, v: i32) {
        if v != 0 {
            self.key(k);
            let _ = write!(self.out, "{v}");
        }
    }

    fn u64(&mut self, k: &str, v: u64) {
        if v != 0 {
            self.key(k);
            let _ = write!(self.out, "\"{v}\"");
        }
    }

    fn bool(&mut self, k: &str, v: bool) {
        if v {
            self.key(k);
            self.out.push_str("true");
        }
    }

    fn f64(&mut self, k: &str, v: f64) {
        // -0.0 is not the default in proto3 JSON's eyes either way; write it only when non-zero.
        if v != 0.0 || v.is_sign_negative() || v.is_nan() {
            self.key(k);
            double(self.out, v);
        }
    }

    /// An `optional double` or a oneof double: written whenever set.
    fn f64_set(&mut self, k: &str, v: Option<f64>) {
        if let Some(v) = v {
            self.key(k);
            double(self.out, v);
        }
    }

    fn list<T>(&mut self, k: &str, items: &[T], mut each: impl FnMut(&mut String, &T)) {
        if items.is_empty() {
            return;
        }
        self.key(k);
        self.out.push('[');
        for (i, item) in items.iter().enumerate() {
            if i > 0 {
                self.out.push(',');
            }
            each(self.out, item);
        }
        self.out.push(']');
    }

    fn attrs(&mut self, k: &str, kvs: &[KeyValue]) {
        self.list(k, kvs, key_value);
    }
}

fn string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

fn double(out: &mut String, v: f64) {
    if v.is_nan() {
        out.push_str("\"NaN\"");
    } else if v.is_infinite() {
        out.push_str(if v > 0.0 {
            "\"Infinity\""
        } else {
            "\"-Infinity\""
        });
    } else {
        // Rust's shortest round-trip form; JSON needs no exponent marker beyond what it prints.
        let _ = write!(out, "{v:?}");
    }
}

fn base64(out: &mut String, bytes: &[u8]) {
    out.push('"');
    base64_into(out, bytes);
    out.push('"');
}

/// Standard base64 with padding (RFC 4648, section 4), appended to `out`.
pub(crate) fn base64_into(out: &mut String, bytes: &[u8]) {
    const ABC: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ABC[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
}

fn hex(out: &mut String, bytes: &[u8]) {
    out.push('"');
    for b in bytes {
        let _ = write!(out, "{b:02x}");
    }
    out.push('"');
}

fn resource(out: &mut String, r: &Resource) {
    let mut o = Obj::open(out);
    o.attrs("attributes", &r.attributes);
    o.u32("droppedAttributesCount", r.dropped_attributes_count);
    o.list("entityRefs", &r.entity_refs, entity_ref);
    o.close();
}

fn entity_ref(out: &mut String, e: &EntityRef) {
    let mut o = Obj::open(out);
    o.str("schemaUrl", &e.schema_url);
    o.str("type", &e.r#type);
    o.list("idKeys", &e.id_keys, |out, k| string(out, k));
    o.list("descriptionKeys", &e.description_keys, |out, k| {
        string(out, k)
    });
    o.close();
}

fn scope(out: &mut String, s: &InstrumentationScope) {
    let mut o = Obj::open(out);
    o.str("name", &s.name);
    o.str("version", &s.version);
    o.attrs("attributes", &s.attributes);
    o.u32("droppedAttributesCount", s.dropped_attributes_count);
    o.close();
}

fn key_value(out: &mut String, kv: &KeyValue) {
    let mut o = Obj::open(out);
    o.str("key", &kv.key);
    if let Some(v) = &kv.value {
        o.key("value");
        any_value(o.out, v);
    }
    o.i32("keyStrindex", kv.key_strindex);
    o.close();
}

fn any_value(out: &mut String, v: &AnyValue) {
    use any_value::Value;
    let mut o = Obj::open(out);
    match &v.value {
        None => {}
        Some(Value::StringValue(s)) => {
            o.key("stringValue");
            string(o.out, s);
        }
        Some(Value::BoolValue(b)) => {
            o.key("boolValue");
            o.out.push_str(if *b { "true" } else { "false" });
        }
        Some(Value::IntValue(i)) => {
            o.key("intValue");
            let _ = write!(o.out, "\"{i}\"");
        }
        Some(Value::DoubleValue(d)) => o.f64_set("doubleValue", Some(*d)),
        Some(Value::ArrayValue(a)) => {
            o.key("arrayValue");
            let mut inner = Obj::open(o.out);
            inner.list("values", &a.values, any_value);
            inner.close();
        }
        Some(Value::KvlistValue(l)) => {
            o.key("kvlistValue");
            let mut inner = Obj::open(o.out);
            inner.attrs("values", &l.values);
            inner.close();
        }
        Some(Value::BytesValue(b)) => {
            o.key("bytesValue");
            base64(o.out, b);
        }
        Some(Value::StringValueStrindex(i)) => {
            o.key("stringValueStrindex");
            let _ = write!(o.out, "{i}");
        }
    }
    o.close();
}

fn metric(out: &mut String, m: &Metric) {
    use metric::Data;
    let mut o = Obj::open(out);
    o.str("name", &m.name);
    o.str("description", &m.description);
    o.str("unit", &m.unit);
    o.attrs("metadata", &m.metadata);
    match &m.data {
        None => {}
        Some(Data::Gauge(g)) => {
            o.key("gauge");
            let mut d = Obj::open(o.out);
            d.list("dataPoints", &g.data_points, number_point);
            d.close();
        }
        Some(Data::Sum(s)) => {
            o.key("sum");
            let mut d = Obj::open(o.out);
            d.list("dataPoints", &s.data_points, number_point);
            d.i32("aggregationTemporality", s.aggregation_temporality);
            d.bool("isMonotonic", s.is_monotonic);
            d.close();
        }
        Some(Data::Histogram(h)) => {
            o.key("histogram");
            let mut d = Obj::open(o.out);
            d.list("dataPoints", &h.data_points, histogram_point);
            d.i32("aggregationTemporality", h.aggregation_temporality);
            d.close();
        }
        Some(Data::ExponentialHistogram(h)) => {
            o.key("exponentialHistogram");
            let mut d = Obj::open(o.out);
            d.list("dataPoints", &h.data_points, exp_histogram_point);
            d.i32("aggregationTemporality", h.aggregation_temporality);
            d.close();
        }
        Some(Data::Summary(s)) => {
            o.key("summary");
            let mut d = Obj::open(o.out);
            d.list("dataPoints", &s.data_points, summary_point);
            d.close();
        }
    }
    o.close();
}

fn number_point(out: &mut String, p: &NumberDataPoint) {
    let mut o = Obj::open(out);
    o.attrs("attributes", &p.attributes);
    o.u64("startTimeUnixNano", p.start_time_unix_nano);
    o.u64("timeUnixNano", p.time_unix_nano);
    match p.value {
        None => {}
        Some(number_data_point::Value::AsDouble(v)) => o.f64_set("asDouble", Some(v)),
        Some(number_data_point::Value::AsInt(v)) => {
            o.key("asInt");
            let _ = write!(o.out, "\"{v}\"");
        }
    }
    o.list("exemplars", &p.exemplars, exemplar);
    o.u32("flags", p.flags);
    o.close();
}

fn histogram_point(out: &mut String, p: &HistogramDataPoint) {
    let mut o = Obj::open(out);
    o.attrs("attributes", &p.attributes);
    o.u64("startTimeUnixNano", p.start_time_unix_nano);
    o.u64("timeUnixNano", p.time_unix_nano);
    o.u64("count", p.count);
    o.f64_set("sum", p.sum);
    o.list("bucketCounts", &p.bucket_counts, |out, c| {
        let _ = write!(out, "\"{c}\"");
    });
    o.list("explicitBounds", &p.explicit_bounds, |out, b| {
        double(out, *b)
    });
    o.list("exemplars", &p.exemplars, exemplar);
    o.u32("flags", p.flags);
    o.f64_set("min", p.min);
    o.f64_set("max", p.max);
    o.close();
}

fn buckets(out: &mut String, b: &Buckets) {
    let mut o = Obj::open(out);
    o.i32("offset", b.offset);
    o.list("bucketCounts", &b.bucket_counts, |out, c| {
        let _ = write!(out, "\"{c}\"");
    });
    o.close();
}

fn exp_histogram_point(out: &mut String, p: &ExponentialHistogramDataPoint) {
    let mut o = Obj::open(out);
    o.attrs("attributes", &p.attributes);
    o.u64("startTimeUnixNano", p.start_time_unix_nano);
    o.u64("timeUnixNano", p.time_unix_nano);
    o.u64("count", p.count);
    o.f64_set("sum", p.sum);
    o.i32("scale", p.scale);
    o.u64("zeroCount", p.zero_count);
    if let Some(b) = &p.positive {
        o.key("positive");
        buckets(o.out, b);
    }
    if let Some(b) = &p.negative {
        o.key("negative");
        buckets(o.out, b);
    }
    o.u32("flags", p.flags);
    o.list("exemplars", &p.exemplars, exemplar);
    o.f64_set("min", p.min);
    o.f64_set("max", p.max);
    o.f64("zeroThreshold", p.zero_threshold);
    o.close();
}

fn summary_point(out: &mut String, p: &SummaryDataPoint) {
    let mut o = Obj::open(out);
    o.attrs("attributes", &p.attributes);
    o.u64("startTimeUnixNano", p.start_time_unix_nano);
    o.u64("timeUnixNano", p.time_unix_nano);
    o.u64("count", p.count);
    o.f64("sum", p.sum);
    o.list("quantileValues", &p.quantile_values, |out, q| {
        let mut o = Obj::open(out);
        o.f64("quantile", q.quantile);
        o.f64("value", q.value);
        o.close();
    });
    o.u32("flags", p.flags);
    o.close();
}

fn exemplar(out: &mut String, e: &Exemplar) {
    let mut o = Obj::open(out);
    o.attrs("filteredAttributes", &e.filtered_attributes);
    o.u64("timeUnixNano", e.time_unix_nano);
    match e.value {
        None => {}
        Some(exemplar::Value::AsDouble(v)) => o.f64_set("asDouble", Some(v)),
        Some(exemplar::Value::AsInt(v)) => {
            o.key("asInt");
            let _ = write!(o.out, "\"{v}\"");
        }
    }
    if !e.span_id.is_empty() {
        o.key("spanId");
        hex(o.out, &e.span_id);
    }
    if !e.trace_id.is_empty() {
        o.key("traceId");
        hex(o.out, &e.trace_id);
    }
    o.close();
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::common::v1::{ArrayValue, KeyValueList};
    use opentelemetry_proto::tonic::metrics::v1::{
        Gauge, ResourceMetrics, ScopeMetrics, Sum, Summary, summary_data_point::ValueAtQuantile,
    };

    fn kv(k: &str, v: any_value::Value) -> KeyValue {
        KeyValue {
            key: k.into(),
            value: Some(AnyValue { value: Some(v) }),
            ..Default::default()
        }
    }

    fn json(req: &ExportMetricsServiceRequest) -> serde_json::Value {
        let mut s = String::new();
        write_request(req, &mut s);
        serde_json::from_str(&s).unwrap_or_else(|e| panic!("{e}: {s}"))
    }

    #[test]
    fn defaults_are_omitted_and_set_oneofs_kept() {
        let req = ExportMetricsServiceRequest {
            resource_metrics: vec![ResourceMetrics {
                resource: Some(Resource::default()),
                scope_metrics: vec![ScopeMetrics {
                    scope: Some(InstrumentationScope {
                        name: "s".into(),
                        ..Default::default()
                    }),
                    metrics: vec![
                        Metric {
                            name: "g".into(),
                            data: Some(metric::Data::Gauge(Gauge {
                                data_points: vec![NumberDataPoint {
                                    time_unix_nano: 5,
                                    value: Some(number_data_point::Value::AsDouble(0.0)),
                                    ..Default::default()
                                }],
                            })),
                            ..Default::default()
                        },
                        Metric {
                            name: "c".into(),
                            unit: "By".into(),
                            data: Some(metric::Data::Sum(Sum {
                                data_points: vec![NumberDataPoint {
                                    attributes: vec![
                                        kv("s", any_value::Value::StringValue(String::new())),
                                        kv("i", any_value::Value::IntValue(0)),
                                        kv("b", any_value::Value::BoolValue(false)),
                                        kv("d", any_value::Value::DoubleValue(f64::NAN)),
                                        kv("x", any_value::Value::BytesValue(b"hi!?".to_vec())),
                                        kv(
                                            "a",
                                            any_value::Value::ArrayValue(ArrayValue {
                                                values: vec![],
                                            }),
                                        ),
                                        kv(
                                            "l",
                                            any_value::Value::KvlistValue(KeyValueList {
                                                values: vec![kv(
                                                    "q\"\n",
                                                    any_value::Value::StringValue("v".into()),
                                                )],
                                            }),
                                        ),
                                    ],
                                    value: Some(number_data_point::Value::AsInt(-7)),
                                    start_time_unix_nano: u64::MAX,
                                    ..Default::default()
                                }],
                                aggregation_temporality: 2,
                                is_monotonic: true,
                            })),
                            ..Default::default()
                        },
                        Metric {
                            name: "q".into(),
                            data: Some(metric::Data::Summary(Summary {
                                data_points: vec![SummaryDataPoint {
                                    sum: f64::INFINITY,
                                    quantile_values: vec![ValueAtQuantile {
                                        quantile: 0.0,
                                        value: 1.5,
                                    }],
                                    ..Default::default()
                                }],
                            })),
                            ..Default::default()
                        },
                    ],
                    schema_url: String::new(),
                }],
                schema_url: String::new(),
            }],
        };
        let v = json(&req);
        let expected = serde_json::json!({"resourceMetrics": [{
            "resource": {},
            "scopeMetrics": [{
                "scope": {"name": "s"},
                "metrics": [
                    {"name": "g", "gauge": {"dataPoints": [{"timeUnixNano": "5", "asDouble": 0.0}]}},
                    {"name": "c", "unit": "By", "sum": {"dataPoints": [{
                        "attributes": [
                            {"key": "s", "value": {"stringValue": ""}},
                            {"key": "i", "value": {"intValue": "0"}},
                            {"key": "b", "value": {"boolValue": false}},
                            {"key": "d", "value": {"doubleValue": "NaN"}},
                            {"key": "x", "value": {"bytesValue": "aGkhPw=="}},
                            {"key": "a", "value": {"arrayValue": {}}},
                            {"key": "l", "value": {"kvlistValue": {"values": [
                                {"key": "q\"\n", "value": {"stringValue": "v"}}]}}}
                        ],
                        "startTimeUnixNano": "18446744073709551615",
                        "asInt": "-7"
                    }], "aggregationTemporality": 2, "isMonotonic": true}},
                    {"name": "q", "summary": {"dataPoints": [{
                        "sum": "Infinity", "quantileValues": [{"value": 1.5}]}]}}
                ]
            }]
        }]});
        assert_eq!(v, expected);
    }

    #[test]
    fn logs_are_written_the_same_way() {
        use opentelemetry_proto::tonic::logs::v1::{ResourceLogs, ScopeLogs};
        let req = ExportLogsServiceRequest {
            resource_logs: vec![ResourceLogs {
                resource: Some(Resource {
                    attributes: vec![kv("host.name", any_value::Value::StringValue("n".into()))],
                    ..Default::default()
                }),
                scope_logs: vec![ScopeLogs {
                    scope: None,
                    log_records: vec![
                        LogRecord {
                            time_unix_nano: 7,
                            observed_time_unix_nano: 8,
                            severity_number: 9,
                            severity_text: "INFO".into(),
                            body: Some(AnyValue {
                                value: Some(any_value::Value::StringValue("a\"line\u{1}".into())),
                            }),
                            attributes: vec![kv(
                                "log.iostream",
                                any_value::Value::StringValue("stdout".into()),
                            )],
                            trace_id: vec![0xab; 16],
                            ..Default::default()
                        },
                        LogRecord::default(),
                    ],
                    schema_url: String::new(),
                }],
                schema_url: String::new(),
            }],
        };
        let mut s = String::new();
        write_logs_request(&req, &mut s);
        let v: serde_json::Value = serde_json::from_str(&s).unwrap_or_else(|e| panic!("{e}: {s}"));
        let expected = serde_json::json!({"resourceLogs": [{
            "resource": {"attributes": [{"key": "host.name", "value": {"stringValue": "n"}}]},
            "scopeLogs": [{"logRecords": [
                {
                    "timeUnixNano": "7",
                    "observedTimeUnixNano": "8",
                    "severityNumber": 9,
                    "severityText": "INFO",
                    "body": {"stringValue": "a\"line\u{1}"},
                    "attributes": [{"key": "log.iostream", "value": {"stringValue": "stdout"}}],
                    "traceId": "abababababababababababababababab"
                },
                {}
            ]}]
        }]});
        assert_eq!(v, expected);
    }

    #[test]
    fn base64_matches_the_standard_alphabet_and_padding() {
        for (raw, enc) in [
            (&b""[..], ""),
            (b"f", "Zg=="),
            (b"fo", "Zm8="),
            (b"foo", "Zm9v"),
            (b"\xff\xfe\xfd\xfc", "//79/A=="),
        ] {
            let mut s = String::new();
            base64(&mut s, raw);
            assert_eq!(s, format!("\"{enc}\""));
        }
    }
}
