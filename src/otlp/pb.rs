//! Protobuf written straight into the request's bytes, for the part of a cycle that grows with
//! the number of containers (one `ResourceMetrics` per container, `metrics::containers`).
//!
//! Why not the message structs: building, encoding and dropping 14 points with their attributes
//! for every container was most of a cycle's user time at 100 containers (docs/benchmarks.md).
//! Here nothing is allocated per point, and better: a container's resource has the same bytes
//! from one cycle to the next except for its 8-byte numbers (times and values are `fixed64` /
//! `double`). So a container's attributes are written once ([`resource_bytes`]), its metrics once
//! per shape (which values are present) as a [`Skeleton`] with the offsets of those numbers,
//! shared by every container of that shape, and each cycle copies both and patches the numbers
//! in.
//!
//! The field numbers are those of `opentelemetry-proto`, in tag order as prost writes them; the
//! tests decode what is written here with prost and compare it, byte for byte, with the reference
//! encoding of the same messages.

use super::builder::{SCHEMA_URL, SCOPE_NAME, Value};
use opentelemetry_proto::tonic::metrics::v1::AggregationTemporality;

const LEN: u32 = 2;
const I64: u32 = 1;
const VARINT: u32 = 0;

fn varint_width(v: u64) -> usize {
    (64 - (v | 1).leading_zeros() as usize).div_ceil(7)
}

/// A protobuf writer on a byte buffer; `slots`, when given, receives the offset of every 8-byte
/// number written (kept right when a nested length is widened or narrowed).
pub(crate) struct Pb<'a> {
    pub(crate) buf: &'a mut Vec<u8>,
    pub(crate) slots: Option<&'a mut Vec<usize>>,
}

/// A nested message being written: where its length goes and how many bytes were kept for it.
#[must_use]
pub(crate) struct Open {
    at: usize,
    width: usize,
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

    fn bytes(&mut self, field: u32, v: &[u8]) {
        self.key(field, LEN);
        self.varint(v.len() as u64);
        self.buf.extend_from_slice(v);
    }

    /// A string field; proto3 leaves out an empty one.
    pub(crate) fn str(&mut self, field: u32, v: &str) {
        if !v.is_empty() {
            self.bytes(field, v.as_bytes());
        }
    }

    fn eight(&mut self, field: u32, v: [u8; 8]) {
        self.key(field, I64);
        if let Some(s) = &mut self.slots {
            s.push(self.buf.len());
        }
        self.buf.extend_from_slice(&v);
    }

    /// A `fixed64`; left out when 0.
    pub(crate) fn fixed64(&mut self, field: u32, v: u64) {
        if v != 0 {
            self.eight(field, v.to_le_bytes());
        }
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
        self.buf.extend_from_slice(&[0; 3][..guess]);
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
            if let Some(slots) = &mut self.slots {
                for s in slots.iter_mut().filter(|s| **s >= start) {
                    *s = *s + need - o.width;
                }
            }
        }
        let mut v = len as u64;
        for i in 0..need {
            let more = if i + 1 < need { 0x80 } else { 0 };
            self.buf[o.at + i] = (v as u8 & 0x7f) | more;
            v >>= 7;
        }
    }

    /// A `KeyValue` with a string value (its exact length is known: no shifting).
    pub(crate) fn kv(&mut self, field: u32, key: &str, value: &str) {
        let any = 1 + varint_width(value.len() as u64) + value.len();
        let kv = if key.is_empty() {
            0
        } else {
            1 + varint_width(key.len() as u64) + key.len()
        } + 1
            + varint_width(any as u64)
            + any;
        self.key(field, LEN);
        self.varint(kv as u64);
        self.str(1, key);
        self.key(2, LEN);
        self.varint(any as u64);
        // A oneof member: written even when empty.
        self.bytes(1, value.as_bytes());
    }
}

/// A point: value and at most one attribute (static text, so that its address names it).
pub(crate) type Point = (Value, Option<(&'static str, &'static str)>);

/// Where a resource's metrics go: written out (a template), or only their numbers and shape
/// collected (to patch a template of the same shape).
pub(crate) enum Sink<'p, 'b> {
    Write(&'p mut Pb<'b>, &'p mut u64),
    Collect {
        values: &'p mut Vec<u64>,
        shape: &'p mut u64,
    },
}

/// Folds one point into a shape hash: its metric, its attribute and which fields it has (static
/// texts, so their addresses name them).
fn fold(shape: &mut u64, name: &str, attr: Option<(&str, &str)>, flags: usize) {
    for w in [
        name.as_ptr() as u64,
        attr.map_or(0, |(_, v)| v.as_ptr() as u64),
        flags as u64,
    ] {
        *shape = (*shape ^ w).wrapping_mul(0x0000_0100_0000_01b3);
    }
}

/// The metrics of one resource: gauges and cumulative sums whose points carry at most one
/// attribute each. A metric without points is left out.
pub(crate) struct MetricWriter<'p, 'b> {
    pub(crate) sink: Sink<'p, 'b>,
    pub(crate) time: u64,
}

impl MetricWriter<'_, '_> {
    fn metric(
        &mut self,
        name: &'static str,
        unit: &str,
        description: &str,
        sum: Option<(bool, u64)>,
        points: impl IntoIterator<Item = Point>,
    ) {
        let time = self.time;
        let finite = points
            .into_iter()
            .filter(|(v, _)| !matches!(v, Value::Double(d) if !d.is_finite()));
        let start = sum.map_or(0, |(_, s)| s);
        match &mut self.sink {
            Sink::Collect { values, shape } => {
                for (v, attr) in finite {
                    fold(
                        shape,
                        name,
                        attr,
                        usize::from(start != 0) | usize::from(matches!(v, Value::Int(_))) << 1,
                    );
                    if start != 0 {
                        values.push(start);
                    }
                    values.push(time);
                    values.push(match v {
                        Value::Double(d) => d.to_bits(),
                        Value::Int(i) => i as u64,
                    });
                }
            }
            Sink::Write(pb, shape) => {
                let rollback = (
                    pb.buf.len(),
                    **shape,
                    pb.slots.as_ref().map_or(0, |s| s.len()),
                );
                let m = pb.open(2, 2);
                pb.str(1, name);
                pb.str(2, description);
                pb.str(3, unit);
                let data = pb.open(if sum.is_some() { 7 } else { 5 }, 2);
                let mut n = 0;
                for (v, attr) in finite {
                    n += 1;
                    fold(
                        shape,
                        name,
                        attr,
                        usize::from(start != 0) | usize::from(matches!(v, Value::Int(_))) << 1,
                    );
                    // Fields in tag order, as prost writes them.
                    let p = pb.open(1, 1);
                    pb.fixed64(2, start);
                    pb.eight(3, time.to_le_bytes());
                    match v {
                        Value::Double(d) => pb.eight(4, d.to_bits().to_le_bytes()),
                        Value::Int(i) => pb.eight(6, i.to_le_bytes()),
                    }
                    if let Some((k, val)) = attr {
                        pb.kv(7, k, val);
                    }
                    pb.close(p);
                }
                if let Some((monotonic, _)) = sum {
                    pb.uint(2, AggregationTemporality::Cumulative as u64);
                    pb.uint(3, u64::from(monotonic));
                }
                pb.close(data);
                pb.close(m);
                if n == 0 {
                    pb.buf.truncate(rollback.0);
                    **shape = rollback.1;
                    if let Some(s) = &mut pb.slots {
                        s.truncate(rollback.2);
                    }
                }
            }
        }
    }

    /// A gauge; same arguments as `MetricsBuilder::gauge`.
    pub(crate) fn gauge(
        &mut self,
        name: &'static str,
        unit: &str,
        description: &str,
        points: impl IntoIterator<Item = Point>,
    ) {
        self.metric(name, unit, description, None, points);
    }

    /// A cumulative sum whose points all start at `start`; same arguments as
    /// `MetricsBuilder::sum`.
    pub(crate) fn sum(
        &mut self,
        name: &'static str,
        unit: &str,
        description: &str,
        monotonic: bool,
        start: u64,
        points: impl IntoIterator<Item = Point>,
    ) {
        self.metric(name, unit, description, Some((monotonic, start)), points);
    }
}

/// The shape hash of a resource with no points yet.
pub(crate) const SHAPE_SEED: u64 = 0xcbf2_9ce4_8422_2325;

/// A resource's attributes, written once: field 1 of its `ResourceMetrics`.
pub(crate) fn resource_bytes(attributes: impl FnOnce(&mut Pb)) -> Vec<u8> {
    let mut bytes = Vec::new();
    let mut pb = Pb {
        buf: &mut bytes,
        slots: None,
    };
    let res = pb.open(1, 2);
    attributes(&mut pb);
    pb.close(res);
    bytes.shrink_to_fit();
    bytes
}

/// The rest of a `ResourceMetrics` (its scope and metrics, and the schema URL) as written once
/// for one shape of metrics, with the offsets of its 8-byte numbers in the order
/// [`Sink::Collect`] lists them. Every container whose metrics have that shape shares it: only
/// the numbers differ.
#[derive(Debug, Default)]
pub(crate) struct Skeleton {
    bytes: Vec<u8>,
    slots: Vec<u32>,
    shape: u64,
}

impl Skeleton {
    pub(crate) fn write(time: u64, metrics: impl FnOnce(&mut MetricWriter)) -> Skeleton {
        let (mut bytes, mut slots, mut shape) = (Vec::new(), Vec::new(), SHAPE_SEED);
        {
            let mut pb = Pb {
                buf: &mut bytes,
                slots: Some(&mut slots),
            };
            let sm = pb.open(2, 2);
            let scope = pb.open(1, 1);
            pb.str(1, SCOPE_NAME);
            pb.str(2, env!("CARGO_PKG_VERSION"));
            pb.close(scope);
            metrics(&mut MetricWriter {
                sink: Sink::Write(&mut pb, &mut shape),
                time,
            });
            pb.str(3, SCHEMA_URL);
            pb.close(sm);
            pb.str(3, SCHEMA_URL);
        }
        bytes.shrink_to_fit();
        Skeleton {
            bytes,
            slots: slots.into_iter().map(|s| s as u32).collect(),
            shape,
        }
    }

    pub(crate) fn shape(&self) -> u64 {
        self.shape
    }

    /// Appends a `ResourceMetrics` (field 1 of the request) made of `resource` (from
    /// [`resource_bytes`]) and this skeleton with `values` in its slots, if `shape` is its shape.
    pub(crate) fn emit(
        &self,
        resource: &[u8],
        shape: u64,
        values: &[u64],
        buf: &mut Vec<u8>,
    ) -> bool {
        if shape != self.shape || values.len() != self.slots.len() {
            return false;
        }
        let mut pb = Pb { buf, slots: None };
        pb.key(1, LEN);
        pb.varint((resource.len() + self.bytes.len()) as u64);
        pb.buf.extend_from_slice(resource);
        let base = pb.buf.len();
        pb.buf.extend_from_slice(&self.bytes);
        for (&at, v) in self.slots.iter().zip(values) {
            let at = base + at as usize;
            pb.buf[at..at + 8].copy_from_slice(&v.to_le_bytes());
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::otlp::builder::{MetricsBuilder, kv};
    use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
    use prost::Message;

    fn metrics(w: &mut MetricWriter, g: f64, s: i64, start: u64) {
        w.gauge("g", "1", "", [(Value::Double(g), Some(("a", "b")))]);
        w.sum("s", "By", "d", true, start, [(Value::Int(s), None)]);
        w.gauge("empty", "1", "", [(Value::Double(f64::NAN), None)]);
    }

    fn reference(text: &str, time: u64, g: f64, s: i64, start: u64) -> ExportMetricsServiceRequest {
        let mut b = MetricsBuilder::new(time);
        b.gauge("g", "1", "", [(g, vec![kv("a", "b")])]);
        b.sum("s", "By", "d", true, [(s, start, vec![])]);
        b.into_request(&[kv("container.name", text)])
    }

    #[test]
    fn written_and_patched_bytes_are_the_reference_encoding() {
        for len in [0usize, 1, 127, 128, 300, 16_383, 16_384, 70_000] {
            let text = "x".repeat(len);
            let res = resource_bytes(|pb| pb.kv(1, "container.name", &text));
            let t = Skeleton::write(9, |w| metrics(w, 0.5, 7, 3));
            let mut buf = Vec::new();
            let (mut values, mut shape) = (Vec::new(), SHAPE_SEED);
            metrics(
                &mut MetricWriter {
                    sink: Sink::Collect {
                        values: &mut values,
                        shape: &mut shape,
                    },
                    time: 9,
                },
                0.5,
                7,
                3,
            );
            assert!(t.emit(&res, shape, &values, &mut buf));
            let want = reference(&text, 9, 0.5, 7, 3);
            assert_eq!(
                ExportMetricsServiceRequest::decode(buf.as_slice()).unwrap(),
                want,
                "length {len}"
            );
            assert_eq!(buf, want.encode_to_vec(), "length {len}");
            // Other numbers, same shape: patched.
            let (mut values, mut shape) = (Vec::new(), SHAPE_SEED);
            metrics(
                &mut MetricWriter {
                    sink: Sink::Collect {
                        values: &mut values,
                        shape: &mut shape,
                    },
                    time: 1_700_000_000_000_000_000,
                },
                -2.25,
                i64::MAX,
                5,
            );
            buf.clear();
            assert!(t.emit(&res, shape, &values, &mut buf));
            assert_eq!(
                buf,
                reference(&text, 1_700_000_000_000_000_000, -2.25, i64::MAX, 5).encode_to_vec()
            );
            // A start of 0 leaves a field out: another shape, not patched.
            let (mut values, mut shape) = (Vec::new(), SHAPE_SEED);
            metrics(
                &mut MetricWriter {
                    sink: Sink::Collect {
                        values: &mut values,
                        shape: &mut shape,
                    },
                    time: 9,
                },
                0.5,
                7,
                0,
            );
            assert!(!t.emit(&res, shape, &values, &mut buf));
        }
    }
}
