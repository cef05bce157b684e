//! What the OpAMP client needs to know, in one struct of its own.
//!
//! The client does not read the agent's settings table: the caller (the runtime, later the
//! settings layer) fills an [`OpampConfig`] and the client checks it once at start. Keeping the
//! client's input this small is what lets it be tested against real servers without the rest of
//! the agent, and it keeps secrets in one place whose `Debug` never shows them.

use super::OpampError;
use super::allow::AllowList;
use super::store::AppliedRemote;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

/// Default interval of heartbeats (WebSocket) and polls (HTTP) when the server sets none.
pub const DEFAULT_HEARTBEAT: Duration = Duration::from_secs(30);
/// Default bound on one server message (after gzip decoding), bytes.
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 4 * 1024 * 1024;
/// Default bound on connecting and on every wait for the server, seconds.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// Default cap of the reconnect backoff.
pub const DEFAULT_BACKOFF_MAX: Duration = Duration::from_secs(300);

/// The two transports of the specification, chosen by the endpoint's scheme.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TransportKind {
    /// `http://` or `https://`: POST per message, polling at the heartbeat interval.
    Http,
    /// `ws://` or `wss://`: one long-lived connection, the server can push at any time.
    WebSocket,
}

/// TLS material, already read from the files the operator named (PEM bytes).
#[derive(Clone, Default)]
pub struct OpampTls {
    /// Extra CA certificates trusted besides the system roots.
    pub ca_pem: Option<Vec<u8>>,
    /// Client certificate (chain) for mutual TLS.
    pub client_cert_pem: Option<Vec<u8>>,
    /// Private key of the client certificate.
    pub client_key_pem: Option<Vec<u8>>,
    /// Skip server certificate verification. Only by an explicit operator setting.
    pub insecure_skip_verify: bool,
}

impl fmt::Debug for OpampTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OpampTls")
            .field("ca", &self.ca_pem.is_some())
            .field("client_cert", &self.client_cert_pem.is_some())
            .field(
                "client_key",
                &self.client_key_pem.as_ref().map(|_| "[redacted]"),
            )
            .field("insecure_skip_verify", &self.insecure_skip_verify)
            .finish()
    }
}

/// Everything the OpAMP client uses. Build with [`OpampConfig::new`] and adjust the fields.
#[derive(Clone)]
pub struct OpampConfig {
    /// `http(s)://host:port/v1/opamp` or `ws(s)://host:port/v1/opamp`.
    pub endpoint: String,
    /// Sent as `Authorization: Bearer <token>` on every request / the WebSocket upgrade.
    pub token: Option<String>,
    /// Extra request headers (values are treated as secrets: never logged).
    pub headers: Vec<(String, String)>,
    pub tls: OpampTls,
    /// Heartbeat (WebSocket) and poll (HTTP) interval until the server sets its own.
    pub heartbeat: Duration,
    /// Largest server message accepted, bytes (after decompression).
    pub max_message_bytes: usize,
    /// Bound on connecting, on each request and on each wait for a reply.
    pub timeout: Duration,
    /// Cap of the reconnect backoff (the server's RetryInfo / Retry-After may ask for longer).
    pub backoff_max: Duration,
    /// Compress request bodies (HTTP) with gzip.
    pub gzip: bool,
    /// Where the instance UID, the last applied remote configuration and the audit log live.
    pub state_dir: PathBuf,
    /// Remote configuration is opt-in: without it AcceptsRemoteConfig is not announced and
    /// offers are ignored.
    pub accept_remote_config: bool,
    /// The settings a remote configuration may set; fixed locally, never by the server.
    pub remote_config_allow: AllowList,
    /// The remote configuration the agent started with (offline mode), if the caller loaded
    /// one with [`super::load_last_applied`] and put it in force. Reported as APPLIED and never
    /// re-applied.
    pub remote_in_force: Option<AppliedRemote>,
}

impl OpampConfig {
    pub fn new(endpoint: impl Into<String>, state_dir: impl Into<PathBuf>) -> Self {
        OpampConfig {
            endpoint: endpoint.into(),
            token: None,
            headers: Vec::new(),
            tls: OpampTls::default(),
            heartbeat: DEFAULT_HEARTBEAT,
            max_message_bytes: DEFAULT_MAX_MESSAGE_BYTES,
            timeout: DEFAULT_TIMEOUT,
            backoff_max: DEFAULT_BACKOFF_MAX,
            gzip: true,
            state_dir: state_dir.into(),
            accept_remote_config: false,
            remote_config_allow: AllowList::default(),
            remote_in_force: None,
        }
    }

    /// The transport the endpoint asks for, or an error naming the problem.
    pub fn transport(&self) -> Result<TransportKind, OpampError> {
        let e = self.endpoint.trim();
        let (kind, rest) = if let Some(r) = e.strip_prefix("http://") {
            (TransportKind::Http, r)
        } else if let Some(r) = e.strip_prefix("https://") {
            (TransportKind::Http, r)
        } else if let Some(r) = e.strip_prefix("ws://") {
            (TransportKind::WebSocket, r)
        } else if let Some(r) = e.strip_prefix("wss://") {
            (TransportKind::WebSocket, r)
        } else {
            return Err(OpampError::Config(format!(
                "endpoint `{}` must start with http://, https://, ws:// or wss://",
                safe_url(e)
            )));
        };
        let host = rest.split(['/', '?', '#']).next().unwrap_or("");
        let host = host.rsplit_once('@').map_or(host, |(_, h)| h);
        if host.is_empty() || host.starts_with(':') || host.contains(char::is_whitespace) {
            return Err(OpampError::Config(format!(
                "endpoint `{}` has no host",
                safe_url(e)
            )));
        }
        Ok(kind)
    }

    /// Checks everything that can be checked before connecting.
    pub fn validate(&self) -> Result<TransportKind, OpampError> {
        let kind = self.transport()?;
        let bad = |what: &str| Err(OpampError::Config(what.to_string()));
        if self.heartbeat.is_zero() || self.heartbeat > Duration::from_secs(86_400) {
            return bad("heartbeat must be between 1 second and 1 day");
        }
        if self.timeout.is_zero() {
            return bad("timeout must be positive");
        }
        if self.max_message_bytes < 1024 {
            return bad("max_message_bytes must be at least 1024");
        }
        if self.tls.client_cert_pem.is_some() != self.tls.client_key_pem.is_some() {
            return bad("a client certificate needs its key and a key needs its certificate");
        }
        if let Some(t) = &self.token
            && (t.is_empty() || t.bytes().any(|b| b < 0x20 || b == 0x7f))
        {
            return bad("the token is empty or holds control characters");
        }
        Ok(kind)
    }
}

impl fmt::Debug for OpampConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OpampConfig")
            .field("endpoint", &safe_url(&self.endpoint))
            .field("token", &self.token.as_ref().map(|_| "[redacted]"))
            .field(
                "headers",
                &self
                    .headers
                    .iter()
                    .map(|(k, _)| format!("{k}: [redacted]"))
                    .collect::<Vec<_>>(),
            )
            .field("tls", &self.tls)
            .field("heartbeat", &self.heartbeat)
            .field("max_message_bytes", &self.max_message_bytes)
            .field("timeout", &self.timeout)
            .field("backoff_max", &self.backoff_max)
            .field("gzip", &self.gzip)
            .field("state_dir", &self.state_dir)
            .field("accept_remote_config", &self.accept_remote_config)
            .field("remote_config_allow", &self.remote_config_allow)
            .field(
                "remote_in_force",
                &self.remote_in_force.as_ref().map(|r| r.hash_hex()),
            )
            .finish()
    }
}

/// The endpoint as it may appear in logs, errors and status: no user-info, query or fragment
/// (either may carry a credential).
pub fn safe_url(url: &str) -> String {
    let url = url.trim();
    let cut = url.find(['?', '#']).unwrap_or(url.len());
    let url = &url[..cut];
    match url.split_once("://") {
        Some((scheme, rest)) => {
            let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
            let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
            format!("{scheme}://{host}{path}")
        }
        None => url.chars().take(64).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scheme_picks_the_transport() {
        let c = |e: &str| OpampConfig::new(e, "/tmp").validate();
        assert_eq!(c("http://h:4320/v1/opamp").unwrap(), TransportKind::Http);
        assert_eq!(c("https://h/v1/opamp").unwrap(), TransportKind::Http);
        assert_eq!(c("ws://h:4320/v1/opamp").unwrap(), TransportKind::WebSocket);
        assert_eq!(c("wss://h/v1/opamp").unwrap(), TransportKind::WebSocket);
        for bad in ["ftp://h", "h:4320", "http://", "ws:///x", "http://:80/x"] {
            assert!(c(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn nothing_secret_in_debug_or_safe_url() {
        let mut c = OpampConfig::new("https://user:pw@h:1/v1/opamp?key=k3y#frag", "/tmp");
        c.token = Some("t0ken".into());
        c.headers = vec![("X-Api-Key".into(), "h3ader".into())];
        c.tls.client_key_pem = Some(b"-----BEGIN PRIVATE KEY-----k3y".to_vec());
        let d = format!("{c:?}");
        for secret in ["pw", "k3y", "t0ken", "h3ader", "frag"] {
            assert!(!d.contains(secret), "{secret} in {d}");
        }
        assert!(d.contains("https://h:1/v1/opamp") && d.contains("X-Api-Key"));
        assert_eq!(safe_url("ws://a@b/c?d"), "ws://b/c");
    }

    #[test]
    fn half_a_client_identity_is_refused() {
        let mut c = OpampConfig::new("https://h/v1/opamp", "/tmp");
        c.tls.client_cert_pem = Some(b"x".to_vec());
        assert!(c.validate().unwrap_err().to_string().contains("key"));
        c.tls.client_cert_pem = None;
        c.token = Some("a\nb".into());
        assert!(c.validate().is_err());
    }
}
