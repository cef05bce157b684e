//! The OpAMP client's settings (the control plane, `src/control/`), read and checked at start like
//! every other stage's: a bad endpoint, token, header, certificate or allow-list stops the agent
//! with a message that names the setting (exit 2). The client itself only takes the typed
//! [`OpampConfig`], whose `Debug` never shows a secret.

use super::error::ConfigError;
use super::read::{Problem, Values};
use super::remote::AllowList;
use super::source::Source;
use crate::export::TlsFiles;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

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

/// Everything the OpAMP client uses.
#[derive(Clone)]
pub struct OpampConfig {
    /// `http(s)://host:port/v1/opamp` or `ws(s)://host:port/v1/opamp`.
    pub endpoint: String,
    pub transport: TransportKind,
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
}

impl OpampConfig {
    /// Defaults for `endpoint` (tests and tools build on this; the agent reads the settings).
    pub(crate) fn new(endpoint: &str, state_dir: impl Into<PathBuf>) -> Result<Self, Problem> {
        Ok(OpampConfig {
            endpoint: endpoint.trim().to_string(),
            transport: transport(endpoint)?,
            token: None,
            headers: Vec::new(),
            tls: OpampTls::default(),
            heartbeat: Duration::from_secs(30),
            max_message_bytes: 4 * 1024 * 1024,
            timeout: Duration::from_secs(30),
            backoff_max: Duration::from_secs(300),
            gzip: true,
            state_dir: state_dir.into(),
            accept_remote_config: false,
            remote_config_allow: AllowList::default(),
        })
    }
}

impl fmt::Debug for OpampConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OpampConfig")
            .field("endpoint", &safe_url(&self.endpoint))
            .field("transport", &self.transport)
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
            .finish()
    }
}

/// The transport an endpoint asks for, or what is wrong with it (the URL shown without
/// credentials).
fn transport(endpoint: &str) -> Result<TransportKind, Problem> {
    let e = endpoint.trim();
    let lower = e.to_ascii_lowercase();
    let (kind, rest) = if lower.starts_with("http://") || lower.starts_with("https://") {
        (TransportKind::Http, &e[e.find("://").unwrap_or(0) + 3..])
    } else if lower.starts_with("ws://") || lower.starts_with("wss://") {
        (
            TransportKind::WebSocket,
            &e[e.find("://").unwrap_or(0) + 3..],
        )
    } else {
        return Err(Problem(format!(
            "`{}` does not start with http://, https://, ws:// or wss://",
            safe_url(e)
        )));
    };
    let host = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host = host.rsplit_once('@').map_or(host, |(_, h)| h);
    if host.is_empty() || host.starts_with(':') || host.contains(char::is_whitespace) {
        return Err(Problem(format!("`{}` has no host", safe_url(e))));
    }
    Ok(kind)
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

/// Reads the `opamp_*` settings; `None` when no endpoint is set (the client is off). TLS files
/// default to the OTLP ones and the token to `node_token`.
pub(crate) fn opamp_config(
    r: &Values<'_>,
    state_dir: PathBuf,
    node_token: Option<&String>,
    otlp_tls: &TlsFiles,
) -> Result<Option<OpampConfig>, ConfigError> {
    let Some((endpoint, src)) = r
        .raw("opamp_endpoint")
        .filter(|(v, _)| !v.trim().is_empty())
    else {
        return Ok(None);
    };
    let mut cfg = OpampConfig::new(&endpoint, state_dir).map_err(|p| {
        r.invalid(
            "opamp_endpoint",
            src,
            p.0,
            "give e.g. https://opamp.example:4320/v1/opamp or wss://opamp.example/v1/opamp",
        )
    })?;
    cfg.token = r.non_empty("opamp_token").or_else(|| node_token.cloned());
    if let Some(t) = &cfg.token
        && t.bytes().any(|b| b < 0x20 || b == 0x7f)
    {
        // The token is named by its setting, never shown.
        let key = if r.non_empty("opamp_token").is_some() {
            "opamp_token"
        } else {
            "node_token"
        };
        return Err(r.invalid(
            key,
            r.source(key),
            "the token holds control characters",
            "set the token without line breaks or other control characters",
        ));
    }
    cfg.headers = r.kv_list("opamp_headers", "use name=value pairs separated by commas")?;
    for (name, value) in &cfg.headers {
        let bad_name = name.is_empty()
            || name
                .bytes()
                .any(|b| !(b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
        let bad_value = value.bytes().any(|b| (b < 0x20 && b != b'\t') || b == 0x7f);
        if bad_name || bad_value {
            return Err(r.invalid(
                "opamp_headers",
                r.source("opamp_headers"),
                format!("header `{name}` has an invalid name or value"),
                "use letters, digits, - and _ in header names and no control characters in values",
            ));
        }
    }
    cfg.tls = OpampTls {
        ca_pem: r.pem_file("opamp_certificate")?.or(otlp_tls.ca_pem.clone()),
        client_cert_pem: r
            .pem_file("opamp_client_certificate")?
            .or(otlp_tls.client_cert_pem.clone()),
        client_key_pem: r
            .pem_file("opamp_client_key")?
            .or(otlp_tls.client_key_pem.clone()),
        insecure_skip_verify: r.bool("opamp_insecure_skip_verify")?,
    };
    if cfg.tls.client_cert_pem.is_some() != cfg.tls.client_key_pem.is_some() {
        let key = if cfg.tls.client_cert_pem.is_some() {
            "opamp_client_key"
        } else {
            "opamp_client_certificate"
        };
        return Err(r.invalid(
            key,
            Source::Default,
            "mutual TLS needs both a client certificate and its key",
            "set both opamp_client_certificate and opamp_client_key",
        ));
    }
    cfg.heartbeat = r.seconds("opamp_heartbeat_sec")?;
    cfg.timeout = r.seconds("opamp_timeout_sec")?;
    cfg.backoff_max = r.seconds("opamp_backoff_max_sec")?;
    cfg.max_message_bytes = r.u64("opamp_max_message_bytes", 1024)?.min(1 << 30) as usize;
    cfg.accept_remote_config = r.bool("opamp_remote_config")?;
    let (spec, src) = r
        .raw("opamp_remote_config_allow")
        .unwrap_or_else(|| ("default".into(), Source::Default));
    cfg.remote_config_allow = AllowList::parse(&spec).map_err(|e| {
        r.invalid(
            "opamp_remote_config_allow",
            src,
            e.to_string(),
            "list setting keys and section names separated by commas, or default, or none",
        )
    })?;
    Ok(Some(cfg))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scheme_picks_the_transport() {
        let t = |e: &str| transport(e).ok();
        assert_eq!(t("http://h:4320/v1/opamp"), Some(TransportKind::Http));
        assert_eq!(t("HTTPS://h/v1/opamp"), Some(TransportKind::Http));
        assert_eq!(t("ws://h:4320/v1/opamp"), Some(TransportKind::WebSocket));
        assert_eq!(t("wss://h/v1/opamp"), Some(TransportKind::WebSocket));
        for bad in ["ftp://h", "h:4320", "http://", "ws:///x", "http://:80/x"] {
            assert!(transport(bad).is_err(), "{bad}");
        }
        let e = transport("ftp://user:pw@h/x?k=s3cret").unwrap_err().0;
        assert!(!e.contains("pw") && !e.contains("s3cret"), "{e}");
    }

    #[test]
    fn nothing_secret_in_debug_or_safe_url() {
        let mut c = OpampConfig::new("https://user:pw@h:1/v1/opamp?key=k3y#frag", "/tmp").unwrap();
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
}
