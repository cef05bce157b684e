//! The players loop: every `players_interval` (jittered), one pass of game-server probes over the
//! servers of the latest discovery and the static targets, exported as one OTLP request.

use super::timing::{jittered, pause};
use crate::export::Exporter;
use crate::otlp::MetricsBuilder;
use crate::otlp::metrics;
use crate::sources::probe::prober::{Prober, summary};
use crate::sources::probe::targets;
use crate::state::Context;
use crate::sys::clock::now_nanos;
use bytes::Bytes;
use prost::Message;
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::watch;

/// Probes until shutdown, with the live players settings of each pass. Without Wings the server
/// list is empty and static targets are probed all the same. A pass still running at shutdown is
/// dropped: it holds no sample yet.
pub(crate) async fn players_loop(
    ctx: Arc<Context>,
    mut prober: Prober,
    exporter: Exporter,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut in_force = ctx.live();
    loop {
        // A remote configuration may have changed the targets, overrides or limits.
        let live = ctx.live();
        if !Arc::ptr_eq(&live, &in_force) {
            let (old, new) = (&in_force.players, &live.players);
            if new.concurrency != old.concurrency {
                prober = Prober::from_config(new);
            } else {
                prober.config = new.targets.clone();
                prober.limits = new.limits.clone();
                prober.node_ip = new.node_ip.clone();
            }
            in_force = live;
        }
        let list = targets::from_inventory(&ctx.containers.inventory());
        let started = Instant::now();
        let time = now_nanos();
        // A pass can take a probe timeout (seconds); on shutdown it is abandoned, not awaited.
        let results = tokio::select! {
            r = prober.pass(&list) => r,
            _ = shutdown.changed() => return,
        };
        if !results.is_empty() {
            ctx.health.record("players", started.elapsed(), None);
            tracing::debug!(summary = %summary(&results), "players pass");
            let mut b = MetricsBuilder::new(time);
            metrics::players::players(&results, &mut b);
            let payload = Bytes::from(b.into_request(&ctx.resource()).encode_to_vec());
            // `/metrics` renders the latest request of every sampler.
            ctx.set_latest("players", &payload);
            exporter.enqueue(payload);
        }
        if pause(&ctx, |l| jittered(l.players.interval), &mut shutdown).await {
            return;
        }
    }
}
