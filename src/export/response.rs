//! What a collector answers, read the same way for both transports: the OTLP
//! `ExportMetricsServiceResponse` or `ExportLogsServiceResponse` and its `partial_success`
//! (protobuf or JSON), and the
//! `google.rpc.Status` of a failure (an OTLP/HTTP error body, or gRPC's `grpc-status-details-bin`)
//! with its `RetryInfo`.
//!
//! Partial success (OTLP specification, "Partial Success"): the request was accepted, so it is
//! not retried, but the collector rejected `rejected_data_points` (logs: `rejected_log_records`)
//! of it and says why in `error_message` (or, with 0 rejected, sends a warning). The agent counts
//! the rejected items per lane (metrics: `node_agent.export.rejected`; both in `/readyz`) and
//! logs the message once per change, not once per request: a collector that rejects one metric
//! in every sample would otherwise log every few seconds.

use super::signal::Signal;
use crate::sys::text::{PEER_TEXT_MAX, peer_bytes, peer_text};
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceResponse;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceResponse;
use parking_lot::Mutex;
use prost::Message;
use std::time::Duration;

/// `google.rpc.Status`, as far as the agent reads it.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct RpcStatus {
    #[prost(int32, tag = "1")]
    pub(crate) code: i32,
    #[prost(string, tag = "2")]
    pub(crate) message: String,
    #[prost(message, repeated, tag = "3")]
    pub(crate) details: Vec<ProtoAny>,
}

/// `google.protobuf.Any`.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct ProtoAny {
    #[prost(string, tag = "1")]
    pub(crate) type_url: String,
    #[prost(bytes = "vec", tag = "2")]
    pub(crate) value: Vec<u8>,
}

/// `google.rpc.RetryInfo`.
#[derive(Clone, PartialEq, prost::Message)]
struct RetryInfo {
    #[prost(message, optional, tag = "1")]
    retry_delay: Option<ProtoDuration>,
}

/// `google.protobuf.Duration`.
#[derive(Clone, PartialEq, prost::Message)]
struct ProtoDuration {
    #[prost(int64, tag = "1")]
    seconds: i64,
    #[prost(int32, tag = "2")]
    nanos: i32,
}

const RETRY_INFO_TYPE: &str = "type.googleapis.com/google.rpc.RetryInfo";

impl RpcStatus {
    /// Whether the details carry a `RetryInfo` (for `RESOURCE_EXHAUSTED`: the server can recover).
    pub(crate) fn has_retry_info(&self) -> bool {
        self.details.iter().any(|d| d.type_url == RETRY_INFO_TYPE)
    }

    /// The `RetryInfo.retry_delay` among the details, when the server sent a positive one (a
    /// zero delay means "use your backoff", not "retry at once in a loop").
    pub(crate) fn retry_delay(&self) -> Option<Duration> {
        self.details
            .iter()
            .filter(|d| d.type_url == RETRY_INFO_TYPE)
            .find_map(|d| RetryInfo::decode(d.value.as_slice()).ok()?.retry_delay)
            .map(|d| {
                Duration::from_secs(d.seconds.max(0) as u64)
                    + Duration::from_nanos(d.nanos.clamp(0, 999_999_999) as u64)
            })
            .filter(|d| !d.is_zero())
    }
}

/// The collector's reason from an OTLP/HTTP error body (a prefix of it): the `message` of a
/// `google.rpc.Status` in protobuf or JSON, else the text itself. Capped and escaped.
pub(crate) fn error_body_reason(body: &[u8], content_type: &str) -> String {
    let message = if content_type.starts_with("application/x-protobuf") {
        RpcStatus::decode(body).ok().map(|s| s.message)
    } else if content_type.starts_with("application/json") {
        serde_json::from_slice::<serde_json::Value>(body)
            .ok()
            .and_then(|v| v.get("message")?.as_str().map(str::to_owned))
    } else {
        None
    };
    match message {
        Some(m) => peer_text(m.trim(), PEER_TEXT_MAX),
        None => peer_bytes(body.trim_ascii(), PEER_TEXT_MAX),
    }
}

/// `partial_success` of an accepted request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Partial {
    pub(crate) rejected: u64,
    /// Capped and escaped.
    pub(crate) message: String,
}

/// The `partial_success` of a `signal`'s OTLP response body, protobuf or JSON; `None` when the
/// response has none (full success) or cannot be read (an empty or non-OTLP 2xx body counts as
/// success).
pub(crate) fn partial_success(signal: Signal, body: &[u8], json: bool) -> Option<Partial> {
    let (rejected, message) = if json {
        let v: serde_json::Value = serde_json::from_slice(body).ok()?;
        let p = v.get("partialSuccess")?;
        let key = match signal {
            Signal::Metrics => "rejectedDataPoints",
            Signal::Logs => "rejectedLogRecords",
        };
        let rejected = match p.get(key) {
            Some(serde_json::Value::String(s)) => s.parse::<i64>().ok()?,
            Some(n) => n.as_i64()?,
            None => 0,
        };
        let message = p.get("errorMessage").and_then(|m| m.as_str()).unwrap_or("");
        (rejected, message.to_owned())
    } else {
        match signal {
            Signal::Metrics => {
                let p = ExportMetricsServiceResponse::decode(body)
                    .ok()?
                    .partial_success?;
                (p.rejected_data_points, p.error_message)
            }
            Signal::Logs => {
                let p = ExportLogsServiceResponse::decode(body)
                    .ok()?
                    .partial_success?;
                (p.rejected_log_records, p.error_message)
            }
        }
    };
    if rejected <= 0 && message.is_empty() {
        return None;
    }
    Some(Partial {
        rejected: rejected.max(0) as u64,
        message: peer_text(message.trim(), PEER_TEXT_MAX),
    })
}

/// Logs partial successes once per change of what the collector says.
#[derive(Debug, Default)]
pub(crate) struct PartialLog {
    /// What was last logged: whether points were rejected, and the message.
    last: Mutex<Option<(bool, String)>>,
}

impl PartialLog {
    /// Notes the outcome of one accepted request of `signal`; returns the number of rejected
    /// items (points or log records).
    pub(crate) fn note(&self, signal: Signal, endpoint: &str, partial: Option<Partial>) -> u64 {
        let mut last = self.last.lock();
        let signal = signal.name();
        let Some(p) = partial else {
            if let Some((true, _)) = last.take() {
                tracing::info!(%endpoint, %signal, "collector accepts every item again");
            }
            return 0;
        };
        let key = (p.rejected > 0, p.message.clone());
        if last.as_ref() != Some(&key) {
            if p.rejected > 0 {
                tracing::warn!(
                    %endpoint,
                    %signal,
                    rejected = p.rejected,
                    collector_message = %p.message,
                    "collector rejected points of an accepted request (partial success; not retried, counted in node_agent.export.rejected; logged again only when the message changes)"
                );
            } else {
                tracing::info!(%endpoint, %signal, collector_message = %p.message, "collector accepted the request with a warning");
            }
            *last = Some(key);
        }
        p.rejected
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsPartialSuccess;

    #[test]
    fn partial_success_in_protobuf_and_json() {
        let body = ExportMetricsServiceResponse {
            partial_success: Some(ExportMetricsPartialSuccess {
                rejected_data_points: 3,
                error_message: "bad\nname".into(),
            }),
        }
        .encode_to_vec();
        let want = Partial {
            rejected: 3,
            message: "bad\\nname".into(),
        };
        assert_eq!(
            partial_success(Signal::Metrics, &body, false),
            Some(want.clone())
        );
        let json = br#"{"partialSuccess":{"rejectedDataPoints":"3","errorMessage":"bad\nname"}}"#;
        assert_eq!(
            partial_success(Signal::Metrics, json, true),
            Some(want.clone())
        );
        let json = br#"{"partialSuccess":{"rejectedDataPoints":3,"errorMessage":"bad\nname"}}"#;
        assert_eq!(partial_success(Signal::Metrics, json, true), Some(want));
        // Full success: no partial_success, an empty one, an empty or foreign body.
        assert_eq!(partial_success(Signal::Metrics, &[], false), None);
        assert_eq!(partial_success(Signal::Metrics, b"{}", true), None);
        assert_eq!(
            partial_success(Signal::Metrics, br#"{"partialSuccess":{}}"#, true),
            None
        );
        assert_eq!(partial_success(Signal::Metrics, b"ok", true), None);
    }

    #[test]
    fn logs_partial_success_counts_log_records() {
        use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsPartialSuccess;
        let body = ExportLogsServiceResponse {
            partial_success: Some(ExportLogsPartialSuccess {
                rejected_log_records: 4,
                error_message: "too old".into(),
            }),
        }
        .encode_to_vec();
        let want = Partial {
            rejected: 4,
            message: "too old".into(),
        };
        assert_eq!(
            partial_success(Signal::Logs, &body, false),
            Some(want.clone())
        );
        let json = br#"{"partialSuccess":{"rejectedLogRecords":"4","errorMessage":"too old"}}"#;
        assert_eq!(partial_success(Signal::Logs, json, true), Some(want));
        // The metrics key does not count log records.
        let json = br#"{"partialSuccess":{"rejectedDataPoints":"4"}}"#;
        assert_eq!(partial_success(Signal::Logs, json, true), None);
    }

    #[test]
    fn retry_info_is_found_among_the_details() {
        let retry = RetryInfo {
            retry_delay: Some(ProtoDuration {
                seconds: 2,
                nanos: 500_000_000,
            }),
        };
        let status = RpcStatus {
            code: 8,
            message: "slow down".into(),
            details: vec![
                ProtoAny {
                    type_url: "type.googleapis.com/google.rpc.BadRequest".into(),
                    value: vec![1, 2, 3],
                },
                ProtoAny {
                    type_url: RETRY_INFO_TYPE.into(),
                    value: retry.encode_to_vec(),
                },
            ],
        };
        let decoded = RpcStatus::decode(status.encode_to_vec().as_slice()).unwrap();
        assert_eq!(decoded.retry_delay(), Some(Duration::from_millis(2500)));
        assert_eq!(RpcStatus::default().retry_delay(), None);
    }

    #[test]
    fn hostile_bytes_never_panic_and_stay_capped() {
        let mut rng = fastrand::Rng::with_seed(17);
        let seeds: [&[u8]; 4] = [
            br#"{"partialSuccess":{"rejectedDataPoints":"-9223372036854775808","errorMessage":"x"}}"#,
            br#"{"message":"a","code":99999999999}"#,
            &[0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f, 0x08],
            &[0x1a, 0x05, 0x0a, 0x03, b'a', b'b', b'c'],
        ];
        for i in 0..20_000 {
            let mut b: Vec<u8> = if i % 2 == 0 {
                seeds[i % seeds.len()].to_vec()
            } else {
                (0..rng.usize(0..300)).map(|_| rng.u8(..)).collect()
            };
            for _ in 0..rng.usize(0..4) {
                if !b.is_empty() {
                    let at = rng.usize(..b.len());
                    b[at] = rng.u8(..);
                }
            }
            for json in [false, true] {
                for signal in Signal::ALL {
                    if let Some(p) = partial_success(signal, &b, json) {
                        assert!(p.message.chars().count() < PEER_TEXT_MAX + 30);
                    }
                }
            }
            for ct in ["application/x-protobuf", "application/json", "text/plain"] {
                let r = error_body_reason(&b, ct);
                assert!(r.chars().count() < PEER_TEXT_MAX + 30 && !r.contains('\n'));
            }
            if let Ok(s) = RpcStatus::decode(b.as_slice()) {
                let _ = s.retry_delay();
            }
        }
    }

    #[test]
    fn error_bodies_give_the_status_message_or_the_escaped_text() {
        let status = RpcStatus {
            message: "quota\r\nexceeded".into(),
            ..Default::default()
        };
        assert_eq!(
            error_body_reason(&status.encode_to_vec(), "application/x-protobuf"),
            "quota\\r\\nexceeded"
        );
        assert_eq!(
            error_body_reason(br#"{"code":3,"message":"no"}"#, "application/json"),
            "no"
        );
        assert_eq!(
            error_body_reason(b"  <html>\x1b[2J</html>\n", "text/html"),
            "<html>\\u{1b}[2J</html>"
        );
    }
}
