//! The node cycle: one sample of the node, its GPUs, every container and the agent itself, all
//! stamped with one time and encoded as one OTLP request. `check` runs the same cycle once.

use super::timing::{jittered, pause};
use crate::export::{ExportStats, Exporter};
use crate::otlp::MetricsBuilder;
use crate::otlp::metrics::{self, agent::AgentSample};
use crate::sources::containers::sampler::ContainersSample;
use crate::sources::gpu::GpuResult;
use crate::sources::node::NodeSampler;
use crate::state::Context;
use crate::sys::clock::now_nanos;
use bytes::Bytes;
use prost::Message;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// How long a node cycle waits for the GPU sampler (the first pass loads NVML, which can take a
/// second or two on a GPU without persistence mode).
pub(crate) const GPU_TIMEOUT: Duration = Duration::from_secs(5);

/// One node cycle: sample, then build the request stamped with the sample's time.
pub fn node_cycle(ctx: &Context, sampler: &mut NodeSampler, export: &ExportStats) -> Bytes {
    let started = Instant::now();
    let time = now_nanos();
    let (sample, errors) = sampler.sample();
    let error = (!errors.is_empty()).then(|| {
        errors
            .iter()
            .map(|e| e.to_string())
            .collect::<Vec<_>>()
            .join("; ")
    });
    if let Some(e) = &error {
        tracing::warn!(error = %e, "node sampler: some sources failed");
    }
    ctx.record_node_caps(&sample);
    ctx.health.record("node", started.elapsed(), error);
    let mut b = MetricsBuilder::new(time);
    metrics::node::node(&sample, &mut b);
    gpu_cycle(ctx, sample.boot_time.saturating_mul(1_000_000_000), &mut b);
    containers_cycle(ctx, time, &mut b);
    let samplers = ctx.health.snapshot();
    let logs = ctx.logs();
    metrics::agent::agent(
        &AgentSample {
            samplers: &samplers,
            delivery: export.counts(),
            logs_delivery: logs
                .as_ref()
                .and_then(|l| l.export.as_ref())
                .map(|s| s.counts()),
            process: ctx.health.process_usage(),
            start_nanos: ctx.started_nanos,
        },
        &mut b,
    );
    if let Some(l) = &logs {
        let dropped = l
            .own_log_dropped
            .as_ref()
            .map(|d| d.load(Ordering::Relaxed));
        metrics::agent::logs(&(l.report)(), dropped, ctx.started_nanos, &mut b);
    }
    Bytes::from(b.into_request(&ctx.resource()).encode_to_vec())
}

/// The GPU part of a node cycle: sample, refresh the GPU capabilities, add the metrics.
pub(crate) fn gpu_cycle(ctx: &Context, start_nanos: u64, b: &mut MetricsBuilder) -> GpuResult {
    let started = Instant::now();
    let result = ctx.gpu.lock().sample(GPU_TIMEOUT);
    let (count, models) = result.sample.capabilities();
    ctx.update_caps(|c| {
        c.gpu_count = count;
        c.gpu_models = models;
    });
    if ctx.cfg.gpu.enabled {
        let error = (!result.errors.is_empty()).then(|| result.errors.join("; "));
        ctx.health.record("gpu", started.elapsed(), error);
    }
    metrics::gpu::gpus(&result.sample, start_nanos, b);
    result
}

/// The containers' part of the node cycle: same interval, same timestamp.
pub(crate) fn containers_cycle(
    ctx: &Context,
    time: u64,
    b: &mut MetricsBuilder,
) -> ContainersSample {
    let started = Instant::now();
    let inv = ctx.containers.inventory();
    let (sample, errors) = ctx.containers.sampler.lock().sample(&inv, time);
    let error = (!errors.is_empty()).then(|| errors.join("; "));
    ctx.health.record("containers", started.elapsed(), error);
    metrics::containers::containers(&sample, b);
    sample
}

/// Samples the node every `sample_interval` (jittered; the live value, which a remote
/// configuration may change) until shutdown.
pub(crate) async fn node_loop(
    ctx: Arc<Context>,
    exporter: Exporter,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut sampler = NodeSampler::new(&ctx.cfg.node, ctx.mounts.clone());
    let stats = exporter.stats();
    loop {
        let payload = node_cycle(&ctx, &mut sampler, &stats);
        ctx.set_latest("node", &payload);
        exporter.enqueue(payload);
        if pause(&ctx, |l| jittered(l.sample_interval), &mut shutdown).await {
            return;
        }
    }
}
