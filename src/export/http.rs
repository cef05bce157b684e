//! OTLP/HTTP transport, protobuf or JSON, optionally gzip-compressed, with the specification's
//! response handling and the limits a hostile or broken peer needs.
//!
//! - **Paths**: each signal has its own URL: the metrics endpoint as configured, the logs URL
//!   derived from it (`…/v1/metrics` → `…/v1/logs`, else the endpoint's origin + `/v1/logs`).
//! - **Responses**: 2xx is accepted; its body (at most [`OK_BODY_MAX`]) is read for
//!   `partial_success` (see `response.rs`). 429, 502, 503 and 504 are retried, honouring
//!   `Retry-After` (seconds or an HTTP date); 413 says the request is too large (the sender
//!   splits it) and 400 that its content is invalid (the sender bisects a merged request to
//!   drop only the bad batch); every other status is not retried (OTLP specification,
//!   "Failures"). Of an error body only the first [`ERROR_BODY_MAX`] bytes are read, never the
//!   whole body: a collector (or whatever answers in its place) can send gigabytes.
//! - **Time**: each request carries the timeout the sender gives it (which grows when the
//!   collector is slow), capped at [`max_attempt_timeout`].
//! - **Redirects are not followed**: a 3xx is reported with its `Location` and the batch is
//!   refused, so header values (API keys) never go to another host, and an `https` endpoint is
//!   never downgraded.
//! - **TLS** is verified against the system roots plus `otlp_certificate`. `AGENT_INSECURE_TLS`
//!   never applies to a collector; it reaches this client only in direct mode, where the
//!   endpoint is the orchestrator it was meant for.
//! - **Less work per request**: one gzip state and reused encode buffers for the transport's
//!   life (`gzip.rs`).

use super::config::{ExportConfig, OtlpProtocol};
use super::gzip::Gzip;
use super::json;
use super::response::{PartialLog, error_body_reason, partial_success};
use super::signal::max_attempt_timeout;
use super::{Accepted, SendError, SetupError, Signal};
use crate::sys::text::{PEER_TEXT_MAX, peer_text, redact_userinfo};
use bytes::{Bytes, BytesMut};
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use parking_lot::Mutex;
use prost::Message;
use reqwest::header::{self, HeaderMap, HeaderName, HeaderValue};
use std::time::{Duration, SystemTime};

/// The most of a success body read (an `ExportMetricsServiceResponse` is a few bytes; its
/// `error_message` a sentence).
pub(crate) const OK_BODY_MAX: usize = 64 * 1024;
/// The most of an error body read: enough for the reason, nothing like the body's size.
pub(crate) const ERROR_BODY_MAX: usize = 4 * 1024;

pub struct HttpTransport {
    client: reqwest::Client,
    /// Per signal ([`Signal::index`]), without userinfo.
    urls: [String; 2],
    pub(crate) timeout: Duration,
    json: bool,
    headers: HeaderMap,
    /// `None` without compression.
    gzip: Option<Mutex<Gzip>>,
    /// The JSON text and the body it becomes, reused between requests.
    json_buf: Mutex<(String, BytesMut)>,
    /// Per signal.
    partial: [PartialLog; 2],
}

/// Builds the reqwest client of the OTLP/HTTP path: bounded in time, no redirects, verified TLS
/// (the orchestrator's insecure switch only in direct mode).
pub(crate) fn client(cfg: &ExportConfig) -> Result<reqwest::Client, SetupError> {
    let mut b = reqwest::Client::builder()
        .timeout(cfg.timeout)
        .connect_timeout(Duration::from_secs(5).min(cfg.timeout))
        .pool_idle_timeout(Duration::from_secs(60))
        .redirect(reqwest::redirect::Policy::none())
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
    if cfg.direct_orchestrator && cfg.orchestrator_insecure_tls {
        b = b.tls_danger_accept_invalid_certs(true);
    }
    if !cfg
        .endpoint
        .get(..8)
        .is_some_and(|s| s.eq_ignore_ascii_case("https://"))
    {
        // A plain-HTTP endpoint never speaks TLS (redirects are not followed): no trust store.
        // Loading and parsing the system's roots was a tenth of the instructions of a 40 s run
        // and stayed in memory for nothing.
        b = b.tls_certs_only([]);
    }
    b.build()
        .map_err(|e| SetupError::new("otlp_endpoint", format!("HTTP client: {e}")))
}

impl HttpTransport {
    pub(crate) fn new(cfg: &ExportConfig) -> Result<Self, SetupError> {
        let mut headers = HeaderMap::new();
        for (i, (k, v)) in cfg.headers.iter().enumerate() {
            // Neither the name nor the value is echoed: a misplaced `:` puts the secret in the name.
            let name = HeaderName::from_bytes(k.as_bytes()).map_err(|_| {
                SetupError::new(
                    "otlp_headers",
                    format!("item {} has an invalid name", i + 1),
                )
            })?;
            let mut value = HeaderValue::from_str(v).map_err(|_| {
                SetupError::new(
                    "otlp_headers",
                    format!("item {} has an invalid value", i + 1),
                )
            })?;
            value.set_sensitive(true);
            headers.insert(name, value);
        }
        let json = cfg.protocol == OtlpProtocol::HttpJson;
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(if json {
                "application/json"
            } else {
                "application/x-protobuf"
            }),
        );
        if cfg.gzip {
            headers.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
        }
        let metrics = redact_userinfo(&cfg.endpoint).into_owned();
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
            json,
            headers,
            gzip: cfg.gzip.then(|| Mutex::new(Gzip::default())),
            json_buf: Mutex::new((String::new(), BytesMut::new())),
            partial: Default::default(),
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

    /// The request body: the payload as it is (protobuf) or as OTLP/JSON, then gzip.
    fn body(&self, signal: Signal, payload: Bytes) -> Result<Bytes, SendError> {
        let body = if self.json {
            // A batch that does not decode cannot be sent as JSON; alone, it is dropped.
            let invalid = |e: prost::DecodeError| SendError::Invalid {
                reason: format!("batch is not a valid OTLP request: {e}"),
            };
            let mut bufs = self.json_buf.lock();
            let (text, out) = &mut *bufs;
            match signal {
                Signal::Metrics => json::write_request(
                    &ExportMetricsServiceRequest::decode(payload).map_err(invalid)?,
                    text,
                ),
                Signal::Logs => json::write_logs_request(
                    &ExportLogsServiceRequest::decode(payload).map_err(invalid)?,
                    text,
                ),
            }
            if let Some(g) = &self.gzip {
                return g.lock().compress(text.as_bytes()).map_err(gzip_error);
            }
            out.clear();
            out.extend_from_slice(text.as_bytes());
            out.split().freeze()
        } else {
            payload
        };
        match &self.gzip {
            Some(g) => g.lock().compress(&body).map_err(gzip_error),
            None => Ok(body),
        }
    }

    pub(crate) async fn send(
        &self,
        signal: Signal,
        payload: Bytes,
        timeout: Duration,
    ) -> Result<Accepted, SendError> {
        let url = self.url(signal);
        let body = self.body(signal, payload)?;
        let response = self
            .client
            .post(url)
            // The sender bounds the attempt by `timeout`; this only backs it up.
            .timeout(timeout.min(max_attempt_timeout(self.timeout)) + Duration::from_secs(1))
            .headers(self.headers.clone())
            .body(body)
            .send()
            .await
            .map_err(|e| SendError::Retryable {
                reason: format!("POST {url}: {}", error_chain(&e.without_url())),
                retry_after: None,
            })?;
        let status = response.status();
        if status.is_success() {
            let json = content_type(&response).starts_with("application/json");
            let (body, _) = read_prefix(response, OK_BODY_MAX).await;
            let rejected = self.partial[signal.index()].note(
                signal,
                url,
                partial_success(signal, &body, json),
            );
            return Ok(Accepted { rejected });
        }
        let code = status.as_u16();
        if status.is_redirection() {
            let location = response
                .headers()
                .get(header::LOCATION)
                .map(|l| {
                    peer_text(
                        &redact_userinfo(&String::from_utf8_lossy(l.as_bytes())),
                        200,
                    )
                })
                .unwrap_or_else(|| "nowhere".into());
            return Err(SendError::Permanent {
                reason: format!(
                    "POST {url}: HTTP {code} redirect to {location}, not followed (set otlp_endpoint to the collector's final URL)"
                ),
            });
        }
        let retry_after = response
            .headers()
            .get(header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(retry_after);
        let ctype = content_type(&response);
        let (body, _) = read_prefix(response, ERROR_BODY_MAX).await;
        let why = error_body_reason(&body, &ctype);
        let reason = format!(
            "POST {url}: HTTP {code}{}{why}",
            if why.is_empty() { "" } else { ": " }
        );
        Err(match code {
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

fn gzip_error(e: flate2::CompressError) -> SendError {
    SendError::Permanent {
        reason: format!("gzip: {e}"),
    }
}

fn content_type(r: &reqwest::Response) -> String {
    r.headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase()
}

/// At most `cap` bytes of the body, and whether there was more. Stops reading at the cap (the
/// connection is then dropped, not reused); a read error ends it too (the status is what counts).
async fn read_prefix(mut response: reqwest::Response, cap: usize) -> (Vec<u8>, bool) {
    let mut buf = Vec::new();
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                let room = cap - buf.len();
                if chunk.len() > room {
                    buf.extend_from_slice(&chunk[..room]);
                    return (buf, true);
                }
                buf.extend_from_slice(&chunk);
            }
            Ok(None) | Err(_) => return (buf, false),
        }
    }
}

/// `Retry-After`: delay-seconds or an HTTP date (RFC 9110, 10.2.3).
fn retry_after(v: &str) -> Option<Duration> {
    let v = v.trim();
    let wait = match v.parse::<u64>() {
        Ok(secs) => Duration::from_secs(secs),
        Err(_) => http_date(v)?
            .duration_since(SystemTime::now())
            .unwrap_or(Duration::ZERO),
    };
    // "Now" (0, or a date in the past) means "use your backoff", not a tight retry loop.
    (!wait.is_zero()).then_some(wait)
}

/// IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`), the form HTTP requires senders to use.
fn http_date(v: &str) -> Option<SystemTime> {
    let mut it = v.split_ascii_whitespace();
    let (_, day, month, year, time, gmt) = (
        it.next()?,
        it.next()?,
        it.next()?,
        it.next()?,
        it.next()?,
        it.next()?,
    );
    if gmt != "GMT" || it.next().is_some() {
        return None;
    }
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let month = MONTHS.iter().position(|m| *m == month)? as i64 + 1;
    let (day, year): (i64, i64) = (day.parse().ok()?, year.parse().ok()?);
    let mut hms = time.split(':').map(|p| p.parse::<i64>().ok());
    let (h, m, s) = (hms.next()??, hms.next()??, hms.next()??);
    if !(1..=31).contains(&day) || h > 23 || m > 59 || s > 60 || year < 1970 {
        return None;
    }
    let days = crate::sys::clock::days_from_civil(year, month, day);
    let secs = days * 86_400 + h * 3600 + m * 60 + s;
    Some(SystemTime::UNIX_EPOCH + Duration::from_secs(u64::try_from(secs).ok()?))
}

/// An error and its sources on one line, capped (a local error, but it may quote a peer).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(inner) = cur {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        cur = inner.source();
    }
    peer_text(&s, PEER_TEXT_MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_in_seconds_or_as_a_date() {
        assert_eq!(retry_after(" 7 "), Some(Duration::from_secs(7)));
        assert_eq!(retry_after("soon"), None);
        assert_eq!(
            http_date("Sun, 06 Nov 1994 08:49:37 GMT"),
            Some(SystemTime::UNIX_EPOCH + Duration::from_secs(784_111_777))
        );
        assert_eq!(retry_after("Sun, 06 Nov 1994 08:49:37 GMT"), None);
        assert_eq!(retry_after("0"), None);
        assert_eq!(http_date("Sun, 06 Nov 1994 08:49:37 CET"), None);
        let later = SystemTime::now() + Duration::from_secs(120);
        let secs = later
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        // Format `later` the way a server would, then read it back.
        let days = secs / 86_400;
        let (y, mo, d) = crate::sys::clock::civil_from_days(days as i64);
        const MONTHS: [&str; 12] = [
            "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
        ];
        let rem = secs % 86_400;
        let date = format!(
            "Mon, {d:02} {} {y} {:02}:{:02}:{:02} GMT",
            MONTHS[mo as usize - 1],
            rem / 3600,
            rem % 3600 / 60,
            rem % 60
        );
        let wait = retry_after(&date).unwrap();
        assert!(
            wait > Duration::from_secs(100) && wait <= Duration::from_secs(120),
            "{date}: {wait:?}"
        );
    }
}
