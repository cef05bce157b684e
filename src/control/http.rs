//! The plain HTTP transport: each `AgentToServer` is a POST (`application/x-protobuf`, gzip
//! when enabled) and the response body is the `ServerToAgent`. The client polls at the
//! heartbeat interval so the server gets a chance to answer with offers.
//!
//! The response is read in chunks up to the size limit (a `Content-Length` over it is refused
//! before reading), a gzip response is inflated with the same limit, and the whole exchange has
//! one deadline. Redirects are not followed: they would carry the bearer token elsewhere.
//! HTTP 429 and 503 are throttling, with `Retry-After` in seconds or as an HTTP date.

use super::proto::{AgentToServer, ServerToAgent};
use super::retry::{TransportError, parse_retry_after};
use super::{OpampError, wire};
use crate::config::opamp::{OpampConfig, safe_url};
use prost::Message;
use reqwest::header::{self, HeaderMap, HeaderName, HeaderValue};
use std::io::Write;
use std::time::Duration;

pub struct HttpConn {
    client: reqwest::Client,
    url: String,
    safe: String,
    headers: HeaderMap,
    gzip: bool,
    max: usize,
    timeout: Duration,
}

/// The fixed request headers: bearer token and extra headers (all marked sensitive so no debug
/// output shows them), the content type, gzip.
pub fn request_headers(cfg: &OpampConfig) -> Result<HeaderMap, OpampError> {
    let mut headers = HeaderMap::new();
    for (k, v) in &cfg.headers {
        let name = HeaderName::from_bytes(k.as_bytes())
            .map_err(|_| OpampError::Config(format!("`{k}` is not a valid header name")))?;
        let mut value = HeaderValue::from_str(v).map_err(|_| {
            OpampError::Config(format!(
                "the value of header `{k}` is not a valid header value"
            ))
        })?;
        value.set_sensitive(true);
        headers.insert(name, value);
    }
    if let Some(token) = &cfg.token {
        let mut value = HeaderValue::from_str(&format!("Bearer {token}"))
            .map_err(|_| OpampError::Config("the token is not a valid header value".into()))?;
        value.set_sensitive(true);
        headers.insert(header::AUTHORIZATION, value);
    }
    headers.insert(
        header::USER_AGENT,
        HeaderValue::from_static(concat!("node-agent/", env!("CARGO_PKG_VERSION"))),
    );
    Ok(headers)
}

impl HttpConn {
    pub fn new(cfg: &OpampConfig, tls: rustls::ClientConfig) -> Result<Self, OpampError> {
        let client = reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            .timeout(cfg.timeout)
            .connect_timeout(cfg.timeout)
            .pool_idle_timeout(Duration::from_secs(90))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| OpampError::Config(format!("HTTP client: {}", e.without_url())))?;
        let mut headers = request_headers(cfg)?;
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/x-protobuf"),
        );
        headers.insert(header::ACCEPT_ENCODING, HeaderValue::from_static("gzip"));
        Ok(HttpConn {
            client,
            url: cfg.endpoint.trim().to_string(),
            safe: safe_url(&cfg.endpoint),
            headers,
            gzip: cfg.gzip,
            max: cfg.max_message_bytes,
            timeout: cfg.timeout,
        })
    }

    fn err(&self, reason: impl Into<String>) -> TransportError {
        TransportError::new(format!("POST {}: {}", self.safe, reason.into()))
    }

    /// One request/response exchange.
    pub async fn exchange(&self, msg: &AgentToServer) -> Result<ServerToAgent, TransportError> {
        tokio::time::timeout(self.timeout, self.exchange_inner(msg))
            .await
            .unwrap_or_else(|_| Err(self.err(format!("no reply within {:?}", self.timeout))))
    }

    async fn exchange_inner(&self, msg: &AgentToServer) -> Result<ServerToAgent, TransportError> {
        let body = msg.encode_to_vec();
        let mut req = self.client.post(&self.url).headers(self.headers.clone());
        req = req.header(
            "OpAMP-Instance-UID",
            super::store::uuid_string(&msg.instance_uid),
        );
        let body = if self.gzip {
            req = req.header(header::CONTENT_ENCODING, "gzip");
            let mut enc = flate2::write::GzEncoder::new(
                Vec::with_capacity(body.len() / 2 + 32),
                flate2::Compression::fast(),
            );
            enc.write_all(&body)
                .and_then(|_| enc.finish())
                .map_err(|e| self.err(format!("gzip: {e}")))?
        } else {
            body
        };
        let mut resp = req
            .body(body)
            .send()
            .await
            .map_err(|e| self.err(error_chain(&e)))?;
        let status = resp.status();
        if !status.is_success() {
            let retry_after = resp
                .headers()
                .get(header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(parse_retry_after);
            let hint = match status.as_u16() {
                401 | 403 => " (check the OpAMP token and headers)",
                429 | 503 => " (server busy)",
                413 => " (the server refuses the message size)",
                _ => "",
            };
            let mut e = self.err(format!("HTTP {status}{hint}"));
            if matches!(status.as_u16(), 429 | 503) {
                e.retry_after = retry_after;
            }
            return Err(e);
        }
        if resp.content_length().is_some_and(|n| n > self.max as u64) {
            return Err(self.err(format!(
                "reply of {} bytes is over the {}-byte limit",
                resp.content_length().unwrap_or(0),
                self.max
            )));
        }
        let gzipped = resp
            .headers()
            .get(header::CONTENT_ENCODING)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("gzip"));
        let mut buf = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(|e| self.err(error_chain(&e)))? {
            if buf.len() + chunk.len() > self.max {
                return Err(self.err(format!("reply is over the {}-byte limit", self.max)));
            }
            buf.extend_from_slice(&chunk);
        }
        let buf = if gzipped {
            wire::gunzip_bounded(&buf, self.max).map_err(|e| self.err(e.0))?
        } else {
            buf
        };
        wire::decode_message(&buf, self.max).map_err(|e| self.err(e.0))
    }
}

/// The error and its causes, without the URL (which may carry credentials).
fn error_chain(e: &reqwest::Error) -> String {
    use std::error::Error;
    let mut s = if e.is_timeout() {
        "timed out".to_string()
    } else if e.is_connect() {
        "cannot connect".to_string()
    } else {
        "request failed".to_string()
    };
    let mut src = e.source();
    while let Some(cause) = src {
        s.push_str(": ");
        s.push_str(&cause.to_string());
        src = cause.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A one-shot HTTP server on loopback answering `reply` to the first request; returns the
    /// URL and a receiver of the raw request head.
    async fn one_shot(reply: Vec<u8>) -> (String, tokio::sync::oneshot::Receiver<String>) {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/v1/opamp", l.local_addr().unwrap());
        let (tx, rx) = tokio::sync::oneshot::channel();
        tokio::spawn(async move {
            let (mut s, _) = l.accept().await.unwrap();
            let mut buf = vec![0u8; 65536];
            let mut got = Vec::new();
            loop {
                let n = s.read(&mut buf).await.unwrap();
                got.extend_from_slice(&buf[..n]);
                if n == 0 || got.windows(4).any(|w| w == b"\r\n\r\n") {
                    break;
                }
            }
            let _ = tx.send(String::from_utf8_lossy(&got).into_owned());
            s.write_all(&reply).await.unwrap();
            let _ = s.shutdown().await;
        });
        (url, rx)
    }

    fn conn(url: &str, max: usize) -> HttpConn {
        let mut cfg = OpampConfig::new(url, "/tmp").unwrap();
        cfg.token = Some("tok-123".into());
        cfg.max_message_bytes = max;
        cfg.timeout = Duration::from_secs(5);
        let tls = super::super::tls::client_config(&cfg.tls, false).unwrap();
        HttpConn::new(&cfg, tls).unwrap()
    }

    #[tokio::test]
    async fn throttling_carries_retry_after_and_sends_the_headers() {
        let (url, head) = one_shot(
            b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 7\r\nContent-Length: 0\r\n\r\n"
                .to_vec(),
        )
        .await;
        let c = conn(&url, 4096);
        let e = c
            .exchange(&AgentToServer {
                instance_uid: vec![1; 16],
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(e.retry_after, Some(Duration::from_secs(7)));
        assert!(e.reason.contains("503"), "{}", e.reason);
        let head = head.await.unwrap().to_ascii_lowercase();
        assert!(head.contains("authorization: bearer tok-123"), "{head}");
        assert!(head.contains("content-type: application/x-protobuf"));
        assert!(head.contains("content-encoding: gzip"));
        assert!(head.contains("opamp-instance-uid: 01010101-0101-0101-0101-010101010101"));
    }

    #[tokio::test]
    async fn oversized_and_gzip_bomb_replies_are_refused() {
        let (url, _h) =
            one_shot(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n".to_vec()).await;
        let e = conn(&url, 4096)
            .exchange(&AgentToServer::default())
            .await
            .unwrap_err();
        assert!(e.reason.contains("limit"), "{}", e.reason);

        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        enc.write_all(&vec![0u8; 1 << 20]).unwrap();
        let bomb = enc.finish().unwrap();
        let mut reply = format!(
            "HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: {}\r\n\r\n",
            bomb.len()
        )
        .into_bytes();
        reply.extend_from_slice(&bomb);
        let (url, _h) = one_shot(reply).await;
        let e = conn(&url, 65536)
            .exchange(&AgentToServer::default())
            .await
            .unwrap_err();
        assert!(e.reason.contains("limit"), "{}", e.reason);
    }

    #[tokio::test]
    async fn a_silent_server_times_out() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/v1/opamp", l.local_addr().unwrap());
        let _keep = tokio::spawn(async move {
            let (_s, _) = l.accept().await.unwrap();
            tokio::time::sleep(Duration::from_secs(30)).await;
        });
        let mut cfg = OpampConfig::new(&url, "/tmp").unwrap();
        cfg.timeout = Duration::from_millis(300);
        let c = HttpConn::new(
            &cfg,
            super::super::tls::client_config(&cfg.tls, false).unwrap(),
        )
        .unwrap();
        let t = std::time::Instant::now();
        let e = c.exchange(&AgentToServer::default()).await.unwrap_err();
        assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());
        assert!(!e.reason.contains("tok"), "{}", e.reason);
    }
}
