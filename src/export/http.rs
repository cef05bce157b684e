//! OTLP/HTTP transport, protobuf or JSON, optionally gzip-compressed.

use super::config::{ExportConfig, OtlpProtocol};
use super::signal::max_attempt_timeout;
use super::{SendError, SetupError, Signal};
use bytes::Bytes;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use prost::Message;
use std::io::Write;
use std::time::Duration;

pub struct HttpTransport {
    client: reqwest::Client,
    /// Per signal ([`Signal::index`]): the metrics endpoint as configured; the others derived
    /// from it (`…/v1/metrics` → `…/v1/logs`, else the endpoint's origin + the signal's path).
    urls: [String; 2],
    pub(crate) timeout: Duration,
    json: bool,
    gzip: bool,
    headers: reqwest::header::HeaderMap,
}

/// Builds the reqwest client shared by the orchestrator and OTLP/HTTP paths.
pub(crate) fn client(cfg: &ExportConfig) -> Result<reqwest::Client, SetupError> {
    let mut b = reqwest::Client::builder()
        .timeout(cfg.timeout)
        .connect_timeout(Duration::from_secs(5).min(cfg.timeout))
        .pool_idle_timeout(Duration::from_secs(60))
        .user_agent(concat!("node-agent/", env!("CARGO_PKG_VERSION")));
    if let Some(ca) = &cfg.tls.ca_pem {
        let certs = reqwest::Certificate::from_pem_bundle(ca)
            .map_err(|e| SetupError::new("otlp_certificate", e.to_string()))?;
        b = b.tls_certs_merge(certs);
    }
    if let (Some(cert), Some(key)) = (&cfg.tls.client_cert_pem, &cfg.tls.client_key_pem) {
        let mut pem = cert.clone();
        pem.extend_from_slice(b"\n");
        pem.extend_from_slice(key);
        let id = reqwest::Identity::from_pem(&pem)
            .map_err(|e| SetupError::new("otlp_client_certificate", e.to_string()))?;
        b = b.identity(id);
    }
    if cfg.insecure_skip_verify {
        b = b.tls_danger_accept_invalid_certs(true);
    }
    b.build()
        .map_err(|e| SetupError::new("otlp_endpoint", format!("HTTP client: {e}")))
}

impl HttpTransport {
    pub(crate) fn new(cfg: &ExportConfig) -> Result<Self, SetupError> {
        let mut headers = reqwest::header::HeaderMap::new();
        for (k, v) in &cfg.headers {
            let name = reqwest::header::HeaderName::from_bytes(k.as_bytes()).map_err(|_| {
                SetupError::new("otlp_headers", format!("`{k}` is not a valid header name"))
            })?;
            let mut value = reqwest::header::HeaderValue::from_str(v).map_err(|_| {
                SetupError::new(
                    "otlp_headers",
                    format!("the value of `{k}` is not a valid header value"),
                )
            })?;
            value.set_sensitive(true);
            headers.insert(name, value);
        }
        let metrics = cfg.endpoint.clone();
        let base = match metrics.strip_suffix(Signal::Metrics.http_path()) {
            Some(b) => b.to_string(),
            None => reqwest::Url::parse(&metrics)
                .map(|u| u.origin().ascii_serialization())
                .unwrap_or_else(|_| metrics.clone()),
        };
        let logs = format!("{base}{}", Signal::Logs.http_path());
        Ok(HttpTransport {
            client: client(cfg)?,
            urls: [metrics, logs],
            timeout: cfg.timeout,
            json: cfg.protocol == OtlpProtocol::HttpJson,
            gzip: cfg.gzip,
            headers,
        })
    }

    /// Sends `signal` to `url` (a transport built from that signal's own configuration).
    pub(crate) fn with_url(mut self, signal: Signal, url: &str) -> Self {
        self.urls[signal.index()] = url.to_string();
        self
    }

    /// The URL requests of `signal` go to.
    pub(crate) fn url(&self, signal: Signal) -> &str {
        &self.urls[signal.index()]
    }

    pub(crate) async fn send(
        &self,
        signal: Signal,
        payload: Bytes,
        timeout: Duration,
    ) -> Result<(), SendError> {
        let url = self.url(signal);
        let (body, content_type) = if self.json {
            let invalid = |e: prost::DecodeError| SendError::Invalid {
                reason: format!("batch is not a valid OTLP request: {e}"),
            };
            let json = match signal {
                Signal::Metrics => ExportMetricsServiceRequest::decode(payload)
                    .map_err(invalid)
                    .map(|r| serde_json::to_vec(&r))?,
                Signal::Logs => ExportLogsServiceRequest::decode(payload)
                    .map_err(invalid)
                    .map(|r| serde_json::to_vec(&r))?,
            }
            .map_err(|e| SendError::Permanent {
                reason: format!("JSON encoding: {e}"),
            })?;
            (Bytes::from(json), "application/json")
        } else {
            (payload, "application/x-protobuf")
        };
        let mut request = self
            .client
            .post(url)
            // The queue bounds the attempt by `timeout`; this only backs it up.
            .timeout(timeout.min(max_attempt_timeout(self.timeout)) + Duration::from_secs(1))
            .headers(self.headers.clone())
            .header(reqwest::header::CONTENT_TYPE, content_type);
        let body = if self.gzip {
            request = request.header(reqwest::header::CONTENT_ENCODING, "gzip");
            let mut enc = flate2::write::GzEncoder::new(
                Vec::with_capacity(body.len() / 4),
                flate2::Compression::fast(),
            );
            enc.write_all(&body)
                .and_then(|_| enc.finish())
                .map(Bytes::from)
                .map_err(|e| SendError::Permanent {
                    reason: format!("gzip: {e}"),
                })?
        } else {
            body
        };
        let response = request
            .body(body)
            .send()
            .await
            .map_err(|e| SendError::Retryable {
                reason: format!("POST {url}: {}", error_chain(&e)),
                retry_after: None,
            })?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        // Read a bounded part of the body for the log: collectors put the reason there.
        let text = response.text().await.unwrap_or_default();
        let snippet: String = text.chars().take(200).collect();
        let reason = format!(
            "POST {url}: HTTP {}{}",
            status.as_u16(),
            if snippet.is_empty() {
                String::new()
            } else {
                format!(": {snippet}")
            }
        );
        Err(match status.as_u16() {
            429 | 502 | 503 | 504 => SendError::Retryable {
                reason,
                retry_after,
            },
            413 => SendError::TooLarge { reason },
            400 => SendError::Invalid { reason },
            _ => SendError::Permanent { reason },
        })
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(inner) = cur {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        cur = inner.source();
    }
    s
}
