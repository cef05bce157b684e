//! The control plane: an OpAMP client (Open Agent Management Protocol, opamp-spec v0.18).
//!
//! Why: every node must register with the orchestrator at start, say what it is and what it
//! can do, show that it is alive and healthy, and take configuration from it, and keep working
//! with its last configuration while the orchestrator is away. OpAMP is the OpenTelemetry
//! protocol for exactly that (the Collector's `opamp` extension speaks it), and no maintained
//! Rust client exists, so this is a small one of our own on the vendored protos.
//!
//! How the parts fit, top to bottom:
//! - [`Client::start`] takes an [`OpampConfig`] and an [`AgentHandle`] (the agent's answers:
//!   description, health, effective configuration, applying a remote configuration) and runs
//!   the protocol on its own task; [`ClientHandle::status`] is what `/readyz` and `check` show.
//! - `session` is the protocol state without I/O (sequence numbers, full state and status
//!   compression, what a server message asks for); `transport` with `http` and `ws` moves the
//!   bytes; `wire` decodes them within bounds (and is fuzzed, see [`fuzz`]).
//! - `remote` finds our TOML in an offer; [`accept_remote_config`] checks it against the local
//!   [`AllowList`]; `store` keeps the instance UID, the last applied remote configuration
//!   ([`load_last_applied`], [`offline_layer`] for offline starts) and an audit log in the state
//!   directory.

mod agent;
mod allow;
mod client;
mod config;
pub mod fuzz;
mod http;
pub mod proto;
mod remote;
mod session;
mod status;
mod store;
mod tls;
mod transport;
mod wire;
mod ws;

pub use agent::{AgentHandle, AttrValue, CONFIG_FILE_NAME, Description, Health, TOML_CONTENT_TYPE};
pub use allow::{
    AllowList, DEFAULT_ALLOW, RemoteLayer, TABLES, accept_remote_config, is_sensitive,
};
pub use client::{Client, ClientHandle};
pub use config::{
    DEFAULT_BACKOFF_MAX, DEFAULT_HEARTBEAT, DEFAULT_MAX_MESSAGE_BYTES, DEFAULT_TIMEOUT,
    OpampConfig, OpampTls, TransportKind, safe_url,
};
pub use status::{RemoteState, Status};
pub use store::{AppliedRemote, load_last_applied, uuid_string};

use std::path::{Path, PathBuf};

/// Offline start: the last applied remote configuration, checked again against today's local
/// allow-list (the operator may have narrowed it since). `Ok(None)` when there is none; an error
/// (naming the file) when it cannot be read or no longer passes — the caller warns and starts
/// without it. Put the returned `AppliedRemote` in [`OpampConfig::remote_in_force`] when the
/// layer is used, so the client reports it as APPLIED and never applies it twice.
pub fn offline_layer(
    state_dir: &Path,
    allow: &AllowList,
) -> Result<Option<(AppliedRemote, RemoteLayer)>, OpampError> {
    let Some(saved) = load_last_applied(state_dir)? else {
        return Ok(None);
    };
    let layer = accept_remote_config(&saved.toml, allow).map_err(|e| OpampError::State {
        path: state_dir.join("opamp-remote-config.json"),
        reason: format!("the saved remote configuration is not usable any more: {e}"),
    })?;
    Ok(Some((saved, layer)))
}

/// Why the client could not start (network trouble is never one: the client retries and
/// reports it in [`Status`]).
#[derive(Debug, thiserror::Error)]
pub enum OpampError {
    #[error("OpAMP configuration: {0}")]
    Config(String),
    #[error("OpAMP state {path}: {reason}")]
    State { path: PathBuf, reason: String },
}
