//! The control-plane loop: the OpAMP client over the shared state, started by [`super::run`]
//! when an OpAMP endpoint is set.
//!
//! Before the other loops start, [`offline`] puts the last applied remote configuration (saved in
//! the state directory) in force, so a node that starts while the control plane is unreachable
//! runs with what it was last given. [`start`] then runs the client with a [`StateHandle`] and,
//! once a second, asks it to report what changed (health, capabilities, configuration: only a
//! difference is sent); its status cell is shared with `/readyz`. At shutdown
//! the client says goodbye (AgentDisconnect) and the task ends.

use crate::config::{Config, Layers};
use crate::control::{AppliedRemote, Client, OpampError, StateHandle, offline_layer, preflight};
use crate::state::Context;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// How often health and capabilities are compared with what the server last saw.
const CHANGE_CHECK: Duration = Duration::from_secs(1);
/// The longest the first report waits for the first node sample.
const FIRST_SAMPLE_WAIT: Duration = Duration::from_secs(10);

/// The configuration to start with: with the saved remote layer when remote configuration is on
/// and a saved one still passes the allow-list and the checks, else as given (with a warning
/// naming why the saved one was not used).
pub(crate) fn offline(cfg: Config, layers: Layers) -> (Config, Layers, Option<AppliedRemote>) {
    let Some(o) = cfg.opamp.as_ref().filter(|o| o.accept_remote_config) else {
        return (cfg, layers, None);
    };
    let (saved, remote) = match offline_layer(&o.state_dir, &o.remote_config_allow) {
        Ok(Some(found)) => found,
        Ok(None) => return (cfg, layers, None),
        Err(e) => {
            tracing::warn!(error = %e, "starting without the saved remote configuration");
            return (cfg, layers, None);
        }
    };
    let keys = remote.keys();
    let candidate = layers.with_remote(remote);
    match Config::from_layers(&candidate) {
        Ok(with_remote) => {
            tracing::info!(
                hash = %saved.hash_hex(),
                keys = ?keys,
                "starting with the last applied remote configuration"
            );
            (with_remote, candidate, Some(saved))
        }
        Err(e) => {
            tracing::warn!(error = %e, "the saved remote configuration is not valid any more; starting without it");
            (cfg, layers, None)
        }
    }
}

/// Starts the client; `Ok(None)` when no OpAMP endpoint is set. An error (the state directory
/// cannot be written, the TLS material does not parse) is a setup problem the caller reports.
/// The first report waits for the first node sample (at most [`FIRST_SAMPLE_WAIT`]) so that it
/// carries the node's capabilities and health rather than zeros.
pub(crate) fn start(
    ctx: Arc<Context>,
    layers: Layers,
    in_force: Option<AppliedRemote>,
    mut shutdown: watch::Receiver<bool>,
) -> Result<Option<JoinHandle<()>>, OpampError> {
    let Some(cfg) = ctx.cfg.opamp.clone() else {
        return Ok(None);
    };
    preflight(&cfg)?;
    Ok(Some(tokio::spawn(async move {
        let deadline = tokio::time::Instant::now() + FIRST_SAMPLE_WAIT;
        while !ctx.health.snapshot().contains_key("node") && tokio::time::Instant::now() < deadline
        {
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(20)) => {}
                _ = shutdown.changed() => return,
            }
        }
        let agent = Arc::new(StateHandle::new(ctx.clone(), layers));
        let client = match Client::start(cfg, in_force, agent, shutdown.clone()) {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(error = %e, "cannot start the OpAMP client");
                return;
            }
        };
        *ctx.control.lock() = Some(client.status_cell());
        let mut tick = tokio::time::interval(CHANGE_CHECK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => client.report_changed(),
                _ = shutdown.changed() => break,
            }
        }
        client.join().await;
    })))
}
