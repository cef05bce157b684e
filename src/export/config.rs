//! Where and how batches are exported: the exporter kind, the OTLP protocol and endpoint, headers,
//! compression, timeout and TLS material. `config::otlp` builds it from the settings (and checks
//! it there: a URL that parses, header names and values a request can carry, no userinfo left in
//! the endpoint), so the transports only ever see a valid configuration.

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

/// How the console exporter prints (`console_format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
pub(crate) enum ConsoleFormat {
    /// One block per sample, one line per point: metric, attributes, value with its unit.
    #[default]
    Text,
    /// One OTLP/JSON `ExportMetricsServiceRequest` per line, for piping into tools.
    OtlpJson,
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

/// The `Authorization` header value of HTTP Basic authentication (RFC 7617).
pub(crate) fn basic_auth(user: &str, password: &str) -> String {
    let mut v = String::from("Basic ");
    super::json::base64_into(&mut v, format!("{user}:{password}").as_bytes());
    v
}

/// Where and how to export.
#[derive(Clone)]
pub struct ExportConfig {
    pub(crate) exporter: ExporterKind,
    pub(crate) protocol: OtlpProtocol,
    /// Full URL of the metrics endpoint (HTTP: including the path; gRPC: scheme://host:port).
    /// Never carries `user:password@`: that became an `Authorization: Basic` header.
    pub(crate) endpoint: String,
    /// True when an endpoint was set (a setting or direct mode), false for the specification's
    /// default `localhost` endpoint.
    pub(crate) endpoint_explicit: bool,
    /// Request headers (secrets: never printed, see the `Debug` impl).
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) gzip: bool,
    pub(crate) timeout: Duration,
    pub(crate) tls: TlsFiles,
    /// Skip certificate verification towards the orchestrator (`AGENT_INSECURE_TLS`). Set only
    /// in direct mode, where the endpoint *is* the orchestrator; never for an OTLP collector.
    pub(crate) orchestrator_insecure_tls: bool,
    /// True when the endpoint was derived from ORCHESTRATOR_BASE_URL (the original agent's mode).
    pub(crate) direct_orchestrator: bool,
    pub(crate) console_format: ConsoleFormat,
}

impl fmt::Debug for ExportConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let header_names: Vec<&str> = self.headers.iter().map(|(k, _)| k.as_str()).collect();
        f.debug_struct("ExportConfig")
            .field("exporter", &self.exporter)
            .field("protocol", &self.protocol)
            .field("endpoint", &self.endpoint)
            .field("endpoint_explicit", &self.endpoint_explicit)
            .field("headers (values redacted)", &header_names)
            .field("gzip", &self.gzip)
            .field("timeout", &self.timeout)
            .field("tls", &self.tls)
            .field("orchestrator_insecure_tls", &self.orchestrator_insecure_tls)
            .field("direct_orchestrator", &self.direct_orchestrator)
            .field("console_format", &self.console_format)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> ExportConfig {
        ExportConfig {
            exporter: ExporterKind::Otlp,
            protocol: OtlpProtocol::HttpProtobuf,
            endpoint: "http://localhost:4318/v1/metrics".into(),
            endpoint_explicit: false,
            headers: vec![("authorization".into(), "Bearer s3cret".into())],
            gzip: true,
            timeout: Duration::from_secs(10),
            tls: TlsFiles::default(),
            orchestrator_insecure_tls: false,
            direct_orchestrator: false,
            console_format: ConsoleFormat::Text,
        }
    }

    #[test]
    fn debug_never_shows_header_values() {
        let s = format!("{:?}", cfg());
        assert!(s.contains("authorization") && !s.contains("s3cret"), "{s}");
    }
}
