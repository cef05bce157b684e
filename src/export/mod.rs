//! Delivery: an owned FIFO of encoded OTLP requests and the sender task that drains it.
//!
//! Samplers hand each finished request to [`Exporter::enqueue`], which never waits on the
//! network. The sender task delivers batches strictly in order, retries what the OTLP
//! specification calls retryable with exponential backoff and jitter, and counts (and logs with
//! the reason) what it must give up on. Past its memory budget the queue spills to a crash-safe
//! on-disk spool (`spool.rs`) that is replayed first after a restart. See `queue.rs` for the
//! ordering invariant and the bounds.
//!
//! The transports (`http.rs`, `grpc.rs`, `console.rs`) send one request and classify the answer
//! as the OTLP specification says: accepted (with the points a partial success rejected),
//! retryable (with the server's delay), or not. What a collector answers is read in
//! `response.rs`, OTLP/JSON is written by `json.rs`, gzip by `gzip.rs`; docs/export.md has the
//! whole picture.

mod config;
mod console;
pub mod grpc;
mod gzip;
pub mod http;
mod json;
pub mod logs;
pub(crate) mod queue;
mod response;
pub(crate) mod spool;

pub(crate) use config::{
    ConsoleFormat, ExportConfig, ExporterKind, OtlpProtocol, TlsFiles, basic_auth,
};
pub use spool::FsyncPolicy;

use bytes::Bytes;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use prost::Message;
use std::time::Duration;

pub use queue::{ExportStats, Exporter, QueueConfig};

/// A request the endpoint accepted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Accepted {
    /// Data points the collector rejected inside the accepted request (OTLP partial success):
    /// not retried, counted.
    pub(crate) rejected: u64,
}

/// Why a send failed, and whether trying again can help. The reason may reach the log and
/// `/readyz`: whatever a peer put in it is already capped and escaped.
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
    Http(Box<http::HttpTransport>),
    /// `OTEL_METRICS_EXPORTER=console`: a readable listing, or OTLP/JSON lines, on stdout.
    Console(console::Console),
    /// `OTEL_METRICS_EXPORTER=none`: sampled, then discarded.
    Discard,
}

impl Transport {
    /// Must be called inside the Tokio runtime.
    pub fn new(cfg: &ExportConfig) -> Result<Self, SetupError> {
        Ok(match cfg.exporter {
            ExporterKind::None => Transport::Discard,
            ExporterKind::Console => Transport::Console(console::Console::new(cfg.console_format)),
            ExporterKind::Otlp => match cfg.protocol {
                OtlpProtocol::Grpc => Transport::Grpc(grpc::GrpcTransport::new(cfg)?),
                OtlpProtocol::HttpProtobuf | OtlpProtocol::HttpJson => {
                    Transport::Http(Box::new(http::HttpTransport::new(cfg)?))
                }
            },
        })
    }

    pub(crate) async fn send(&self, payload: Bytes) -> Result<Accepted, SendError> {
        match self {
            Transport::Grpc(t) => t.send(payload).await,
            Transport::Http(t) => t.send(payload).await,
            Transport::Console(c) => c.send(payload),
            Transport::Discard => Ok(Accepted::default()),
        }
    }

    /// Whether the endpoint answers: an empty export request must be accepted.
    pub(crate) async fn probe(&self) -> Result<(), SendError> {
        match self {
            Transport::Grpc(_) | Transport::Http(_) => self
                .send(Bytes::from(
                    ExportMetricsServiceRequest::default().encode_to_vec(),
                ))
                .await
                .map(|_| ()),
            _ => Ok(()),
        }
    }
}
