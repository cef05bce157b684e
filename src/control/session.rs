//! The protocol state of one agent, without any I/O: what to put in the next `AgentToServer`
//! and what a `ServerToAgent` asks for.
//!
//! - Every message carries the instance UID, the next sequence number and the capabilities.
//! - The first message, every message after a reconnect or a failed exchange, and the message
//!   after the server sets `ReportFullState` carry the full status (description, health,
//!   effective configuration, remote-configuration status). Otherwise a part is only sent when it
//!   differs from what was last sent ("status compression"), and a message with none of them is
//!   a heartbeat.
//! - A server reply may carry an error (with RetryInfo), a new instance UID, the full-state flag,
//!   a heartbeat interval (the only connection setting this agent takes), a remote
//!   configuration. Offers of packages, other connection settings and commands are ignored: this
//!   agent does not announce those capabilities.

use super::proto::{self, AgentCapabilities as Cap, server_error_response};
use super::remote::printable;
use super::store::AppliedRemote;
use std::time::Duration;

/// The capabilities this client announces; AcceptsRemoteConfig only when the operator opted in.
pub fn capabilities(accept_remote_config: bool) -> u64 {
    let mut c = Cap::ReportsStatus as u64
        | Cap::ReportsHeartbeat as u64
        | Cap::ReportsHealth as u64
        | Cap::ReportsEffectiveConfig as u64
        | Cap::ReportsRemoteConfig as u64;
    if accept_remote_config {
        c |= Cap::AcceptsRemoteConfig as u64;
    }
    c
}

/// The agent's current status as the server should see it.
#[derive(Clone, PartialEq)]
pub struct Snapshot {
    pub description: proto::AgentDescription,
    pub health: proto::ComponentHealth,
    pub effective: proto::EffectiveConfig,
}

/// What the server said went wrong.
#[derive(Debug, Clone, PartialEq)]
pub enum ServerError {
    /// The last message was malformed: do not resend it.
    BadRequest(String),
    /// Overloaded: disconnect and come back after `retry_after` (or a backoff).
    Unavailable {
        message: String,
        retry_after: Option<Duration>,
    },
    Unknown(String),
}

/// What a `ServerToAgent` asks of the client.
#[derive(Debug, Default)]
pub struct Outcome {
    pub error: Option<ServerError>,
    pub new_uid: Option<[u8; 16]>,
    pub report_full: bool,
    /// The server set the heartbeat interval (zero: heartbeats off).
    pub heartbeat: Option<Duration>,
    pub remote: Option<proto::AgentRemoteConfig>,
    /// Set when the message was not for us (another instance UID) or carried nothing usable.
    pub ignored: Option<String>,
}

pub struct Session {
    pub uid: [u8; 16],
    seq: u64,
    capabilities: u64,
    full: bool,
    /// Whether the last message sent carried the full status (guards against a server that
    /// asks for it on every reply: one immediate resend, then the next heartbeat).
    pub last_was_full: bool,
    sent: Option<Snapshot>,
    sent_remote: Option<proto::RemoteConfigStatus>,
    remote: Option<proto::RemoteConfigStatus>,
    /// Hash of the last remote configuration received (applied or failed): never applied again.
    pub last_remote_hash: Option<Vec<u8>>,
    pub server_capabilities: u64,
}

impl Session {
    pub fn new(uid: [u8; 16], capabilities: u64, in_force: Option<&AppliedRemote>) -> Self {
        let remote = in_force.map(|r| proto::RemoteConfigStatus {
            last_remote_config_hash: r.hash.clone(),
            status: proto::RemoteConfigStatuses::Applied as i32,
            error_message: String::new(),
        });
        Session {
            uid,
            seq: 0,
            capabilities,
            full: true,
            last_was_full: false,
            sent: None,
            sent_remote: None,
            remote,
            last_remote_hash: in_force.map(|r| r.hash.clone()),
            server_capabilities: 0,
        }
    }

    /// The next message must carry the full status (new connection, lost exchange).
    pub fn resync(&mut self) {
        self.full = true;
    }

    pub fn remote_status(&self) -> Option<&proto::RemoteConfigStatus> {
        self.remote.as_ref()
    }

    pub fn set_remote_status(
        &mut self,
        hash: &[u8],
        status: proto::RemoteConfigStatuses,
        error: &str,
    ) {
        self.remote = Some(proto::RemoteConfigStatus {
            last_remote_config_hash: hash.to_vec(),
            status: status as i32,
            error_message: error.to_string(),
        });
    }

    /// Whether a report (beyond a heartbeat) is due for this snapshot.
    pub fn changed(&self, snap: &Snapshot) -> bool {
        self.full || self.sent.as_ref() != Some(snap) || self.sent_remote != self.remote
    }

    /// The next message: changed parts only, or everything when a full report is due.
    pub fn next(&mut self, snap: &Snapshot) -> proto::AgentToServer {
        let full = self.full;
        let mut msg = self.bare();
        let prev = if full { None } else { self.sent.as_ref() };
        if prev.is_none_or(|p| p.description != snap.description) {
            msg.agent_description = Some(snap.description.clone());
        }
        if prev.is_none_or(|p| p.health != snap.health) {
            msg.health = Some(snap.health.clone());
        }
        if prev.is_none_or(|p| p.effective != snap.effective) {
            msg.effective_config = Some(snap.effective.clone());
        }
        if full || self.sent_remote != self.remote {
            // A full report always carries the remote-config status (UNSET when there is none):
            // servers take its presence as the sign that the report is complete.
            msg.remote_config_status = Some(self.remote.clone().unwrap_or_default());
        }
        self.sent = Some(snap.clone());
        self.sent_remote = self.remote.clone();
        self.full = false;
        self.last_was_full = full;
        msg
    }

    /// The last message of a connection.
    pub fn disconnect(&mut self) -> proto::AgentToServer {
        let mut msg = self.bare();
        msg.agent_disconnect = Some(proto::AgentDisconnect {});
        msg
    }

    fn bare(&mut self) -> proto::AgentToServer {
        self.seq += 1;
        proto::AgentToServer {
            instance_uid: self.uid.to_vec(),
            sequence_num: self.seq,
            capabilities: self.capabilities,
            ..Default::default()
        }
    }

    /// Processes one server message.
    pub fn handle(&mut self, msg: &proto::ServerToAgent) -> Outcome {
        let mut out = Outcome::default();
        if !msg.instance_uid.is_empty() && msg.instance_uid != self.uid {
            out.ignored = Some(format!(
                "message for another instance ({})",
                super::store::uuid_string(&msg.instance_uid[..msg.instance_uid.len().min(16)])
            ));
            return out;
        }
        if let Some(err) = &msg.error_response {
            let text = printable(&err.error_message);
            out.error = Some(match proto::ServerErrorResponseType::try_from(err.r#type) {
                Ok(proto::ServerErrorResponseType::BadRequest) => ServerError::BadRequest(text),
                Ok(proto::ServerErrorResponseType::Unavailable) => ServerError::Unavailable {
                    message: text,
                    retry_after: err.details.as_ref().map(
                        |server_error_response::Details::RetryInfo(r)| {
                            Duration::from_nanos(r.retry_after_nanoseconds)
                        },
                    ),
                },
                _ => ServerError::Unknown(text),
            });
            // The specification: when error_response is set, every other field is unset.
            return out;
        }
        if msg.capabilities != 0 {
            self.server_capabilities = msg.capabilities;
        }
        if let Some(id) = &msg.agent_identification {
            match <[u8; 16]>::try_from(id.new_instance_uid.as_slice()) {
                Ok(uid) if uid != self.uid && uid != [0; 16] => {
                    self.uid = uid;
                    self.full = true;
                    out.new_uid = Some(uid);
                }
                Ok(_) => {}
                Err(_) => {
                    out.ignored = Some(format!(
                        "new_instance_uid of {} bytes (must be 16)",
                        id.new_instance_uid.len()
                    ));
                }
            }
        }
        if msg.flags & proto::ServerToAgentFlags::ReportFullState as u64 != 0 {
            self.full = true;
            out.report_full = true;
        }
        if let Some(opamp) = msg
            .connection_settings
            .as_ref()
            .and_then(|c| c.opamp.as_ref())
        {
            let s = opamp.heartbeat_interval_seconds;
            out.heartbeat = Some(if s == 0 {
                Duration::ZERO
            } else {
                Duration::from_secs(s.clamp(1, 86_400))
            });
        }
        if msg.command.is_some() {
            out.ignored = Some("command (this agent does not accept commands)".into());
        }
        out.remote = msg.remote_config.clone();
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snap(health: bool, eff: &str) -> Snapshot {
        Snapshot {
            description: super::super::agent::Description::new("node-agent", "n1").to_proto(),
            health: proto::ComponentHealth {
                healthy: health,
                ..Default::default()
            },
            effective: super::super::agent::effective_config(eff.into()),
        }
    }

    #[test]
    fn full_state_first_then_only_changes_then_heartbeats() {
        let mut s = Session::new([1; 16], capabilities(true), None);
        let a = snap(true, "x = 1");
        let m1 = s.next(&a);
        assert_eq!(m1.sequence_num, 1);
        assert_eq!(m1.instance_uid, vec![1; 16]);
        assert_eq!(m1.capabilities, 0x3807);
        assert!(m1.agent_description.is_some() && m1.health.is_some());
        assert!(m1.effective_config.is_some() && m1.remote_config_status.is_some());
        assert!(!s.changed(&a));
        let hb = s.next(&a);
        assert_eq!(hb.sequence_num, 2);
        assert!(hb.agent_description.is_none() && hb.health.is_none());
        assert!(hb.effective_config.is_none() && hb.remote_config_status.is_none());
        let b = snap(false, "x = 1");
        assert!(s.changed(&b));
        let m3 = s.next(&b);
        assert!(m3.health.is_some() && m3.agent_description.is_none());
        assert!(m3.effective_config.is_none());
        s.set_remote_status(b"h", proto::RemoteConfigStatuses::Applying, "");
        assert!(s.changed(&b));
        let m4 = s.next(&b);
        assert_eq!(m4.remote_config_status.unwrap().status, 2);
        s.resync();
        let m5 = s.next(&b);
        assert!(m5.agent_description.is_some() && m5.effective_config.is_some());
        assert!(s.last_was_full);
        let bye = s.disconnect();
        assert!(bye.agent_disconnect.is_some() && bye.sequence_num == 6);
    }

    #[test]
    fn offline_config_is_reported_applied() {
        let r = AppliedRemote {
            hash: vec![9; 4],
            toml: String::new(),
        };
        let mut s = Session::new([1; 16], capabilities(false), Some(&r));
        assert_eq!(s.last_remote_hash.as_deref(), Some(&[9u8; 4][..]));
        let m = s.next(&snap(true, ""));
        let st = m.remote_config_status.unwrap();
        assert_eq!((st.status, st.last_remote_config_hash), (1, vec![9; 4]));
        assert_eq!(m.capabilities & Cap::AcceptsRemoteConfig as u64, 0);
    }

    #[test]
    fn server_messages() {
        let mut s = Session::new([1; 16], capabilities(true), None);
        s.next(&snap(true, ""));
        let o = s.handle(&proto::ServerToAgent {
            instance_uid: vec![1; 16],
            flags: 1,
            capabilities: 3,
            agent_identification: Some(proto::AgentIdentification {
                new_instance_uid: vec![2; 16],
            }),
            connection_settings: Some(proto::ConnectionSettingsOffers {
                opamp: Some(proto::OpAmpConnectionSettings {
                    heartbeat_interval_seconds: 5,
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        });
        assert!(o.report_full && o.error.is_none());
        assert_eq!(o.new_uid, Some([2; 16]));
        assert_eq!(s.uid, [2; 16]);
        assert_eq!(o.heartbeat, Some(Duration::from_secs(5)));
        assert_eq!(s.server_capabilities, 3);
        assert!(s.changed(&snap(true, "")), "full state due");

        let o = s.handle(&proto::ServerToAgent {
            instance_uid: vec![1; 16],
            flags: 1,
            ..Default::default()
        });
        assert!(
            o.ignored.is_some() && !o.report_full,
            "old UID is not us any more"
        );

        let o = s.handle(&proto::ServerToAgent {
            error_response: Some(proto::ServerErrorResponse {
                r#type: 2,
                error_message: "busy\n".into(),
                details: Some(server_error_response::Details::RetryInfo(
                    proto::RetryInfo {
                        retry_after_nanoseconds: 42_000_000_000,
                    },
                )),
            }),
            flags: 1,
            ..Default::default()
        });
        assert_eq!(
            o.error,
            Some(ServerError::Unavailable {
                message: "busy?".into(),
                retry_after: Some(Duration::from_secs(42))
            })
        );
        assert!(!o.report_full, "error messages carry nothing else");
        let o = s.handle(&proto::ServerToAgent {
            agent_identification: Some(proto::AgentIdentification {
                new_instance_uid: vec![3; 5],
            }),
            connection_settings: Some(proto::ConnectionSettingsOffers {
                opamp: Some(proto::OpAmpConnectionSettings::default()),
                ..Default::default()
            }),
            ..Default::default()
        });
        assert!(o.ignored.unwrap().contains("5 bytes"));
        assert_eq!(o.heartbeat, Some(Duration::ZERO));
        assert_eq!(s.uid, [2; 16]);
    }
}
