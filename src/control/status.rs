//! What the rest of the agent can see of the OpAMP connection: connected or not, the last
//! contact, the last error (never with a secret: errors carry the endpoint without credentials),
//! the remote-configuration state. `/readyz` and `node-agent check` read it.

use super::config::TransportKind;
use super::proto;
use super::store::uuid_string;
use parking_lot::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::Notify;

/// The state of the last remote configuration received.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct RemoteState {
    /// Hex of the configuration hash.
    pub hash: String,
    /// `APPLIED`, `APPLYING` or `FAILED`.
    pub status: String,
    pub error: Option<String>,
}

/// A snapshot of the client's state.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Status {
    /// The endpoint without credentials.
    pub endpoint: String,
    pub transport: TransportKind,
    pub instance_uid: String,
    /// The last exchange succeeded and no failure came after it.
    pub connected: bool,
    /// Unix milliseconds of the last successful reply.
    pub last_contact_unix_ms: Option<u64>,
    pub last_error: Option<String>,
    /// Failed attempts since the last success.
    pub consecutive_failures: u32,
    pub heartbeat_sec: f64,
    /// The server's capability bits (AcceptsStatus, OffersRemoteConfig, …).
    pub server_capabilities: u64,
    pub remote_config: Option<RemoteState>,
    pub messages_sent: u64,
    pub messages_received: u64,
    /// Server messages that could not be decoded (ignored).
    pub malformed: u64,
}

pub(crate) fn status_name(s: i32) -> &'static str {
    match proto::RemoteConfigStatuses::try_from(s) {
        Ok(proto::RemoteConfigStatuses::Applied) => "APPLIED",
        Ok(proto::RemoteConfigStatuses::Applying) => "APPLYING",
        Ok(proto::RemoteConfigStatuses::Failed) => "FAILED",
        _ => "UNSET",
    }
}

impl Status {
    pub(crate) fn new(
        endpoint: String,
        transport: TransportKind,
        uid: &[u8; 16],
        heartbeat: Duration,
        remote: Option<&proto::RemoteConfigStatus>,
    ) -> Self {
        Status {
            endpoint,
            transport,
            instance_uid: uuid_string(uid),
            connected: false,
            last_contact_unix_ms: None,
            last_error: None,
            consecutive_failures: 0,
            heartbeat_sec: heartbeat.as_secs_f64(),
            server_capabilities: 0,
            remote_config: remote.map(|r| RemoteState {
                hash: super::store::hex(&r.last_remote_config_hash),
                status: status_name(r.status).into(),
                error: None,
            }),
            messages_sent: 0,
            messages_received: 0,
            malformed: 0,
        }
    }

    /// Time since the last successful contact.
    pub fn since_contact(&self) -> Option<Duration> {
        let ms = self.last_contact_unix_ms?;
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .ok()?
            .as_millis() as u64;
        Some(Duration::from_millis(now.saturating_sub(ms)))
    }
}

/// Shared between the client task and its handle.
pub(crate) struct Shared {
    pub status: Mutex<Status>,
    pub nudge: Notify,
}

impl Shared {
    pub fn new(status: Status) -> Self {
        Shared {
            status: Mutex::new(status),
            nudge: Notify::new(),
        }
    }

    pub fn failed(&self, error: &str) {
        let mut s = self.status.lock();
        s.connected = false;
        s.consecutive_failures = s.consecutive_failures.saturating_add(1);
        s.last_error = Some(error.to_string());
    }

    /// A reply arrived; returns whether the client was disconnected before.
    pub fn contact(&self, error: Option<&str>) -> bool {
        let mut s = self.status.lock();
        let was = s.connected;
        s.connected = true;
        s.consecutive_failures = 0;
        s.last_contact_unix_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .ok()
            .map(|d| d.as_millis() as u64);
        if let Some(e) = error {
            s.last_error = Some(e.to_string());
        }
        !was
    }
}
