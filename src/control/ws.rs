//! The WebSocket transport: one connection, binary messages of a varint header (0) and the
//! protobuf message, either side may send at any time.
//!
//! Authentication (bearer token, extra headers) happens on the HTTP upgrade, so a 401 or a
//! throttling status (429/503 with `Retry-After`) is seen there. Incoming messages and frames are
//! bounded by the size limit in tungstenite itself (it refuses to buffer more); the upgrade and
//! every send are bounded in time; waiting for replies is bounded by the client loop.

use super::http::request_headers;
use super::proto::AgentToServer;
use super::proto::ServerToAgent;
use super::retry::{TransportError, parse_retry_after};
use super::{OpampError, wire};
use crate::config::opamp::{OpampConfig, safe_url};
use futures_util::{SinkExt, StreamExt};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderMap;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::{Connector, MaybeTlsStream, WebSocketStream};

/// Something read from a WebSocket.
pub enum Incoming {
    Message(Box<ServerToAgent>),
    /// A data message that is not a valid OpAMP message (logged and counted, not fatal).
    Malformed(String),
    Pong,
}

/// What is needed to (re)connect.
pub struct WsConnector {
    url: String,
    safe: String,
    headers: HeaderMap,
    tls: Arc<rustls::ClientConfig>,
    max: usize,
    timeout: Duration,
}

pub struct WsConn {
    stream: WebSocketStream<MaybeTlsStream<TcpStream>>,
    safe: String,
    max: usize,
    timeout: Duration,
}

impl WsConnector {
    pub fn new(cfg: &OpampConfig, tls: rustls::ClientConfig) -> Result<Self, OpampError> {
        // reqwest and tungstenite share the `http` crate's header types.
        let headers = request_headers(cfg)?;
        Ok(WsConnector {
            url: cfg.endpoint.trim().to_string(),
            safe: safe_url(&cfg.endpoint),
            headers,
            tls: Arc::new(tls),
            max: cfg.max_message_bytes,
            timeout: cfg.timeout,
        })
    }

    fn err(&self, reason: impl Into<String>) -> TransportError {
        TransportError::new(format!("WebSocket {}: {}", self.safe, reason.into()))
    }

    pub async fn connect(&self) -> Result<WsConn, TransportError> {
        let mut req = self
            .url
            .as_str()
            .into_client_request()
            .map_err(|e| self.err(format!("bad URL: {e}")))?;
        for (k, v) in &self.headers {
            req.headers_mut().insert(k, v.clone());
        }
        let mut ws_cfg = WebSocketConfig::default();
        // One extra varint byte of header on top of the message limit.
        ws_cfg.max_message_size = Some(self.max + 10);
        ws_cfg.max_frame_size = Some(self.max + 10);
        let connect = tokio_tungstenite::connect_async_tls_with_config(
            req,
            Some(ws_cfg),
            true,
            Some(Connector::Rustls(self.tls.clone())),
        );
        let (stream, _resp) = match tokio::time::timeout(self.timeout, connect).await {
            Err(_) => return Err(self.err(format!("no upgrade within {:?}", self.timeout))),
            Ok(Err(WsError::Http(resp))) => {
                let status = resp.status();
                let hint = match status.as_u16() {
                    401 | 403 => " (check the OpAMP token and headers)",
                    429 | 503 => " (server busy)",
                    _ => "",
                };
                let mut e = self.err(format!("upgrade refused: HTTP {status}{hint}"));
                if matches!(status.as_u16(), 429 | 503) {
                    e.retry_after = resp
                        .headers()
                        .get("retry-after")
                        .and_then(|v| v.to_str().ok())
                        .and_then(parse_retry_after);
                }
                return Err(e);
            }
            Ok(Err(e)) => return Err(self.err(e.to_string())),
            Ok(Ok(s)) => s,
        };
        Ok(WsConn {
            stream,
            safe: self.safe.clone(),
            max: self.max,
            timeout: self.timeout,
        })
    }
}

impl WsConn {
    fn err(&self, reason: impl Into<String>) -> TransportError {
        TransportError::new(format!("WebSocket {}: {}", self.safe, reason.into()))
    }

    pub async fn send(&mut self, msg: &AgentToServer) -> Result<(), TransportError> {
        let frame = wire::encode_frame(msg);
        self.send_raw(Message::Binary(frame.into())).await
    }

    pub async fn ping(&mut self) -> Result<(), TransportError> {
        self.send_raw(Message::Ping(Vec::new().into())).await
    }

    async fn send_raw(&mut self, m: Message) -> Result<(), TransportError> {
        match tokio::time::timeout(self.timeout, self.stream.send(m)).await {
            Err(_) => Err(self.err(format!("send not done within {:?}", self.timeout))),
            Ok(Err(e)) => Err(self.err(format!("send: {e}"))),
            Ok(Ok(())) => Ok(()),
        }
    }

    /// The next message from the server. Cancel-safe (the stream keeps partial frames).
    pub async fn recv(&mut self) -> Result<Incoming, TransportError> {
        loop {
            let m = match self.stream.next().await {
                None => return Err(self.err("connection closed")),
                Some(Err(e)) => return Err(self.err(e.to_string())),
                Some(Ok(m)) => m,
            };
            return Ok(match m {
                Message::Binary(b) => match wire::decode_frame(&b, self.max) {
                    Ok(msg) => Incoming::Message(Box::new(msg)),
                    Err(e) => Incoming::Malformed(e.0),
                },
                Message::Text(_) => {
                    Incoming::Malformed("text message (OpAMP messages are binary)".into())
                }
                Message::Pong(_) => Incoming::Pong,
                Message::Close(frame) => {
                    let why = frame
                        .map(|f| {
                            format!(
                                " ({} {})",
                                u16::from(f.code),
                                super::remote::printable(&f.reason)
                            )
                        })
                        .unwrap_or_default();
                    return Err(self.err(format!("server closed the connection{why}")));
                }
                // Pings are answered by tungstenite; raw frames are not surfaced when reading.
                Message::Ping(_) | Message::Frame(_) => continue,
            });
        }
    }

    /// AgentDisconnect, then the close handshake, each bounded in time.
    pub async fn goodbye(mut self, last: &AgentToServer) -> Result<(), TransportError> {
        self.timeout = self.timeout.min(Duration::from_secs(5));
        self.send(last).await?;
        self.close().await;
        Ok(())
    }

    /// The close handshake, bounded in time.
    pub async fn close(mut self) {
        let wait = self.timeout.min(Duration::from_secs(5));
        let _ = tokio::time::timeout(wait, async {
            if self.stream.close(None).await.is_ok() {
                // Drain until the server's Close arrives.
                while let Some(Ok(_)) = self.stream.next().await {}
            }
        })
        .await;
    }
}
