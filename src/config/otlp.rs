//! The OTLP rules of the specification, applied to the settings: which endpoint a protocol uses
//! by default, when `/v1/metrics` is appended, how a scheme-less endpoint is read, headers and
//! their names, compression, timeout and TLS files; and the original agent's direct mode
//! (`ORCHESTRATOR_BASE_URL` + `NODE_TOKEN`, no OTLP endpoint).

use super::error::ConfigError;
use super::read::{Values, check_url};
use super::source::Source;
use crate::export::{ExportConfig, ExporterKind, OtlpProtocol, Signal, TlsFiles};
use std::time::Duration;

/// What the direct orchestrator mode needs from the rest of the configuration.
pub(crate) struct Direct<'a> {
    pub(crate) orchestrator: &'a Option<String>,
    pub(crate) node_id: &'a Option<String>,
    pub(crate) node_token: &'a Option<String>,
    /// `AGENT_INSECURE_TLS`: skip certificate checks (meant for the orchestrator and Wings).
    pub(crate) insecure_tls: bool,
}

/// The settings of one signal's export: the metrics' own, or the logs' (which fall back to the
/// metrics' generic values, see `table::Setting::fallback`).
pub(crate) struct Keys {
    pub(crate) signal: Signal,
    exporter: &'static str,
    endpoint: &'static str,
    protocol: &'static str,
    headers: &'static str,
    compression: &'static str,
    timeout: &'static str,
    certificate: &'static str,
    client_certificate: &'static str,
    client_key: &'static str,
    insecure: &'static str,
}

pub(crate) const METRICS: Keys = Keys {
    signal: Signal::Metrics,
    exporter: "metrics_exporter",
    endpoint: "otlp_endpoint",
    protocol: "otlp_protocol",
    headers: "otlp_headers",
    compression: "otlp_compression",
    timeout: "otlp_timeout_ms",
    certificate: "otlp_certificate",
    client_certificate: "otlp_client_certificate",
    client_key: "otlp_client_key",
    insecure: "otlp_insecure",
};

pub(crate) const LOGS: Keys = Keys {
    signal: Signal::Logs,
    exporter: "logs_exporter",
    endpoint: "otlp_logs_endpoint",
    protocol: "otlp_logs_protocol",
    headers: "otlp_logs_headers",
    compression: "otlp_logs_compression",
    timeout: "otlp_logs_timeout_ms",
    certificate: "otlp_logs_certificate",
    client_certificate: "otlp_logs_client_certificate",
    client_key: "otlp_logs_client_key",
    insecure: "otlp_logs_insecure",
};

/// Whether a value came from `key` itself (its flag, file or remote key, or one of `vars`).
fn set_as(src: &Source, key: &str, vars: &[&str]) -> bool {
    match src {
        Source::Flag(f) => *f == key.replace('_', "-"),
        Source::File(k) | Source::Remote(k) => k == key,
        Source::Env(n) => vars.contains(&n.as_str()),
        Source::Default => false,
    }
}

/// The URL of a signal's endpoint setting, as the specification reads it: the per-signal value
/// as given; `OTEL_EXPORTER_OTLP_ENDPOINT` as a base (the signal's path appended for HTTP); for
/// the logs, the metrics' own `otlp_endpoint` (flag, file, remote) with `/v1/metrics` replaced
/// by `/v1/logs`.
fn signal_url(k: &Keys, base: String, src: &Source, protocol: OtlpProtocol) -> String {
    if protocol == OtlpProtocol::Grpc {
        return base;
    }
    let path = k.signal.http_path();
    if matches!(src, Source::Env(n) if n == "OTEL_EXPORTER_OTLP_ENDPOINT") {
        return format!("{base}{path}");
    }
    let own_vars = super::table::setting(k.endpoint).env;
    if k.signal == Signal::Metrics || set_as(src, k.endpoint, own_vars) {
        return base;
    }
    let stem = base
        .strip_suffix(Signal::Metrics.http_path())
        .unwrap_or(&base);
    format!("{stem}{path}")
}

pub(crate) fn export_config(
    r: &Values<'_>,
    d: Direct<'_>,
    k: &Keys,
) -> Result<ExportConfig, ConfigError> {
    let exporter = r.choice(
        k.exporter,
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
        k.protocol,
        &[
            ("grpc", OtlpProtocol::Grpc),
            ("http/protobuf", OtlpProtocol::HttpProtobuf),
            ("http", OtlpProtocol::HttpProtobuf),
            ("http/json", OtlpProtocol::HttpJson),
        ],
        "use grpc, http/protobuf or http/json",
    )?;
    let insecure = r.bool(k.insecure)?;
    let mut headers = r.kv_list(k.headers, "use name=value pairs separated by commas")?;
    for (name, _) in &headers {
        if name
            .bytes()
            .any(|b| !(b.is_ascii_alphanumeric() || b == b'-' || b == b'_'))
        {
            return Err(r.invalid(
                k.headers,
                r.source(k.headers),
                format!("header name `{name}` has invalid characters"),
                "use letters, digits, - and _ in header names",
            ));
        }
    }
    let mut direct_orchestrator = false;
    let endpoint_explicit = r.raw(k.endpoint).is_some();
    let endpoint = match r.raw(k.endpoint) {
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
                    k.endpoint,
                    src.clone(),
                    p.0,
                    "give a URL such as http://127.0.0.1:4318 (HTTP) or http://127.0.0.1:4317 (gRPC)",
                )
            })?;
            let base = with_scheme.trim_end_matches('/').to_string();
            signal_url(k, base, &src, protocol)
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
                // The metrics go where the original agent sent them; the logs to the OTLP path
                // under it.
                match k.signal {
                    Signal::Metrics => format!("{base}/internal/nodes/{node_id}/telemetry"),
                    Signal::Logs => format!(
                        "{base}/internal/nodes/{node_id}/telemetry{}",
                        Signal::Logs.http_path()
                    ),
                }
            }
            _ => match protocol {
                OtlpProtocol::Grpc => "http://localhost:4317".into(),
                _ => format!("http://localhost:4318{}", k.signal.http_path()),
            },
        },
    };
    let gzip = r.choice(
        k.compression,
        &[("gzip", true), ("none", false), ("", false)],
        "use gzip or none",
    )?;
    let timeout = Duration::from_millis(r.u64(k.timeout, 1)?);
    let tls = TlsFiles {
        ca_pem: r.pem_file(k.certificate)?,
        client_cert_pem: r.pem_file(k.client_certificate)?,
        client_key_pem: r.pem_file(k.client_key)?,
    };
    if tls.client_cert_pem.is_some() != tls.client_key_pem.is_some() {
        let key = if tls.client_cert_pem.is_some() {
            k.client_key
        } else {
            k.client_certificate
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
