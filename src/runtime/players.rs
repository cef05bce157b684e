//! The players loop: every `players_interval` (jittered), one pass of game-server probes over the
//! servers of the latest discovery and the static targets, exported as one OTLP request.

use super::timing::{jittered, sleep_or_shutdown};
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

/// Probes until shutdown. Without Wings the server list is empty and static targets are probed
/// all the same. A pass still running at shutdown is dropped: it holds no sample yet.
pub(crate) async fn players_loop(
    ctx: Arc<Context>,
    mut prober: Prober,
    exporter: Exporter,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
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
        if sleep_or_shutdown(jittered(ctx.cfg.players.interval), &mut shutdown).await {
            return;
        }
    }
}
