//! Delivery: an owned FIFO of encoded OTLP requests and the sender task that drains it.
//!
//! Samplers hand each finished request to [`Exporter::enqueue`], which never waits on the
//! network. The sender task delivers batches strictly in order, retries what the OTLP
//! specification calls retryable with exponential backoff and jitter, and counts (and logs with
//! the reason) what it must give up on. Past its memory budget the queue spills to a crash-safe
//! on-disk spool (`spool.rs`) that is replayed first after a restart. See `queue.rs` for the
//! ordering invariant and the bounds.

pub mod grpc;
pub mod http;
pub mod queue;
pub mod spool;

use crate::config::{ExportConfig, ExporterKind, Protocol};
use bytes::Bytes;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use prost::Message;
use std::time::Duration;

pub use queue::{ExportStats, Exporter, QueueConfig};

/// Why a send failed, and whether trying again can help.
#[derive(Debug, Clone)]
pub enum SendError {
    Retryable {
        reason: String,
        retry_after: Option<Duration>,
    },
    Permanent {
        reason: String,
    },
}

impl std::fmt::Display for SendError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SendError::Retryable { reason, .. } => write!(f, "{reason} (will retry)"),
            SendError::Permanent { reason } => write!(f, "{reason} (not retryable)"),
        }
    }
}

/// Where batches go.
pub enum Transport {
    Grpc(grpc::GrpcTransport),
    Http(http::HttpTransport),
    /// `OTEL_METRICS_EXPORTER=console`: one OTLP/JSON document per line on stdout.
    Console,
    /// `OTEL_METRICS_EXPORTER=none`: sampled, then discarded.
    Discard,
}

impl Transport {
    /// Must be called inside the Tokio runtime.
    pub fn new(cfg: &ExportConfig) -> Result<Self, String> {
        Ok(match cfg.exporter {
            ExporterKind::None => Transport::Discard,
            ExporterKind::Console => Transport::Console,
            ExporterKind::Otlp => match cfg.protocol {
                Protocol::Grpc => Transport::Grpc(grpc::GrpcTransport::new(cfg)?),
                Protocol::HttpProtobuf | Protocol::HttpJson => {
                    Transport::Http(http::HttpTransport::new(cfg)?)
                }
            },
        })
    }

    pub async fn send(&self, payload: Bytes) -> Result<(), SendError> {
        match self {
            Transport::Grpc(t) => t.send(payload).await,
            Transport::Http(t) => t.send(payload).await,
            Transport::Console => {
                let req = ExportMetricsServiceRequest::decode(payload).map_err(|e| {
                    SendError::Permanent {
                        reason: format!("invalid batch: {e}"),
                    }
                })?;
                let line = serde_json::to_string(&req).unwrap_or_default();
                use std::io::Write;
                let mut out = std::io::stdout().lock();
                let _ = writeln!(out, "{line}");
                let _ = out.flush();
                Ok(())
            }
            Transport::Discard => Ok(()),
        }
    }

    /// Whether the endpoint answers: an empty export request must be accepted.
    pub async fn probe(&self) -> Result<(), SendError> {
        match self {
            Transport::Grpc(_) | Transport::Http(_) => {
                self.send(Bytes::from(
                    ExportMetricsServiceRequest::default().encode_to_vec(),
                ))
                .await
            }
            _ => Ok(()),
        }
    }
}
