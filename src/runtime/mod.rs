//! `node-agent run`: the loops on their jittered schedules, feeding the delivery queue, until
//! SIGTERM/SIGINT. This is the only stage that starts tasks and holds the shared state for them.
//!
//! - [`node`]: the node cycle (node, GPUs, containers, the agent's own metrics), every sample
//!   interval; [`discovery`]: Docker and Wings, every discovery interval; [`players`]: the
//!   game-server probes, every players interval. [`timing`] holds the jitter and the shutdown-aware
//!   sleep they share.
//! - [`startup`]: the local endpoint's listener (on by default, loopback) and the first log lines,
//!   which say where metrics can be read and where OTLP goes.
//! - On a signal ([`signals`]) the cycle in progress finishes, its sample is queued, and
//!   [`shutdown`] gives the collector the grace period only while it answers; what is left goes
//!   to the spool and the process exits 0. A second signal skips the waiting.
//!
//! - [`control`]: the OpAMP client (when an endpoint is set), started before the samplers so a
//!   saved remote configuration is in force from the first sample; it says goodbye at shutdown.
//!
//! - [`log_signal`]: container consoles ([`logs`]) and the agent's own log, on the logs lane;
//!   at shutdown the source's last lines are handed over and answered before the queue stops.
//!
//! A new loop is a file here, started from [`run`].

pub(crate) mod control;
pub(crate) mod discovery;
pub(crate) mod log_signal;
pub mod logs;
pub mod node;
pub(crate) mod players;
pub(crate) mod shutdown;
pub(crate) mod signals;
pub(crate) mod startup;
pub(crate) mod timing;

use crate::config::{Config, Layers};
use crate::export::{Exporter, Signal, Transport};
use crate::sources::probe::prober::Prober;
use crate::state::Context;
use crate::sys::limits::raise_fd_limit;
use signals::Signals;
use std::sync::Arc;
use tokio::sync::watch;

/// How long the exit may wait for the spool to take what is not yet on disk.
const SPOOL_FLUSH_LIMIT: std::time::Duration = std::time::Duration::from_millis(1500);

/// Runs until a signal; returns the process exit code. `layers` are what `cfg` was built from
/// (the control plane rebuilds the configuration from them with its remote layer).
pub async fn run(cfg: Config, layers: Layers) -> i32 {
    let fd_limit = raise_fd_limit();
    tracing::debug!(fd_limit, "open-file limit");
    let mut signals = match Signals::install() {
        Ok(s) => s,
        Err(e) => {
            tracing::error!("{e}");
            return 1;
        }
    };
    if cfg.sdk_disabled {
        tracing::info!("OTEL_SDK_DISABLED=true: sampling and export are off");
        signals.next().await;
        return 0;
    }
    let (cfg, layers, in_force) = control::offline(cfg, layers);
    let transport = match Transport::new(&cfg.export) {
        Ok(t) => t,
        Err(e) => {
            tracing::error!(error = %e, "cannot set up the exporter");
            return 2;
        }
    };
    let logs_transport = match cfg
        .queue
        .logs
        .map(|_| Transport::for_signal(Signal::Logs, &cfg.logs_export))
        .transpose()
    {
        Ok(t) => t,
        Err(e) => {
            tracing::error!(error = %e, "cannot set up the logs exporter");
            return 2;
        }
    };
    let listener = match startup::listen(&cfg).await {
        Ok(l) => l,
        Err(e) => {
            tracing::error!("{e}");
            return 2;
        }
    };
    startup::announce(&cfg, listener.as_ref().and_then(|l| l.local_addr().ok()));
    let prober = Prober::from_config(&cfg.players);
    let exporter = match Exporter::start_with(transport, logs_transport, cfg.queue.clone()) {
        Ok(e) => e,
        Err(e) => {
            tracing::error!(error = %e, "cannot start");
            return 2;
        }
    };
    let grace = cfg.shutdown_grace;
    let mut ctx = Context::new(cfg);
    ctx.export = exporter.stats();
    ctx.keep_latest = listener.is_some();
    let ctx = Arc::new(ctx);
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    if let Some(listener) = listener {
        tokio::spawn(crate::serve::serve(
            listener,
            ctx.clone(),
            shutdown_rx.clone(),
        ));
    }
    let control = match control::start(ctx.clone(), layers, in_force, shutdown_rx.clone()) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "cannot start the OpAMP client");
            return 2;
        }
    };
    let discovery = tokio::spawn(discovery::discovery_loop(ctx.clone(), shutdown_rx.clone()));
    let node = tokio::spawn(node::node_loop(
        ctx.clone(),
        exporter.clone(),
        shutdown_rx.clone(),
    ));
    let players = tokio::spawn(players::players_loop(
        ctx.clone(),
        prober,
        exporter.clone(),
        shutdown_rx.clone(),
    ));
    let logs = log_signal::spawn(
        ctx.clone(),
        exporter.clone(),
        crate::logging::export::take(),
        shutdown_rx.clone(),
        grace,
    );
    let first = signals.next().await;
    shutdown::announce(first, &ctx, &exporter.stats(), grace);
    let _ = shutdown_tx.send(true);
    discovery.abort();
    // The cycle in progress finishes and queues its sample, unless a second signal says not to
    // wait; then the collector gets the grace period while it answers.
    let ending = tokio::select! {
        _ = async {
            let _ = node.await;
            let _ = players.await;
        } => tokio::select! {
            e = shutdown::deliver(&exporter, grace) => e,
            s = signals.next() => {
                tracing::info!("{s} again: stopping now");
                shutdown::Ending::Interrupted
            }
        },
        s = signals.next() => {
            tracing::info!("{s} again: stopping now, without the sample in progress");
            shutdown::Ending::Interrupted
        }
    };
    // The logs source hands over its last lines and waits for their answers (it started
    // shutting down with the first signal, beside the metrics' grace).
    if let Some(l) = logs {
        let _ = tokio::time::timeout(grace + std::time::Duration::from_secs(2), l).await;
    }
    let samples = ctx.health.snapshot().get("node").map_or(0, |h| h.passes);
    // What is not yet on disk is written now (bounded: a hung disk cannot hold the exit).
    let left = exporter.shutdown(SPOOL_FLUSH_LIMIT).await;
    shutdown::report(ending, &ctx, &exporter.stats(), left.persisted, left.lost);
    if let Some(c) = control {
        // The goodbye went out at the first signal, while the queue drained; it is bounded.
        let _ = tokio::time::timeout(std::time::Duration::from_secs(6), c).await;
    }
    tracing::info!(samples, "node-agent stopped");
    0
}
