//! `node-agent check`'s look at the control plane: the identity kept in the state directory,
//! the saved remote configuration, and one exchange with the server — a heartbeat with the
//! agent's own instance UID, so the token, TLS and the server's answer are checked for real. It
//! sends no AgentDisconnect (a running agent with the same UID stays registered); a server that
//! does not know the agent yet may ask for its full state, which the agent sends when it runs.

use super::proto::{AgentToServer, ServerToAgent};
use super::retry::TransportError;
use super::transport::Transport;
use super::ws::Incoming;
use super::{session, store};
use crate::config::opamp::{OpampConfig, safe_url};
use std::time::Duration;

/// Whether the server answered, and a one-line report (no secret in it).
pub(crate) async fn probe(cfg: &OpampConfig) -> (bool, String) {
    let head = format!("{} ({:?})", safe_url(&cfg.endpoint), cfg.transport);
    let uid = match store::load_or_create_uid(&cfg.state_dir) {
        Ok(u) => u,
        Err(e) => return (false, format!("{head}: {e}")),
    };
    let remote = if cfg.accept_remote_config {
        let allow: Vec<&str> = cfg.remote_config_allow.keys().collect();
        let saved = match store::load_last_applied(&cfg.state_dir) {
            Ok(Some(s)) => format!("last applied {}", s.hash_hex()),
            Ok(None) => "none applied yet".into(),
            Err(e) => format!("saved copy unusable: {e}"),
        };
        format!(
            "remote configuration on (may set: {}; {saved})",
            allow.join(", ")
        )
    } else {
        "remote configuration off".into()
    };
    let ident = format!("instance {}, {remote}", store::uuid_string(&uid));
    match exchange(cfg, &uid).await {
        Ok(reply) => match reply.error_response {
            Some(e) => (
                false,
                format!(
                    "{head}: the server answered with an error: {}; {ident}",
                    super::remote::printable(&e.error_message)
                ),
            ),
            None => (
                true,
                format!(
                    "{head}: the server answered (capabilities {:#x}); {ident}",
                    reply.capabilities
                ),
            ),
        },
        Err(e) => (false, format!("{e}; {ident}")),
    }
}

async fn exchange(cfg: &OpampConfig, uid: &[u8; 16]) -> Result<ServerToAgent, TransportError> {
    let transport = Transport::new(cfg).map_err(|e| TransportError::new(e.to_string()))?;
    let mut conn = transport.connect().await?;
    let msg = AgentToServer {
        instance_uid: uid.to_vec(),
        sequence_num: 1,
        capabilities: session::capabilities(cfg.accept_remote_config),
        ..Default::default()
    };
    if let Some(reply) = conn.send(&msg).await? {
        return Ok(reply);
    }
    let wait = cfg.timeout.min(Duration::from_secs(10));
    let reply = tokio::time::timeout(wait, async {
        loop {
            match conn.recv().await? {
                Incoming::Message(m) => return Ok(*m),
                Incoming::Malformed(why) => {
                    return Err(TransportError::new(format!(
                        "the server sent a malformed message: {why}"
                    )));
                }
                Incoming::Pong => {}
            }
        }
    })
    .await
    .unwrap_or_else(|_| Err(TransportError::new(format!("no reply within {wait:?}"))));
    conn.close().await;
    reply
}
