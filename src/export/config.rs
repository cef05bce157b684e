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
    pub(crate) endpoint_configured: bool,
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
            .field("endpoint_configured", &self.endpoint_configured)
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

/// Where the metrics go, in plain words, for the startup log and `check`: e.g. `OTLP/HTTP
/// (protobuf, gzip) to http://localhost:4318/v1/metrics (the default endpoint)`.
impl fmt::Display for ExportConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.exporter {
            ExporterKind::None => {
                return f.write_str("nowhere: sampled, not sent (OTEL_METRICS_EXPORTER=none)");
            }
            ExporterKind::Console => {
                return f.write_str(match self.console_format {
                    ConsoleFormat::Text => "the console: one line per point on stdout",
                    ConsoleFormat::OtlpJson => {
                        "the console: one OTLP/JSON request per line on stdout"
                    }
                });
            }
            ExporterKind::Otlp => {}
        }
        let zip = if self.gzip { "gzip" } else { "uncompressed" };
        match self.protocol {
            OtlpProtocol::Grpc => write!(f, "OTLP/gRPC ({zip})")?,
            OtlpProtocol::HttpProtobuf => write!(f, "OTLP/HTTP (protobuf, {zip})")?,
            OtlpProtocol::HttpJson => write!(f, "OTLP/HTTP (JSON, {zip})")?,
        }
        if self.direct_orchestrator {
            write!(f, " straight to the orchestrator at {}", self.endpoint)?;
            if self.orchestrator_insecure_tls {
                f.write_str(" (certificate checks OFF: AGENT_INSECURE_TLS)")?;
            }
            Ok(())
        } else if self.endpoint_configured {
            write!(f, " to {}", self.endpoint)
        } else {
            write!(
                f,
                " to {} (the default endpoint; set OTEL_EXPORTER_OTLP_ENDPOINT to send elsewhere)",
                self.endpoint
            )
        }
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
            endpoint_configured: false,
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
    fn display_says_where_in_plain_words() {
        let mut c = cfg();
        assert_eq!(
            c.to_string(),
            "OTLP/HTTP (protobuf, gzip) to http://localhost:4318/v1/metrics (the default endpoint; set OTEL_EXPORTER_OTLP_ENDPOINT to send elsewhere)"
        );
        c.protocol = OtlpProtocol::Grpc;
        c.endpoint = "https://collector:4317".into();
        c.endpoint_configured = true;
        c.gzip = false;
        assert_eq!(
            c.to_string(),
            "OTLP/gRPC (uncompressed) to https://collector:4317"
        );
        c.exporter = ExporterKind::Console;
        assert_eq!(c.to_string(), "the console: one line per point on stdout");
    }

    #[test]
    fn debug_never_shows_header_values() {
        let s = format!("{:?}", cfg());
        assert!(s.contains("authorization") && !s.contains("s3cret"), "{s}");
    }
}
