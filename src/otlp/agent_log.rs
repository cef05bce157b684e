//! The agent's own log lines as OTLP log records (setting `log_export`): with a thousand nodes
//! nobody reads each node's journal, so the agent's warnings travel with its telemetry.
//!
//! One Resource (the node's, as on every metric) and one record per event: the event's time,
//! the OpenTelemetry severity of its level, the message as the body, and its fields as
//! attributes, with the emitting module as `code.namespace` (the semantic conventions' key).

use crate::otlp::builder::kv;
use crate::otlp::logs::{log_record, resource_logs};
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::logs::v1::{LogRecord, SeverityNumber};

/// One event of the agent's own log.
#[derive(Debug, Clone, PartialEq)]
pub struct AgentRecord {
    /// Unix ns.
    pub time: u64,
    pub level: tracing::Level,
    /// The module that logged it (`node_agent::export::lane`).
    pub target: String,
    pub message: String,
    /// The event's other fields, as text.
    pub fields: Vec<(String, String)>,
}

/// The OpenTelemetry severity of a tracing level.
fn severity(level: tracing::Level) -> (SeverityNumber, &'static str) {
    match level {
        tracing::Level::ERROR => (SeverityNumber::Error, "ERROR"),
        tracing::Level::WARN => (SeverityNumber::Warn, "WARN"),
        tracing::Level::INFO => (SeverityNumber::Info, "INFO"),
        tracing::Level::DEBUG => (SeverityNumber::Debug, "DEBUG"),
        tracing::Level::TRACE => (SeverityNumber::Trace, "TRACE"),
    }
}

fn record(r: AgentRecord, observed: u64) -> LogRecord {
    let (number, text) = severity(r.level);
    let mut attributes: Vec<KeyValue> = Vec::with_capacity(r.fields.len() + 1);
    attributes.push(kv("code.namespace", r.target));
    attributes.extend(r.fields.into_iter().map(|(k, v)| kv(&k, v)));
    log_record(
        r.time,
        observed,
        (number as i32, text),
        r.message,
        attributes,
    )
}

/// One request for a batch of the agent's own records, under the node's Resource.
pub(crate) fn request(
    node: Vec<KeyValue>,
    records: Vec<AgentRecord>,
    observed: u64,
) -> ExportLogsServiceRequest {
    ExportLogsServiceRequest {
        resource_logs: vec![resource_logs(
            node,
            records.into_iter().map(|r| record(r, observed)).collect(),
        )],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn severity_body_and_fields() {
        let r = AgentRecord {
            time: 5,
            level: tracing::Level::WARN,
            target: "node_agent::export::lane".into(),
            message: "batches dropped".into(),
            fields: vec![("signal".into(), "logs".into())],
        };
        let req = request(vec![kv("service.name", "node-agent")], vec![r], 7);
        let rl = &req.resource_logs[0];
        let rec = &rl.scope_logs[0].log_records[0];
        assert_eq!(rec.severity_number, SeverityNumber::Warn as i32);
        assert_eq!(rec.severity_text, "WARN");
        assert_eq!((rec.time_unix_nano, rec.observed_time_unix_nano), (5, 7));
        let keys: Vec<&str> = rec.attributes.iter().map(|a| a.key.as_str()).collect();
        assert_eq!(keys, ["code.namespace", "signal"]);
        assert_eq!(
            rl.resource.as_ref().unwrap().attributes[0].key,
            "service.name"
        );
    }
}
