//! The signals the queue carries. Each signal is a lane of its own: its own memory and disk
//! budgets, its own spool directory, its own sender and its own transport path, so a flood of
//! one (a console spamming logs) cannot push the other (metrics) out of the queue.

use std::time::Duration;

/// A kind of telemetry the queue delivers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Signal {
    /// Encoded `ExportMetricsServiceRequest`s.
    Metrics,
    /// Encoded `ExportLogsServiceRequest`s.
    Logs,
}

impl Signal {
    pub const ALL: [Signal; 2] = [Signal::Metrics, Signal::Logs];

    /// The name used in logs, metrics attributes and the spool's sub-directory.
    pub fn name(self) -> &'static str {
        match self {
            Signal::Metrics => "metrics",
            Signal::Logs => "logs",
        }
    }

    /// The OTLP/HTTP path of the signal (appended to a base endpoint).
    pub(crate) fn http_path(self) -> &'static str {
        match self {
            Signal::Metrics => "/v1/metrics",
            Signal::Logs => "/v1/logs",
        }
    }

    /// The OTLP/gRPC method of the signal.
    pub(crate) fn grpc_path(self) -> &'static str {
        match self {
            Signal::Metrics => "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export",
            Signal::Logs => "/opentelemetry.proto.collector.logs.v1.LogsService/Export",
        }
    }

    pub(crate) fn index(self) -> usize {
        self as usize
    }
}

/// The most a default memory budget grows to ([`LaneBudget::memory_auto`]).
pub const AUTO_MEMORY_MAX: u64 = 128 << 20;

/// The budgets of one signal's lane.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LaneBudget {
    /// Bytes of encoded requests held in memory (queued plus the request being sent).
    pub memory_bytes: u64,
    /// `memory_bytes` is the default, not an operator's limit: it grows to hold three of the
    /// largest batches (up to [`AUTO_MEMORY_MAX`]), so that a node whose one sample is larger than
    /// the default (5,000 containers: about 9 MB) still has its samples queued, sent and spooled.
    pub memory_auto: bool,
    /// Bytes of segment files in the signal's spool directory.
    pub spool_max_bytes: u64,
}

/// How long a request may take: the configured timeout, raised on repeated timeouts up to this.
pub(crate) fn max_attempt_timeout(base: Duration) -> Duration {
    (base * 4).min(base.max(Duration::from_secs(120)))
}
