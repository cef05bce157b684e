//! Delivery: an owned FIFO of encoded OTLP requests and the sender task that drains it.
//!
//! Samplers hand each finished request to [`Exporter::enqueue`], which never waits on the
//! network. The sender task delivers batches strictly in order, retries what the OTLP
//! specification calls retryable with exponential backoff and jitter, and counts (and logs with
//! the reason) what it must give up on. Past its memory budget the queue spills to a crash-safe
//! on-disk spool (`spool.rs`) that is replayed first after a restart. See `queue.rs` for the
//! ordering invariant and the bounds.

mod config;
pub mod grpc;
pub mod http;
pub mod logs;
pub(crate) mod queue;
pub(crate) mod spool;

pub(crate) use config::{ExportConfig, ExporterKind, OtlpProtocol, TlsFiles};
pub use spool::FsyncPolicy;

use bytes::Bytes;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use prost::Message;
use std::time::Duration;

pub use queue::{ExportStats, Exporter, QueueConfig};

/// Why a send failed, and whether trying again can help.
#[derive(Debug, Clone, thiserror::Error)]
pub(crate) enum SendError {
    #[error("{reason} (will retry)")]
    Retryable {
        reason: String,
        retry_after: Option<Duration>,
    },
    #[error("{reason} (not retryable)")]
    Permanent { reason: String },
}

/// The exporter could not be set up from its configuration (exit code 2 at start).
#[derive(Debug, thiserror::Error)]
#[error("cannot set up the exporter: invalid {setting}: {reason}")]
pub struct SetupError {
    /// The setting at fault.
    pub setting: &'static str,
    pub reason: String,
}

impl SetupError {
    pub(crate) fn new(setting: &'static str, reason: String) -> Self {
        SetupError { setting, reason }
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
    pub fn new(cfg: &ExportConfig) -> Result<Self, SetupError> {
        Ok(match cfg.exporter {
            ExporterKind::None => Transport::Discard,
            ExporterKind::Console => Transport::Console,
            ExporterKind::Otlp => match cfg.protocol {
                OtlpProtocol::Grpc => Transport::Grpc(grpc::GrpcTransport::new(cfg)?),
                OtlpProtocol::HttpProtobuf | OtlpProtocol::HttpJson => {
                    Transport::Http(http::HttpTransport::new(cfg)?)
                }
            },
        })
    }

    pub(crate) async fn send(&self, payload: Bytes) -> Result<(), SendError> {
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
    pub(crate) async fn probe(&self) -> Result<(), SendError> {
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
