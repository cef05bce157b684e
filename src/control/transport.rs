//! The two transports behind one face, and the reconnect backoff.
//!
//! HTTP is request/response: a send returns the server's reply and nothing arrives otherwise.
//! WebSocket is full duplex: a send returns nothing and replies (or server-initiated offers)
//! arrive through `recv`. The client loop is written once against [`Conn`].

use super::http::HttpConn;
use super::proto::{AgentToServer, ServerToAgent};
use super::ws::{WsConn, WsConnector};
use std::fmt;
use std::time::Duration;

/// A failed connection or exchange; `retry_after` when the server said when to come back.
#[derive(Debug, Clone)]
pub struct TransportError {
    pub reason: String,
    pub retry_after: Option<Duration>,
}

impl TransportError {
    pub fn new(reason: impl Into<String>) -> Self {
        TransportError {
            reason: reason.into(),
            retry_after: None,
        }
    }
}

impl fmt::Display for TransportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.reason)?;
        if let Some(d) = self.retry_after {
            write!(f, " (retry after {}s)", d.as_secs())?;
        }
        Ok(())
    }
}

/// Something read from a WebSocket.
pub enum Incoming {
    Message(Box<ServerToAgent>),
    /// A data message that is not a valid OpAMP message (logged and counted, not fatal).
    Malformed(String),
    Pong,
}

/// How to reach the server.
pub enum Transport {
    Http(HttpConn),
    Ws(WsConnector),
}

impl Transport {
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

    /// The last message (AgentDisconnect) and, for WebSocket, the close handshake.
    pub async fn goodbye(self, last: &AgentToServer) -> Result<(), TransportError> {
        match self {
            Conn::Http(h) => h.exchange(last).await.map(|_| ()),
            Conn::Ws(w) => w.goodbye(last).await,
        }
    }
}

/// Exponential backoff with jitter: 1 s, 2 s, 4 s … up to the cap, each drawn from the upper
/// half of its step so that a fleet reconnecting after a server restart spreads out. A server's
/// RetryInfo / Retry-After wins (capped at one hour), plus up to 10% jitter.
pub struct Backoff {
    step: Duration,
    max: Duration,
}

const FIRST_STEP: Duration = Duration::from_secs(1);
const RETRY_AFTER_CAP: Duration = Duration::from_secs(3600);

impl Backoff {
    pub fn new(max: Duration) -> Self {
        Backoff {
            step: FIRST_STEP,
            max: max.max(FIRST_STEP),
        }
    }

    pub fn reset(&mut self) {
        self.step = FIRST_STEP;
    }

    pub fn next(&mut self, retry_after: Option<Duration>) -> Duration {
        let step = self.step;
        self.step = (self.step * 2).min(self.max);
        match retry_after {
            Some(r) => {
                let r = r.min(RETRY_AFTER_CAP);
                r + r.mul_f64(fastrand::f64() * 0.1)
            }
            None => step / 2 + step.mul_f64(fastrand::f64() * 0.5),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_with_jitter_to_the_cap_and_honours_the_server() {
        let mut b = Backoff::new(Duration::from_secs(8));
        let waits: Vec<Duration> = (0..6).map(|_| b.next(None)).collect();
        for (w, step) in waits.iter().zip([1, 2, 4, 8, 8, 8]) {
            let step = Duration::from_secs(step);
            assert!(*w >= step / 2 && *w <= step, "{w:?} for step {step:?}");
        }
        let r = b.next(Some(Duration::from_secs(42)));
        assert!(
            r >= Duration::from_secs(42) && r <= Duration::from_millis(46_200),
            "{r:?}"
        );
        let r = b.next(Some(Duration::from_secs(1_000_000)));
        assert!(r <= Duration::from_secs(3960));
        b.reset();
        assert!(b.next(None) <= Duration::from_secs(1));
    }
}
