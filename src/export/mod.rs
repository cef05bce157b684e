//! Delivery: the agent's own queue of encoded OTLP requests, per signal, with a crash-safe disk
//! spool, and the transports that send them.
//!
//! Producers hand each finished request to [`Exporter::enqueue`] (metrics) or
//! [`Exporter::submit`] (any signal, with an acknowledgement hook), which never wait on the
//! network or the disk. The pieces, in the order a batch meets them:
//! - [`lane`]: one signal's bookkeeping (memory, the spool's index, the request in flight,
//!   write-ahead, the budgets) and [`stats`], the exact accounting and loss log it keeps;
//! - [`disk`]: the one thread that does every spool operation ([`spool`]: segment files, the
//!   record format, the lock), so a hung disk stops nothing else;
//! - [`sender`]: one task per signal that delivers oldest first, with [`retry`] (backoff,
//!   timeouts, merge limit) and [`split`] (halving a request a collector refuses as too large);
//! - [`queue`]: the [`Exporter`] that ties them together, and its shutdown.
//!
//! The transports (`http.rs`, `grpc.rs`, `console.rs`) send one request of one signal and
//! classify the answer as the OTLP specification says: accepted (with the items a partial
//! success rejected), retryable (with the server's delay), too large, invalid, or otherwise not
//! retryable. What a collector answers is read in `response.rs`, OTLP/JSON is written by
//! `json.rs`, gzip by `gzip.rs`.
//!
//! docs/delivery.md says what can be lost when; docs/export.md describes the transports.

mod config;
mod console;
pub(crate) mod disk;
pub mod grpc;
mod gzip;
pub mod http;
mod json;
pub(crate) mod lane;
pub mod logs;
pub mod logs_sink;
pub(crate) mod queue;
mod response;
pub(crate) mod retry;
pub(crate) mod sender;
pub(crate) mod shared;
pub(crate) mod signal;
pub(crate) mod split;
pub(crate) mod spool;
pub(crate) mod stats;

pub(crate) use config::{
    ConsoleFormat, ExportConfig, ExporterKind, OtlpProtocol, TlsFiles, basic_auth,
};
pub use signal::{LaneBudget, Signal};
pub use spool::FsyncPolicy;
pub use spool::lock::LockError;
pub use stats::{
    Counts, DISK_STALL_AFTER, DiskHealth, DropReason, ExportStats, OnSettled, Settled, SpoolState,
};

use bytes::Bytes;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use prost::Message;
use std::time::Duration;

pub use queue::{Exporter, Leftover, QueueConfig, StartError};

/// A request the endpoint accepted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Accepted {
    /// Items (data points, log records) the collector rejected inside the accepted request
    /// (OTLP partial success): not retried, counted.
    pub(crate) rejected: u64,
}

/// Why a send failed, and what can help. The reason may reach the log and `/readyz`: whatever
/// a peer put in it is already capped and escaped.
#[derive(Debug, Clone, thiserror::Error)]
pub(crate) enum SendError {
    #[error("{reason} (will retry)")]
    Retryable {
        reason: String,
        retry_after: Option<Duration>,
    },
    /// The request is larger than the collector accepts (HTTP 413, gRPC `RESOURCE_EXHAUSTED` or
    /// `OUT_OF_RANGE` saying the message is too large): smaller requests will pass.
    #[error("{reason} (too large)")]
    TooLarge { reason: String },
    /// The collector could not accept the content (HTTP 400, gRPC `INVALID_ARGUMENT`): one batch
    /// of a merged request may be bad.
    #[error("{reason} (invalid)")]
    Invalid { reason: String },
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

    /// The transport of one signal's lane, from that signal's own configuration (its endpoint is
    /// that signal's URL).
    pub fn for_signal(signal: Signal, cfg: &ExportConfig) -> Result<Self, SetupError> {
        Ok(match Transport::new(cfg)? {
            Transport::Http(t) => Transport::Http(Box::new(t.with_url(signal, &cfg.endpoint))),
            t => t,
        })
    }

    /// Sends one encoded request of `signal`, giving the collector `timeout` to answer.
    pub(crate) async fn send(
        &self,
        signal: Signal,
        payload: Bytes,
        timeout: Duration,
    ) -> Result<Accepted, SendError> {
        match self {
            Transport::Grpc(t) => t.send(signal, payload, timeout).await,
            Transport::Http(t) => t.send(signal, payload, timeout).await,
            Transport::Console(c) => c.send(signal, payload),
            Transport::Discard => Ok(Accepted::default()),
        }
    }

    /// The configured request timeout.
    pub(crate) fn timeout(&self) -> Duration {
        match self {
            Transport::Grpc(t) => t.timeout,
            Transport::Http(t) => t.timeout,
            _ => Duration::from_secs(10),
        }
    }

    /// Whether the endpoint answers: an empty export request must be accepted.
    pub(crate) async fn probe(&self) -> Result<(), SendError> {
        match self {
            Transport::Grpc(_) | Transport::Http(_) => self
                .send(
                    Signal::Metrics,
                    Bytes::from(ExportMetricsServiceRequest::default().encode_to_vec()),
                    self.timeout(),
                )
                .await
                .map(|_| ()),
            _ => Ok(()),
        }
    }
}
