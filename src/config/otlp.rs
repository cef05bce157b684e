//! The OTLP rules of the specification, applied to the settings: which endpoint a protocol uses
//! by default, when `/v1/metrics` is appended, how a scheme-less endpoint is read, headers and
//! their names, compression, timeout and TLS files; and the original agent's direct mode
//! (`ORCHESTRATOR_BASE_URL` + `NODE_TOKEN`, no OTLP endpoint).
//!
//! Checked here, at start, so a bad value exits 2 naming the setting instead of failing (or being
//! retried forever) at the first export:
//! - the endpoint parses as an absolute `http`/`https` URL with a host (`http://[::1` does not);
//!   a scheme-less endpoint is read as the specification says, for gRPC only
//!   (`otlp_insecure` picks `http`, otherwise `https`); OTLP/HTTP needs a scheme;
//! - `user:password@` in the endpoint becomes an `Authorization: Basic` header and leaves the URL,
//!   so no log line, error, `config` or `check` output can show it;
//! - header names and values are ones a request can carry; an error never echoes either (with a
//!   `:` where the `=` belongs, the "name" holds the credential);
//! - `AGENT_INSECURE_TLS` (meant for Wings and the orchestrator) reaches the export only in direct
//!   mode, where the endpoint *is* the orchestrator. A collector's certificate is always checked:
//!   there is no setting that turns that off.

use super::error::ConfigError;
use super::read::{Values, parse_endpoint};
use super::source::Source;
use crate::export::{
    ConsoleFormat, ExportConfig, ExporterKind, OtlpProtocol, Signal, TlsFiles, basic_auth,
};
use crate::sys::text::redact_userinfo;
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

const ENDPOINT_FIX: &str =
    "give a URL such as http://127.0.0.1:4318 (HTTP) or http://127.0.0.1:4317 (gRPC)";

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
    let console_format = r.choice(
        "console_format",
        &[
            ("text", ConsoleFormat::Text),
            ("", ConsoleFormat::Text),
            ("otlp-json", ConsoleFormat::OtlpJson),
            ("json", ConsoleFormat::OtlpJson),
        ],
        "use text or otlp-json",
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
    check_headers(r, k.headers, &headers)?;
    let mut direct_orchestrator = false;
    let mut orchestrator_insecure_tls = false;
    let endpoint_explicit;
    let endpoint = match r.raw(k.endpoint) {
        Some((v, src)) => {
            endpoint_explicit = true;
            let v = v.trim();
            let with_scheme = if v.contains("://") {
                v.to_string()
            } else if protocol == OtlpProtocol::Grpc {
                // The specification's `insecure`: only for a gRPC endpoint without a scheme.
                format!("{}://{v}", if insecure { "http" } else { "https" })
            } else {
                return Err(r.invalid(
                    k.endpoint,
                    src,
                    format!("`{}` has no scheme", redact_userinfo(v)),
                    "an OTLP/HTTP endpoint is a URL: write http://… or https://… (otlp_insecure applies to gRPC only)",
                ));
            };
            let (url, userinfo) = parse_endpoint(&with_scheme)
                .map_err(|p| r.invalid(k.endpoint, src.clone(), p.0, ENDPOINT_FIX))?;
            if let Some((user, password)) = userinfo {
                if headers
                    .iter()
                    .any(|(k, _)| k.eq_ignore_ascii_case("authorization"))
                {
                    return Err(r.invalid(
                        k.endpoint,
                        src,
                        "the URL carries user:password@ and otlp_headers sets Authorization too",
                        "keep one of them (the header is the better place for a secret)",
                    ));
                }
                headers.push(("authorization".into(), basic_auth(&user, &password)));
            }
            let base = url.trim_end_matches('/').to_string();
            signal_url(k, base, &src, protocol)
        }
        None => match (d.orchestrator, d.node_token) {
            (Some(base), Some(token)) => {
                endpoint_explicit = true;
                let Some(node_id) = d.node_id else {
                    return Err(r.invalid(
                        "node_id",
                        Source::Default,
                        "direct mode to ORCHESTRATOR_BASE_URL needs a node id",
                        "set NODE_ID",
                    ));
                };
                let (base, userinfo) = parse_endpoint(base).map_err(|p| {
                    r.invalid(
                        "orchestrator_base_url",
                        r.source("orchestrator_base_url"),
                        p.0,
                        "give an absolute http:// or https:// URL",
                    )
                })?;
                if userinfo.is_some() {
                    return Err(r.invalid(
                        "orchestrator_base_url",
                        r.source("orchestrator_base_url"),
                        "the URL carries user:password@ (NODE_TOKEN is what authenticates)",
                        "remove the user:password@ part",
                    ));
                }
                direct_orchestrator = true;
                // The endpoint is the orchestrator: the switch meant for it applies.
                orchestrator_insecure_tls = d.insecure_tls;
                if protocol == OtlpProtocol::Grpc {
                    protocol = OtlpProtocol::HttpProtobuf;
                }
                headers.push(("authorization".into(), format!("Bearer {token}")));
                // The metrics go where the original agent sent them; the logs to the OTLP path
                // under it.
                let base = base.trim_end_matches('/');
                match k.signal {
                    Signal::Metrics => format!("{base}/internal/nodes/{node_id}/telemetry"),
                    Signal::Logs => format!(
                        "{base}/internal/nodes/{node_id}/telemetry{}",
                        Signal::Logs.http_path()
                    ),
                }
            }
            _ => {
                endpoint_explicit = false;
                match protocol {
                    OtlpProtocol::Grpc => "http://localhost:4317".into(),
                    _ => format!("http://localhost:4318{}", k.signal.http_path()),
                }
            }
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
        endpoint_explicit,
        headers,
        gzip,
        timeout,
        tls,
        orchestrator_insecure_tls,
        direct_orchestrator,
        console_format,
    })
}

/// Header names must be tokens and values visible text; neither is echoed in the error.
fn check_headers(
    r: &Values<'_>,
    key: &'static str,
    headers: &[(String, String)],
) -> Result<(), ConfigError> {
    for (i, (name, value)) in headers.iter().enumerate() {
        let bad_name = name
            .bytes()
            .any(|b| !(b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
        let bad_value = value
            .bytes()
            .any(|b| !(b == b'\t' || (b' '..=b'~').contains(&b)));
        if bad_name || bad_value {
            let (what, hint) = if bad_name && name.contains(':') {
                (
                    "name contains `:`",
                    "write name=value (e.g. Authorization=Basic%20…), not name: value",
                )
            } else if bad_name {
                (
                    "name has invalid characters",
                    "use letters, digits, - and _ in header names",
                )
            } else {
                (
                    "value has control or non-ASCII characters",
                    "percent-encode them (%0A, %C3%A9) or remove them",
                )
            };
            return Err(r.invalid(
                key,
                r.source(key),
                format!("item {}: the {what} (not shown: it may be a secret)", i + 1),
                hint,
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::Config;
    use super::*;

    fn config(env: &[(&str, &str)]) -> Result<ExportConfig, String> {
        let layers = super::super::tests::layers(env, &[]);
        Config::from_layers(&layers)
            .map(|c| c.export)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn malformed_endpoints_name_the_setting() {
        for bad in [
            "http://[::1",
            "http://[::1/v1",
            "http://host:99999",
            "http://exa mple:4318",
            "http://:4318",
            "ftp://collector",
            "http://",
            "http:/collector",
        ] {
            let e = config(&[("OTEL_EXPORTER_OTLP_ENDPOINT", bad)]).unwrap_err();
            assert!(e.starts_with("invalid otlp_endpoint"), "{bad}: {e}");
        }
        let ok = config(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://[::1]:4318")]).unwrap();
        assert_eq!(ok.endpoint, "http://[::1]:4318/v1/metrics");
    }

    #[test]
    fn userinfo_becomes_a_basic_header_and_leaves_the_url() {
        let c = config(&[(
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            "https://agent:p%40ss@collector:4318",
        )])
        .unwrap();
        assert_eq!(c.endpoint, "https://collector:4318/v1/metrics");
        // base64("agent:p@ss")
        assert!(
            c.headers
                .contains(&("authorization".into(), "Basic YWdlbnQ6cEBzcw==".into()))
        );
        assert!(!format!("{c:?}").contains("p%40ss"));
        let e = config(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://u:hunter2@[::1")]).unwrap_err();
        assert!(!e.contains("hunter2"), "{e}");
        let e = config(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://u:hunter2@c:1"),
            ("OTEL_EXPORTER_OTLP_HEADERS", "Authorization=Bearer%20x"),
        ])
        .unwrap_err();
        assert!(e.contains("otlp_endpoint") && !e.contains("hunter2"), "{e}");
    }

    #[test]
    fn a_colon_in_headers_never_echoes_the_credential() {
        for h in [
            "Authorization: Basic dXNlcjpodW50ZXIy",
            "Authorization: Basic dXNlcjpodW50ZXIy=",
            "x-api-key=abc\ndef",
        ] {
            let e = config(&[("OTEL_EXPORTER_OTLP_HEADERS", h)]).unwrap_err();
            assert!(e.starts_with("invalid otlp_headers"), "{e}");
            assert!(!e.contains("dXNlcjpodW50ZXIy") && !e.contains("abc"), "{e}");
        }
    }

    #[test]
    fn insecure_is_for_scheme_less_grpc_only() {
        let grpc = |insecure: &str, endpoint: &str| {
            config(&[
                ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
                ("OTEL_EXPORTER_OTLP_INSECURE", insecure),
                ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint),
            ])
            .unwrap()
            .endpoint
        };
        assert_eq!(grpc("true", "c:4317"), "http://c:4317");
        assert_eq!(grpc("false", "c:4317"), "https://c:4317");
        assert_eq!(grpc("true", "https://c:4317"), "https://c:4317");
        let e = config(&[
            ("OTEL_EXPORTER_OTLP_INSECURE", "true"),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "c:4318"),
        ])
        .unwrap_err();
        assert!(
            e.contains("otlp_endpoint") && e.contains("no scheme"),
            "{e}"
        );
    }

    #[test]
    fn agent_insecure_tls_reaches_the_orchestrator_only() {
        let c = config(&[
            ("AGENT_INSECURE_TLS", "true"),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "https://collector:4318"),
        ])
        .unwrap();
        assert!(!c.orchestrator_insecure_tls);
        let c = config(&[
            ("AGENT_INSECURE_TLS", "true"),
            ("ORCHESTRATOR_BASE_URL", "https://orch"),
            ("NODE_TOKEN", "t"),
            ("NODE_ID", "n"),
        ])
        .unwrap();
        assert!(c.orchestrator_insecure_tls && c.direct_orchestrator);
        assert!(c.endpoint_explicit);
        assert!(!config(&[]).unwrap().endpoint_explicit);
    }

    #[test]
    fn console_format_choice() {
        let c = config(&[("OTEL_METRICS_EXPORTER", "console")]).unwrap();
        assert_eq!(c.console_format, ConsoleFormat::Text);
        let c = config(&[
            ("OTEL_METRICS_EXPORTER", "console"),
            ("NODE_AGENT_CONSOLE_FORMAT", "otlp-json"),
        ])
        .unwrap();
        assert_eq!(c.console_format, ConsoleFormat::OtlpJson);
        let e = config(&[("NODE_AGENT_CONSOLE_FORMAT", "yaml")]).unwrap_err();
        assert!(e.contains("console_format"), "{e}");
    }
}
