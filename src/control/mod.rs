//! The control plane: an OpAMP client (Open Agent Management Protocol, opamp-spec v0.18).
//!
//! Why: every node must register with the orchestrator at start, say what it is and what it
//! can do, show that it is alive and healthy, and take configuration from it, and keep working
//! with its last configuration while the orchestrator is away. OpAMP is the OpenTelemetry
//! protocol for exactly that (the Collector's `opamp` extension speaks it), and no maintained
//! Rust client exists, so this is a small one of our own on the vendored protos.
//!
//! How the parts fit, top to bottom:
//! - [`Client::start`] takes the checked settings (`config::opamp`) and an [`AgentHandle`] (the
//!   agent's answers: description, health, effective configuration, applying a remote
//!   configuration) and runs the protocol on its own task; [`ClientHandle::status`] is what
//!   `/readyz` and `check` show. [`StateHandle`] is the running agent's `AgentHandle`, over the
//!   shared state (`state::Context`): the Resource, the health the samplers and the exporter
//!   record, `node-agent config`'s view of the layers, and the live settings cell it swaps.
//! - `session` is the protocol state without I/O (sequence numbers, full state and status
//!   compression, what a server message asks for); `transport` with `http` and `ws` moves the
//!   bytes; `wire` decodes them within bounds (and is fuzzed, see `fuzz`).
//! - `remote` finds our TOML in an offer; `config::remote` checks it against the local
//!   allow-list; `store` keeps the instance UID, the last applied remote configuration
//!   ([`offline_layer`] for offline starts) and an audit log in the state directory.
//! - [`probe`] is `node-agent check`'s one exchange with the server.

mod agent;
mod client;
#[cfg(any(test, feature = "fuzz"))]
pub mod fuzz;
mod handle;
mod http;
mod probe;
pub mod proto;
mod remote;
mod retry;
mod session;
mod status;
mod store;
mod tls;
mod transport;
mod wire;
mod ws;

pub(crate) use client::Client;
pub(crate) use handle::StateHandle;
pub(crate) use probe::probe;
pub(crate) use store::AppliedRemote;

use crate::config::remote::{AllowList, RemoteLayer, accept};
use std::path::{Path, PathBuf};

/// Something the server sent that cannot be used, as text safe to log and to report back
/// (bounded, no control characters, no secret).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub(crate) struct Refusal(pub(crate) String);

/// What [`Client::start`] needs before it can run: a usable state directory (the instance UID
/// is created there) and TLS material that parses. Checked at start so a broken deployment
/// fails at once with the reason, not later in a background task.
pub(crate) fn preflight(cfg: &crate::config::opamp::OpampConfig) -> Result<(), OpampError> {
    store::load_or_create_uid(&cfg.state_dir)?;
    transport::Transport::new(cfg).map(|_| ())
}

/// Offline start: the last applied remote configuration, checked again against today's local
/// allow-list (the operator may have narrowed it since). `Ok(None)` when there is none; an error
/// (naming the file) when it cannot be read or no longer passes — the caller warns and starts
/// without it. The caller passes the returned `AppliedRemote` to [`Client::start`] when it put
/// the layer in force, so the client reports it as APPLIED and never applies it twice.
pub(crate) fn offline_layer(
    state_dir: &Path,
    allow: &AllowList,
) -> Result<Option<(AppliedRemote, RemoteLayer)>, OpampError> {
    let Some(saved) = store::load_last_applied(state_dir)? else {
        return Ok(None);
    };
    let layer = accept(&saved.toml, allow).map_err(|e| OpampError::State {
        path: state_dir.join(store::REMOTE_FILE),
        reason: format!("the saved remote configuration is not usable any more: {e}"),
    })?;
    Ok(Some((saved, layer)))
}

/// Why the client could not start (network trouble is never one: the client retries and
/// reports it in its status).
#[derive(Debug, thiserror::Error)]
pub enum OpampError {
    #[error("OpAMP configuration: {0}")]
    Config(String),
    #[error("OpAMP state {path}: {reason}")]
    State { path: PathBuf, reason: String },
}
