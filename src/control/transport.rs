//! The two transports behind one face.
//!
//! HTTP is request/response: a send returns the server's reply and nothing arrives otherwise.
//! WebSocket is full duplex: a send returns nothing and replies (or server-initiated offers)
//! arrive through `recv`. The client loop is written once against [`Conn`].

use super::OpampError;
use super::http::HttpConn;
use super::proto::{AgentToServer, ServerToAgent};
use super::retry::TransportError;
use super::ws::{Incoming, WsConn, WsConnector};
use crate::config::opamp::{OpampConfig, TransportKind};

/// How to reach the server.
pub enum Transport {
    Http(HttpConn),
    Ws(WsConnector),
}

impl Transport {
    /// The transport the endpoint's scheme asks for, with its TLS configuration.
    pub fn new(cfg: &OpampConfig) -> Result<Transport, OpampError> {
        let endpoint = cfg.endpoint.to_ascii_lowercase();
        let secure = endpoint.starts_with("https://") || endpoint.starts_with("wss://");
        let tls = super::tls::client_config(&cfg.tls, secure)?;
        Ok(match cfg.transport {
            TransportKind::Http => Transport::Http(HttpConn::new(cfg, tls)?),
            TransportKind::WebSocket => Transport::Ws(WsConnector::new(cfg, tls)?),
        })
    }

    pub async fn connect(&self) -> Result<Conn<'_>, TransportError> {
        match self {
            Transport::Http(h) => Ok(Conn::Http(h)),
            Transport::Ws(c) => Ok(Conn::Ws(Box::new(c.connect().await?))),
        }
    }
}

/// A connection (for HTTP, a handle on the pooled client).
pub enum Conn<'a> {
    Http(&'a HttpConn),
    Ws(Box<WsConn>),
}

impl Conn<'_> {
    /// Sends one message; HTTP returns the reply.
    pub async fn send(
        &mut self,
        msg: &AgentToServer,
    ) -> Result<Option<ServerToAgent>, TransportError> {
        match self {
            Conn::Http(h) => h.exchange(msg).await.map(Some),
            Conn::Ws(w) => w.send(msg).await.map(|_| None),
        }
    }

    /// The next message pushed by the server (never returns for HTTP).
    pub async fn recv(&mut self) -> Result<Incoming, TransportError> {
        match self {
            Conn::Http(_) => std::future::pending().await,
            Conn::Ws(w) => w.recv().await,
        }
    }

    /// A liveness probe when heartbeats are off (WebSocket ping; nothing for HTTP).
    pub async fn ping(&mut self) -> Result<bool, TransportError> {
        match self {
            Conn::Http(_) => Ok(false),
            Conn::Ws(w) => w.ping().await.map(|_| true),
        }
    }

    pub fn is_http(&self) -> bool {
        matches!(self, Conn::Http(_))
    }

    /// Ends the connection without a last message (WebSocket: the close handshake).
    pub async fn close(self) {
        if let Conn::Ws(w) = self {
            w.close().await;
        }
    }

    /// The last message (AgentDisconnect) and, for WebSocket, the close handshake.
    pub async fn goodbye(self, last: &AgentToServer) -> Result<(), TransportError> {
        match self {
            Conn::Http(h) => h.exchange(last).await.map(|_| ()),
            Conn::Ws(w) => w.goodbye(last).await,
        }
    }
}
