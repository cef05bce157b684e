//! Where and how batches are exported: the exporter kind, the OTLP protocol and endpoint, headers,
//! compression, timeout and TLS material. `config::otlp` builds it from the settings.

use std::fmt;
use std::time::Duration;

/// The OTLP transport protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub(crate) enum OtlpProtocol {
    Grpc,
    HttpProtobuf,
    HttpJson,
}

impl OtlpProtocol {
    /// The name `OTEL_EXPORTER_OTLP_PROTOCOL` uses.
    pub(crate) fn name(self) -> &'static str {
        match self {
            OtlpProtocol::Grpc => "grpc",
            OtlpProtocol::HttpProtobuf => "http/protobuf",
            OtlpProtocol::HttpJson => "http/json",
        }
    }
}

/// Where samples go (`OTEL_METRICS_EXPORTER`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub(crate) enum ExporterKind {
    Otlp,
    Console,
    None,
}

impl ExporterKind {
    /// The name `OTEL_METRICS_EXPORTER` uses.
    pub(crate) fn name(self) -> &'static str {
        match self {
            ExporterKind::Otlp => "otlp",
            ExporterKind::Console => "console",
            ExporterKind::None => "none",
        }
    }
}

/// TLS material for the OTLP connection, already read and checked.
#[derive(Clone, Default)]
pub(crate) struct TlsFiles {
    pub(crate) ca_pem: Option<Vec<u8>>,
    pub(crate) client_cert_pem: Option<Vec<u8>>,
    pub(crate) client_key_pem: Option<Vec<u8>>,
}

impl fmt::Debug for TlsFiles {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsFiles")
            .field("ca", &self.ca_pem.is_some())
            .field("client_cert", &self.client_cert_pem.is_some())
            .field("client_key", &"[redacted]")
            .finish()
    }
}

/// Where and how to export.
#[derive(Debug, Clone)]
pub struct ExportConfig {
    pub(crate) exporter: ExporterKind,
    pub(crate) protocol: OtlpProtocol,
    /// Full URL of the metrics endpoint (HTTP: including the path; gRPC: scheme://host:port).
    pub(crate) endpoint: String,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) gzip: bool,
    pub(crate) timeout: Duration,
    pub(crate) tls: TlsFiles,
    /// Skip certificate verification (AGENT_INSECURE_TLS), for the direct orchestrator mode.
    pub(crate) insecure_skip_verify: bool,
    /// True when the endpoint was derived from ORCHESTRATOR_BASE_URL (the original agent's mode).
    pub(crate) direct_orchestrator: bool,
    /// False when the endpoint is the specification's default (nothing configured): `check`
    /// then reports a collector that does not answer as a note, not a failure.
    pub(crate) endpoint_explicit: bool,
}
