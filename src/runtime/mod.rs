//! `node-agent run`: the loops on their jittered schedules, feeding the delivery queue, until
//! SIGTERM/SIGINT. This is the only stage that starts tasks and holds the shared state for them.
//!
//! - [`node`]: the node cycle (node, GPUs, containers, the agent's own metrics), every sample
//!   interval; [`discovery`]: Docker and Wings, every discovery interval; [`players`]: the
//!   game-server probes, every players interval. [`timing`] holds the jitter and the shutdown-aware
//!   sleep they share.
//! - On a signal the cycle in progress finishes, its sample is queued, the queue is given the
//!   grace period to drain, and the process exits 0.
//!
//! A new loop (a logs follower, the control-plane client) is a file here, started from [`run`].

pub(crate) mod discovery;
pub mod node;
pub(crate) mod players;
pub(crate) mod timing;

use crate::config::Config;
use crate::export::{Exporter, Transport};
use crate::sources::probe::prober::Prober;
use crate::state::Context;
use crate::sys::limits::raise_fd_limit;
use std::sync::Arc;
use tokio::sync::watch;

/// How long the exit may wait for the spool to take what is not yet on disk.
const SPOOL_FLUSH_LIMIT: std::time::Duration = std::time::Duration::from_millis(1500);

/// Waits for SIGTERM or SIGINT.
async fn signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::error!("cannot install the SIGTERM/SIGINT handlers; stopping");
        return;
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: finishing the cycle and flushing"),
        _ = int.recv() => tracing::info!("SIGINT: finishing the cycle and flushing"),
    }
}

/// Runs until a signal; returns the process exit code.
pub async fn run(cfg: Config) -> i32 {
    let fd_limit = raise_fd_limit();
    tracing::debug!(fd_limit, "open-file limit");
    if cfg.sdk_disabled {
        tracing::info!("OTEL_SDK_DISABLED=true: sampling and export are off");
        signal().await;
        return 0;
    }
    let transport = match Transport::new(&cfg.export) {
        Ok(t) => t,
        Err(e) => {
            tracing::error!(error = %e, "cannot set up the exporter");
            return 2;
        }
    };
    tracing::info!(
        version = env!("CARGO_PKG_VERSION"),
        exporter = ?cfg.export.exporter,
        protocol = ?cfg.export.protocol,
        endpoint = %cfg.export.endpoint,
        direct_orchestrator = cfg.export.direct_orchestrator,
        interval_min_s = cfg.sample_interval.0.as_secs_f64(),
        interval_max_s = cfg.sample_interval.1.as_secs_f64(),
        "node-agent starting"
    );
    let prober = Prober::from_config(&cfg.players);
    let exporter = match Exporter::start(transport, cfg.queue.clone()) {
        Ok(e) => e,
        Err(e) => {
            tracing::error!(error = %e, "cannot start");
            return 2;
        }
    };
    let grace = cfg.shutdown_grace;
    let mut ctx = Context::new(cfg);
    ctx.export = exporter.stats();
    let ctx = Arc::new(ctx);
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    if let Some(addr) = ctx.cfg.http_listen {
        match crate::serve::bind(addr).await {
            Ok(listener) => {
                tokio::spawn(crate::serve::serve(
                    listener,
                    ctx.clone(),
                    shutdown_rx.clone(),
                ));
            }
            Err(e) => {
                tracing::error!(%addr, error = %e, "cannot listen for /healthz, /readyz, /metrics");
                return 2;
            }
        }
    }
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
    signal().await;
    let _ = shutdown_tx.send(true);
    let _ = node.await;
    let _ = players.await;
    discovery.abort();
    let samples = ctx.health.snapshot().get("node").map_or(0, |h| h.passes);
    // The last sample is queued. The collector gets the grace period only while it answers;
    // then what is not yet on disk is written (bounded: a hung disk cannot hold the exit).
    let delivered = exporter.drain(grace).await;
    let left = exporter.shutdown(SPOOL_FLUSH_LIMIT).await;
    if delivered {
        tracing::info!("all batches delivered; exiting");
    } else if left.lost == 0 {
        tracing::warn!(
            spooled = left.persisted,
            "undelivered batches kept in the spool for the next start"
        );
    } else {
        tracing::error!(
            spooled = left.persisted,
            lost = left.lost,
            "shutdown: some undelivered batches could not be spooled (counted as dropped)"
        );
    }
    tracing::info!(samples, "node-agent stopped");
    0
}
