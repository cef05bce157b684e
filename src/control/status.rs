//! The client's side of [`ControlStatus`]: what the rest of the agent can see of the OpAMP
//! connection (connected or not, the last contact, the last error — never with a secret: errors
//! carry the endpoint without credentials — and the remote-configuration state), kept up to date
//! by the client task. `/readyz` and `node-agent check` read it.

use super::proto;
use super::store::{hex, uuid_string};
use crate::config::opamp::TransportKind;
use crate::state::{ControlStatus, RemoteConfigState};
use parking_lot::Mutex;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::Notify;

pub(crate) fn status_name(s: i32) -> &'static str {
    match proto::RemoteConfigStatuses::try_from(s) {
        Ok(proto::RemoteConfigStatuses::Applied) => "APPLIED",
        Ok(proto::RemoteConfigStatuses::Applying) => "APPLYING",
        Ok(proto::RemoteConfigStatuses::Failed) => "FAILED",
        _ => "UNSET",
    }
}

pub(crate) fn new_status(
    endpoint: String,
    transport: TransportKind,
    uid: &[u8; 16],
    heartbeat: Duration,
    remote: Option<&proto::RemoteConfigStatus>,
) -> ControlStatus {
    ControlStatus {
        endpoint,
        transport,
        instance_uid: uuid_string(uid),
        connected: false,
        last_contact_unix_ms: None,
        last_error: None,
        consecutive_failures: 0,
        heartbeat_sec: heartbeat.as_secs_f64(),
        server_capabilities: 0,
        remote_config: remote.map(|r| RemoteConfigState {
            hash: hex(&r.last_remote_config_hash),
            status: status_name(r.status).into(),
            error: None,
        }),
        messages_sent: 0,
        messages_received: 0,
        malformed: 0,
    }
}

fn now_ms() -> Option<u64> {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .ok()
        .map(|d| d.as_millis() as u64)
}

/// Shared between the client task and its handle; the status cell is also shared with the
/// agent's state (for `/readyz`).
pub(crate) struct Shared {
    pub(crate) status: Arc<Mutex<ControlStatus>>,
    pub(crate) nudge: Notify,
}

impl Shared {
    pub(crate) fn new(status: ControlStatus) -> Self {
        Shared {
            status: Arc::new(Mutex::new(status)),
            nudge: Notify::new(),
        }
    }

    pub(crate) fn failed(&self, error: &str) {
        let mut s = self.status.lock();
        s.connected = false;
        s.consecutive_failures = s.consecutive_failures.saturating_add(1);
        s.last_error = Some(error.to_string());
    }

    /// A reply arrived; returns whether the client was disconnected before.
    pub(crate) fn contact(&self, error: Option<&str>) -> bool {
        let mut s = self.status.lock();
        let was = s.connected;
        s.connected = true;
        s.consecutive_failures = 0;
        s.last_contact_unix_ms = now_ms();
        if let Some(e) = error {
            s.last_error = Some(e.to_string());
        }
        !was
    }
}
