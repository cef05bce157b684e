//! The logs source's records to OTLP: one `LogRecord` per line, one Resource per container.
//!
//! Each container's records go under their own Resource: the node's resource attributes
//! (`service.*`, `host.*`, …) plus the container's identity (`container.id`, `container.name`,
//! `container.image.name`, and `pterodactyl.server.uuid`/`.name` for Wings servers), the same keys
//! the container metrics carry. That is the Collector's own shape for container telemetry
//! (`docker_stats`, `filelog` with the container operator) and the one the metrics move to: the
//! identity is written once per container per batch instead of on every line, and a backend can
//! join a server's console to its metrics on the resource. Per record: Docker's timestamp as
//! `time_unix_nano`, the time the line was read as `observed_time_unix_nano`, the line as a string
//! body (invalid UTF-8 replaced by U+FFFD), `log.iostream`, and for a line cut at the bound
//! `node_agent.log.truncated` = true with `node_agent.log.original_size` in bytes.

use crate::otlp::builder::{SCHEMA_URL, kv, kv_int, resource, scope};
use crate::sources::logs::Identity;
use crate::sources::logs::follow::Record;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};

/// Attribute keys.
pub const IOSTREAM: &str = "log.iostream";
pub const TRUNCATED: &str = "node_agent.log.truncated";
pub const ORIGINAL_SIZE: &str = "node_agent.log.original_size";

/// The container's identity as Resource attributes.
pub(crate) fn identity_attributes(who: &Identity) -> Vec<KeyValue> {
    let mut a = vec![
        kv("container.id", who.id.clone()),
        kv("container.name", who.name.clone()),
        kv("container.image.name", who.image.clone()),
    ];
    if let Some(u) = &who.server_uuid {
        a.push(kv("pterodactyl.server.uuid", u.clone()));
    }
    if let Some(n) = &who.server_name {
        a.push(kv("pterodactyl.server.name", n.clone()));
    }
    a
}

/// The bytes of a body as text: as is when valid UTF-8, else with U+FFFD for each bad sequence.
pub(crate) fn text(body: Vec<u8>) -> String {
    match String::from_utf8(body) {
        Ok(s) => s,
        Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
    }
}

/// One record for one line.
pub(crate) fn record(line: Record) -> LogRecord {
    let mut attributes = Vec::with_capacity(if line.cut > 0 { 3 } else { 1 });
    attributes.push(kv(IOSTREAM, line.stream.as_str()));
    if line.cut > 0 {
        attributes.push(KeyValue {
            key: TRUNCATED.into(),
            key_strindex: 0,
            value: Some(AnyValue {
                value: Some(any_value::Value::BoolValue(true)),
            }),
        });
        attributes.push(kv_int(
            ORIGINAL_SIZE,
            (line.body.len() as u64 + line.cut).min(i64::MAX as u64) as i64,
        ));
    }
    log_record(line.ts, line.observed, (0, ""), text(line.body), attributes)
}

/// A record with a string body and no trace context; `severity` is the OpenTelemetry number and
/// text (`(0, "")` when unknown, as for a console line).
pub(crate) fn log_record(
    time: u64,
    observed: u64,
    severity: (i32, &str),
    body: String,
    attributes: Vec<KeyValue>,
) -> LogRecord {
    LogRecord {
        time_unix_nano: time,
        observed_time_unix_nano: observed,
        severity_number: severity.0,
        severity_text: severity.1.to_string(),
        body: Some(AnyValue {
            value: Some(any_value::Value::StringValue(body)),
        }),
        attributes,
        dropped_attributes_count: 0,
        flags: 0,
        trace_id: Vec::new(),
        span_id: Vec::new(),
        event_name: String::new(),
    }
}

/// One Resource of these attributes holding these records, under the agent's scope.
pub(crate) fn resource_logs(
    attributes: Vec<KeyValue>,
    log_records: Vec<LogRecord>,
) -> ResourceLogs {
    ResourceLogs {
        resource: resource(attributes),
        scope_logs: vec![ScopeLogs {
            scope: scope(),
            log_records,
            schema_url: SCHEMA_URL.to_string(),
        }],
        schema_url: SCHEMA_URL.to_string(),
    }
}

/// A request with one Resource per container.
pub(crate) fn request(
    node: &[KeyValue],
    groups: Vec<(&Identity, Vec<Record>)>,
) -> ExportLogsServiceRequest {
    let resource_logs = groups
        .into_iter()
        .filter(|(_, r)| !r.is_empty())
        .map(|(who, records)| {
            let mut attributes = node.to_vec();
            attributes.extend(identity_attributes(who));
            resource_logs(attributes, records.into_iter().map(record).collect())
        })
        .collect();
    ExportLogsServiceRequest { resource_logs }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::otlp::attr_str;
    use crate::sources::logs::Stream;

    #[test]
    fn records_and_resources() {
        let line = Record {
            stream: Stream::Stderr,
            ts: 7,
            observed: 9,
            body: b"caf\xc3\xa9 \xff".to_vec(),
            cut: 5,
        };
        let r = record(line.clone());
        assert_eq!((r.time_unix_nano, r.observed_time_unix_nano), (7, 9));
        let body = attr_str(r.body.as_ref().unwrap());
        assert_eq!(body, "café \u{fffd}");
        let a: Vec<(String, String)> = r
            .attributes
            .iter()
            .map(|k| (k.key.clone(), attr_str(k.value.as_ref().unwrap())))
            .collect();
        assert_eq!(
            a,
            vec![
                (IOSTREAM.into(), "stderr".into()),
                (TRUNCATED.into(), "true".into()),
                (ORIGINAL_SIZE.into(), "12".into())
            ]
        );
        let who = Identity {
            id: "abc".into(),
            name: "u".into(),
            image: "img".into(),
            server_uuid: Some("u".into()),
            server_name: Some("Survival".into()),
        };
        let req = request(
            &[kv("host.name", "n1")],
            vec![(&who, vec![line]), (&who, vec![])],
        );
        assert_eq!(req.resource_logs.len(), 1);
        let keys: Vec<&str> = req.resource_logs[0]
            .resource
            .as_ref()
            .unwrap()
            .attributes
            .iter()
            .map(|k| k.key.as_str())
            .collect();
        assert_eq!(
            keys,
            [
                "host.name",
                "container.id",
                "container.name",
                "container.image.name",
                "pterodactyl.server.uuid",
                "pterodactyl.server.name"
            ]
        );
    }
}
