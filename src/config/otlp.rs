//! The OTLP rules of the specification, applied to the settings: which endpoint a protocol uses
//! by default, when `/v1/metrics` is appended, how a scheme-less endpoint is read, headers and
//! their names, compression, timeout and TLS files; and the original agent's direct mode
//! (`ORCHESTRATOR_BASE_URL` + `NODE_TOKEN`, no OTLP endpoint).

use super::error::ConfigError;
use super::read::{Values, check_url};
use super::source::Source;
use crate::export::{ExportConfig, ExporterKind, OtlpProtocol, TlsFiles};
use std::time::Duration;

/// What the direct orchestrator mode needs from the rest of the configuration.
pub(crate) struct Direct<'a> {
    pub(crate) orchestrator: &'a Option<String>,
    pub(crate) node_id: &'a Option<String>,
    pub(crate) node_token: &'a Option<String>,
    /// `AGENT_INSECURE_TLS`: skip certificate checks (meant for the orchestrator and Wings).
    pub(crate) insecure_tls: bool,
}

pub(crate) fn export_config(r: &Values<'_>, d: Direct<'_>) -> Result<ExportConfig, ConfigError> {
    let exporter = r.choice(
        "metrics_exporter",
        &[
            ("otlp", ExporterKind::Otlp),
            ("", ExporterKind::Otlp),
            ("console", ExporterKind::Console),
            ("logging", ExporterKind::Console),
            ("none", ExporterKind::None),
        ],
        "use otlp, console or none",
    )?;
    let mut protocol = r.choice(
        "otlp_protocol",
        &[
            ("grpc", OtlpProtocol::Grpc),
            ("http/protobuf", OtlpProtocol::HttpProtobuf),
            ("http", OtlpProtocol::HttpProtobuf),
            ("http/json", OtlpProtocol::HttpJson),
        ],
        "use grpc, http/protobuf or http/json",
    )?;
    let insecure = r.bool("otlp_insecure")?;
    let mut headers = r.kv_list("otlp_headers", "use name=value pairs separated by commas")?;
    for (name, _) in &headers {
        if name
            .bytes()
            .any(|b| !(b.is_ascii_alphanumeric() || b == b'-' || b == b'_'))
        {
            return Err(r.invalid(
                "otlp_headers",
                r.source("otlp_headers"),
                format!("header name `{name}` has invalid characters"),
                "use letters, digits, - and _ in header names",
            ));
        }
    }
    let mut direct_orchestrator = false;
    let endpoint_explicit = r.raw("otlp_endpoint").is_some();
    let endpoint = match r.raw("otlp_endpoint") {
        Some((v, src)) => {
            let v = v.trim().to_string();
            let with_scheme = if v.contains("://") {
                v.clone()
            } else if insecure {
                format!("http://{v}")
            } else {
                format!("https://{v}")
            };
            check_url(&with_scheme).map_err(|p| {
                r.invalid(
                    "otlp_endpoint",
                    src.clone(),
                    p.0,
                    "give a URL such as http://127.0.0.1:4318 (HTTP) or http://127.0.0.1:4317 (gRPC)",
                )
            })?;
            let base = with_scheme.trim_end_matches('/').to_string();
            // OTEL_EXPORTER_OTLP_ENDPOINT is a base URL for every signal; the per-signal variable
            // is used as given.
            let is_base = matches!(&src, Source::Env(n) if n == "OTEL_EXPORTER_OTLP_ENDPOINT");
            if protocol != OtlpProtocol::Grpc && is_base {
                format!("{base}/v1/metrics")
            } else {
                base
            }
        }
        None => match (d.orchestrator, d.node_token) {
            (Some(base), Some(token)) => {
                let Some(node_id) = d.node_id else {
                    return Err(r.invalid(
                        "node_id",
                        Source::Default,
                        "direct mode to ORCHESTRATOR_BASE_URL needs a node id",
                        "set NODE_ID",
                    ));
                };
                direct_orchestrator = true;
                if protocol == OtlpProtocol::Grpc {
                    protocol = OtlpProtocol::HttpProtobuf;
                }
                headers.push(("authorization".into(), format!("Bearer {token}")));
                format!("{base}/internal/nodes/{node_id}/telemetry")
            }
            _ => match protocol {
                OtlpProtocol::Grpc => "http://localhost:4317".into(),
                _ => "http://localhost:4318/v1/metrics".into(),
            },
        },
    };
    let gzip = r.choice(
        "otlp_compression",
        &[("gzip", true), ("none", false), ("", false)],
        "use gzip or none",
    )?;
    let timeout = Duration::from_millis(r.u64("otlp_timeout_ms", 1)?);
    let tls = TlsFiles {
        ca_pem: r.pem_file("otlp_certificate")?,
        client_cert_pem: r.pem_file("otlp_client_certificate")?,
        client_key_pem: r.pem_file("otlp_client_key")?,
    };
    if tls.client_cert_pem.is_some() != tls.client_key_pem.is_some() {
        let key = if tls.client_cert_pem.is_some() {
            "otlp_client_key"
        } else {
            "otlp_client_certificate"
        };
        return Err(r.invalid(
            key,
            Source::Default,
            "mutual TLS needs both a client certificate and its key",
            "set both OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE and OTEL_EXPORTER_OTLP_CLIENT_KEY",
        ));
    }
    Ok(ExportConfig {
        exporter,
        protocol,
        endpoint,
        headers,
        gzip,
        timeout,
        tls,
        insecure_skip_verify: d.insecure_tls,
        endpoint_explicit: endpoint_explicit || direct_orchestrator,
        direct_orchestrator,
    })
}
