//! The discovery loop: one pass every `discovery_interval`, published into the shared state
//! (inventory, capabilities, health).

use super::timing::pause;
use crate::sources::containers::{Discovery, Inventory};
use crate::state::Context;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// Publishes one pass: inventory, capabilities, health.
pub(crate) fn publish(
    ctx: &Context,
    inv: Inventory,
    outcomes: Vec<(&'static str, Option<String>)>,
    took: Duration,
) {
    ctx.update_caps(|c| {
        if let Some(d) = &inv.cgroup_driver {
            c.cgroup_driver = Some(d.clone());
        }
        if let Some(v) = &inv.runtime_version {
            c.container_runtime = Some(("docker".into(), v.clone()));
        }
        if let Some(v) = &inv.wings_version {
            c.wings_version = Some(v.clone());
        }
    });
    for (name, err) in outcomes {
        ctx.health.record(name, took, err);
    }
    ctx.containers.set(inv);
}

/// Runs discovery every `discovery_interval` until shutdown.
pub(crate) async fn discovery_loop(ctx: Arc<Context>, mut shutdown: watch::Receiver<bool>) {
    let mut d = Discovery::new(&ctx.cfg.discovery, ctx.mounts.clone());
    loop {
        let started = Instant::now();
        let (inv, outcomes) = d.pass().await;
        publish(&ctx, inv, outcomes, started.elapsed());
        if pause(&ctx, |l| l.discovery_interval, &mut shutdown).await {
            return;
        }
    }
}
