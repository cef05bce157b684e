//! What `node-agent run` says when it starts, in words an operator can act on: where the metrics
//! can be read locally, where OTLP goes and how to point it elsewhere. The first lines of the log
//! are all a new user reads, so they name URLs and environment variables, never Rust types.
//!
//! Also the local endpoint's listener: on by default on loopback, like node_exporter's port. A
//! busy *default* port is only a warning (a second agent, or something else on 9464, must not
//! stop sampling); a busy *configured* address is an error (exit 2), since the operator asked for
//! exactly that address.

use crate::config::Config;
use crate::export::{ExportConfig, ExporterKind, OtlpProtocol};
use std::net::SocketAddr;
use tokio::net::TcpListener;

/// The local endpoint could not be opened at the address the operator configured.
#[derive(Debug, thiserror::Error)]
#[error(
    "cannot listen on {addr} (http_listen / NODE_AGENT_HTTP_LISTEN) for /metrics, /healthz and /readyz: {source}; choose another address or set it to off"
)]
pub(crate) struct ListenError {
    addr: SocketAddr,
    source: std::io::Error,
}

/// Opens the local endpoint's listener: `Ok(None)` when it is off, or when the default port is
/// busy (warned).
pub(crate) async fn listen(cfg: &Config) -> Result<Option<TcpListener>, ListenError> {
    let Some(addr) = cfg.http_listen else {
        return Ok(None);
    };
    match crate::serve::bind(addr).await {
        Ok(l) => Ok(Some(l)),
        Err(source) if cfg.http_listen_explicit => Err(ListenError { addr, source }),
        Err(e) => {
            tracing::warn!(
                "cannot serve /metrics on {addr} ({e}); running without the local endpoint. \
                 Set NODE_AGENT_HTTP_LISTEN to another address (or to off to silence this)"
            );
            Ok(None)
        }
    }
}

/// The protocol as a person would name it.
fn protocol_words(p: OtlpProtocol) -> &'static str {
    match p {
        OtlpProtocol::Grpc => "gRPC",
        OtlpProtocol::HttpProtobuf => "HTTP (protobuf)",
        OtlpProtocol::HttpJson => "HTTP (JSON)",
    }
}

/// A URL fit for a log line: user information and the query (where tokens hide) left out.
pub(crate) fn display_url(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
    let (authority, path) = match rest.find(['/', '?', '#']) {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let path = match path.find(['?', '#']) {
        Some(i) => format!("{}?…", &path[..i]),
        None => path.to_string(),
    };
    if scheme.is_empty() {
        format!("{host}{path}")
    } else {
        format!("{scheme}://{host}{path}")
    }
}

/// Where samples go, in one sentence.
pub(crate) fn destination(e: &ExportConfig) -> String {
    match e.exporter {
        ExporterKind::Console => {
            "printing samples to stdout (OTEL_METRICS_EXPORTER=console); nothing is sent to a collector".into()
        }
        ExporterKind::None => {
            "not exporting (OTEL_METRICS_EXPORTER=none): samples are only served locally".into()
        }
        ExporterKind::Otlp if e.direct_orchestrator => format!(
            "sending OTLP over {} to the orchestrator at {} (ORCHESTRATOR_BASE_URL with NODE_TOKEN){}",
            protocol_words(e.protocol),
            display_url(&e.endpoint),
            if e.orchestrator_insecure_tls {
                "; its certificate is NOT checked (AGENT_INSECURE_TLS)"
            } else {
                ""
            }
        ),
        ExporterKind::Otlp if e.endpoint_explicit => format!(
            "sending OTLP over {} to {}",
            protocol_words(e.protocol),
            display_url(&e.endpoint)
        ),
        ExporterKind::Otlp => format!(
            "sending OTLP over {} to {}, the OpenTelemetry default since no collector is configured; \
             set OTEL_EXPORTER_OTLP_ENDPOINT (e.g. http://collector:4318) to send elsewhere, or \
             OTEL_METRICS_EXPORTER=none to stop sending",
            protocol_words(e.protocol),
            display_url(&e.endpoint)
        ),
    }
}

/// The startup lines, logged before anything is sampled.
pub(crate) fn announce(cfg: &Config, local: Option<SocketAddr>) {
    let (min, max) = cfg.sample_interval;
    tracing::info!(
        "node-agent {} starting: sampling this node, its containers and game servers every {}-{} s",
        env!("CARGO_PKG_VERSION"),
        trim_secs(min.as_secs_f64()),
        trim_secs(max.as_secs_f64()),
    );
    match local {
        Some(a) => tracing::info!(
            "metrics can be read at http://{a}/metrics (also /healthz and /readyz){}; \
             NODE_AGENT_HTTP_LISTEN sets the address, off turns it off",
            if a.ip().is_loopback() {
                ", from this machine only"
            } else {
                ""
            }
        ),
        None if cfg.http_listen.is_none() => {
            tracing::info!("the local /metrics endpoint is off (NODE_AGENT_HTTP_LISTEN=off)")
        }
        None => {}
    }
    tracing::info!("{}", destination(&cfg.export));
    if cfg.export.exporter == ExporterKind::Otlp {
        match &cfg.queue.spool_dir {
            Some(d) => tracing::info!(
                "while the collector does not answer, samples wait in {} (NODE_AGENT_SPOOL_DIR) and are sent when it does",
                d.display()
            ),
            None => tracing::info!(
                "no spool directory: while the collector does not answer, samples wait in memory only"
            ),
        }
    }
}

/// `5` rather than `5.0`, `2.5` as is.
fn trim_secs(s: f64) -> String {
    if s.fract() == 0.0 {
        format!("{s:.0}")
    } else {
        format!("{s}")
    }
}

#[cfg(test)]
mod tests {
    use super::display_url;

    #[test]
    fn urls_lose_credentials_and_queries() {
        assert_eq!(
            display_url("https://u:secret@c.example:4318/v1/metrics?token=x"),
            "https://c.example:4318/v1/metrics?…"
        );
        assert_eq!(
            display_url("http://localhost:4318/v1/metrics"),
            "http://localhost:4318/v1/metrics"
        );
        assert_eq!(display_url("http://c:4317"), "http://c:4317");
    }
}
