//! The node cycle: one sample of the node, its GPUs, every container and the agent itself, all
//! stamped with one time and encoded as one OTLP request: the node's resource first (built with
//! the reference message types), then one resource per container written straight into the same
//! buffer (`otlp::metrics::containers`). `check` runs the same cycle once.

use super::timing::{jittered, pause, sleep_or_shutdown};
use crate::export::{ExportStats, Exporter};
use crate::otlp::MetricsBuilder;
use crate::otlp::metrics::{self, agent::AgentSample};
use crate::sources::containers::sampler::ContainersSample;
use crate::sources::gpu::GpuResult;
use crate::sources::node::NodeSampler;
use crate::state::Context;
use crate::sys::clock::now_nanos;
use bytes::Bytes;
use opentelemetry_proto::tonic::common::v1::any_value;
use prost::Message;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// How long a node cycle waits for the GPU sampler (the first pass loads NVML, which can take a
/// second or two on a GPU without persistence mode).
pub(crate) const GPU_TIMEOUT: Duration = Duration::from_secs(5);

/// How long the first node cycle waits for the first discovery pass.
const FIRST_DISCOVERY_WAIT: Duration = Duration::from_secs(3);

/// One node cycle: sample, then build the request stamped with the sample's time.
pub fn node_cycle(ctx: &Context, sampler: &mut NodeSampler, export: &ExportStats) -> Bytes {
    node_cycle_sized(ctx, sampler, export, &mut 0, None)
}

/// [`node_cycle`], with the size of the previous request as the buffer's starting capacity (the
/// request is written once into one allocation and handed to the queue as is), written into
/// `spare` when given (the previous request's allocation, once delivered: see [`node_loop`]).
pub(crate) fn node_cycle_sized(
    ctx: &Context,
    sampler: &mut NodeSampler,
    export: &ExportStats,
    last_len: &mut usize,
    spare: Option<Vec<u8>>,
) -> Bytes {
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
    let containers = containers_cycle(ctx, time, &mut b);
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
    let resource = ctx.resource();
    let node = b.into_request(&resource);
    // One allocation of the right size: the last request's, or at first a guess per container.
    let guess = if *last_len > 0 {
        *last_len + *last_len / 16
    } else {
        node.encoded_len() + containers.containers.len() * 2048
    };
    let need = guess.max(node.encoded_len());
    let mut buf = match spare {
        Some(mut v) => {
            v.clear();
            v.reserve(need);
            v
        }
        None => Vec::with_capacity(need),
    };
    // A Vec grows as needed: encoding into it cannot fail.
    let _ = node.encode(&mut buf);
    drop(node);
    let identity: Vec<(&str, &str)> = metrics::containers::IDENTITY_KEYS
        .iter()
        .filter_map(|k| {
            let a = resource.iter().find(|a| a.key == *k)?;
            match a.value.as_ref()?.value.as_ref()? {
                any_value::Value::StringValue(v) => Some((*k, v.as_str())),
                _ => None,
            }
        })
        .collect();
    ctx.containers
        .encoder
        .lock()
        .write(&containers, &identity, time, &mut buf);
    *last_len = buf.len();
    Bytes::from(buf)
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

/// The containers' part of the node cycle: same interval, same timestamp. The node-level
/// container metrics go into `b`; the per-container resources are written by the caller.
pub(crate) fn containers_cycle(
    ctx: &Context,
    time: u64,
    b: &mut MetricsBuilder,
) -> ContainersSample {
    let started = Instant::now();
    let inv = ctx.containers.inventory();
    let (sample, errors) = {
        let mut sampler = ctx.containers.sampler.lock();
        // The live interval (a remote configuration may change it) sets how often the slow
        // files are read.
        sampler.set_interval(ctx.live().sample_interval.0);
        sampler.sample(&inv, time)
    };
    let error = (!errors.is_empty()).then(|| errors.join("; "));
    ctx.health.record("containers", started.elapsed(), error);
    metrics::containers::node_level(&sample, b);
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
    let mut last_len = 0;
    let mut cycles: u64 = 0;
    // The previous request, to write the next one into its allocation if everyone else is done
    // with it by then (delivered, not spooled, `/metrics` off): a fresh 1.8 MB buffer at 1000
    // containers is 450 page faults and as many zeroed pages every cycle; the peak is the same.
    let mut previous: Option<Bytes> = None;
    // The first sample waits (briefly) for the first discovery pass, so that it already has the
    // containers and the node's container runtime in its resource: otherwise every start would
    // leave a short-lived `target_info` series without them in Prometheus.
    let waited = Instant::now();
    while !ctx.containers.published() && waited.elapsed() < FIRST_DISCOVERY_WAIT {
        if sleep_or_shutdown(Duration::from_millis(50), &mut shutdown).await {
            return;
        }
    }
    loop {
        let spare = previous
            .take()
            .and_then(|b| b.try_into_mut().ok())
            .map(Vec::from);
        let payload = node_cycle_sized(&ctx, &mut sampler, &stats, &mut last_len, spare);
        previous = Some(payload.clone());
        ctx.set_latest("node", &payload);
        exporter.enqueue(payload);
        cycles += 1;
        // The first trim after the first cycle gives back what start-up left free in the heap.
        if cycles == 1 || cycles.is_multiple_of(crate::sys::memory::TRIM_EVERY) {
            crate::sys::memory::trim();
        }
        if pause(&ctx, |l| jittered(l.sample_interval), &mut shutdown).await {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    /// What [`super::node_loop`] relies on: once the queue's and the sender's views of a request
    /// are gone, its allocation comes back whole (same address and capacity, no copy); while
    /// one is alive, it does not.
    #[test]
    fn a_delivered_request_gives_its_allocation_back() {
        for (len, cap) in [(300_000, 300_000), (300_000, 400_000)] {
            let mut v = Vec::with_capacity(cap);
            v.resize(len, 7u8);
            let addr = v.as_ptr();
            let payload = Bytes::from(v);
            let previous = payload.clone();
            let parts = (payload.slice(..1000), payload.slice(1000..));
            drop(payload);
            let held = previous.clone();
            let previous = previous.try_into_mut().expect_err("a part is alive");
            drop((parts, held));
            let back = Vec::from(previous.try_into_mut().expect("nobody else holds it"));
            assert_eq!(back.as_ptr(), addr);
            assert!(back.capacity() >= len);
        }
    }
}
