//! `node-agent run`: the samplers on their jittered schedules, feeding the delivery queue, until
//! SIGTERM/SIGINT. On a signal the cycle in progress finishes, its sample is queued, the queue is
//! given the grace period to drain, and the process exits 0.

use crate::config::Config;
use crate::export::{Exporter, Transport};
use crate::node::NodeSampler;
use crate::otlp::{self, MetricsBuilder};
use crate::resource::{self, Capabilities, HostInfo};
use crate::selfmetrics::{self, Health};
use bytes::Bytes;
use opentelemetry_proto::tonic::common::v1::KeyValue;
use prost::Message;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// State shared by the samplers, the exporter and the local HTTP endpoint.
pub struct Context {
    pub cfg: Config,
    pub host: HostInfo,
    pub caps: RwLock<Capabilities>,
    pub health: Health,
    pub started_nanos: u64,
}

impl Context {
    pub fn new(cfg: Config) -> Self {
        let host = HostInfo::detect(&cfg);
        let caps = Capabilities {
            cgroup_version: std::fs::read_to_string(cfg.proc_path.join("1/mountinfo"))
                .or_else(|_| std::fs::read_to_string(cfg.proc_path.join("self/mountinfo")))
                .ok()
                .and_then(|m| resource::detect_cgroup_version(&m)),
            ..Default::default()
        };
        Context {
            cfg,
            host,
            caps: RwLock::new(caps),
            health: Health::default(),
            started_nanos: otlp::now_nanos(),
        }
    }

    pub fn resource(&self) -> Vec<KeyValue> {
        resource::build(&self.cfg, &self.host, &self.caps.read().expect("caps lock"))
    }

    pub fn update_caps(&self, f: impl FnOnce(&mut Capabilities)) {
        f(&mut self.caps.write().expect("caps lock"));
    }
}

/// A pause drawn uniformly from `[min, max]`, so a fleet started together does not sample in step.
pub fn jittered(range: (Duration, Duration)) -> Duration {
    let (min, max) = range;
    min + (max - min).mul_f64(fastrand::f64())
}

/// Sleeps for `d`, or returns `true` early when shutdown is signalled.
pub async fn sleep_or_shutdown(d: Duration, shutdown: &mut watch::Receiver<bool>) -> bool {
    if *shutdown.borrow() {
        return true;
    }
    tokio::select! {
        _ = tokio::time::sleep(d) => *shutdown.borrow(),
        _ = shutdown.changed() => true,
    }
}

/// One node cycle: sample, then build the request stamped with the sample's time.
pub fn node_cycle(
    ctx: &Context,
    sampler: &mut NodeSampler,
    export: &crate::export::ExportStats,
) -> Bytes {
    let started = Instant::now();
    let time = otlp::now_nanos();
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
    ctx.update_caps(|c| {
        c.cpu_count = sample.cpu.logical_cpus;
        c.memory_total = sample.memory.total;
        c.disk_total = sample.disk_total();
    });
    ctx.health.record("node", started.elapsed(), error);
    let mut b = MetricsBuilder::new(time);
    sample.metrics(&mut b);
    selfmetrics::metrics(&ctx.health, export, ctx.started_nanos, &mut b);
    Bytes::from(b.into_request(&ctx.resource()).encode_to_vec())
}

async fn node_loop(ctx: Arc<Context>, exporter: Exporter, mut shutdown: watch::Receiver<bool>) {
    let cfg = &ctx.cfg;
    let mut sampler = NodeSampler::new(
        cfg.proc_path.clone(),
        cfg.sys_path.clone(),
        cfg.rootfs_path.clone(),
        cfg.filesystem_timeout,
    );
    let stats = exporter.stats();
    loop {
        let payload = node_cycle(&ctx, &mut sampler, &stats);
        exporter.enqueue(payload);
        if sleep_or_shutdown(jittered(cfg.sample_interval), &mut shutdown).await {
            return;
        }
    }
}

/// Waits for SIGTERM or SIGINT.
async fn signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: finishing the cycle and flushing"),
        _ = int.recv() => tracing::info!("SIGINT: finishing the cycle and flushing"),
    }
}

/// Runs until a signal; returns the process exit code.
pub async fn run(cfg: Config) -> i32 {
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
        interval_min_s = cfg.sample_interval.0.as_secs_f64(),
        interval_max_s = cfg.sample_interval.1.as_secs_f64(),
        "node-agent starting"
    );
    // Game-server probes: a bad [servers]/[[static_targets]] section stops the agent at start.
    let prober = match crate::probe::schedule::Prober::from_config(&cfg) {
        Ok(p) => p,
        Err(e) => {
            tracing::error!(error = %e, "invalid game-server probe configuration");
            return 2;
        }
    };
    let exporter = Exporter::start(transport, cfg.queue_memory_bytes, cfg.send_backoff_max);
    let grace = cfg.shutdown_grace;
    let ctx = Arc::new(Context::new(cfg));
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let node = tokio::spawn(node_loop(
        ctx.clone(),
        exporter.clone(),
        shutdown_rx.clone(),
    ));
    // Wings discovery feeds this channel once it is wired in; static targets work without it.
    let (_servers_tx, servers_rx) = watch::channel(Vec::new());
    let players = tokio::spawn(crate::probe::schedule::players_loop(
        ctx.clone(),
        prober,
        exporter.clone(),
        servers_rx,
        shutdown_rx.clone(),
    ));
    signal().await;
    let _ = shutdown_tx.send(true);
    let _ = node.await;
    let _ = players.await;
    let left = exporter.drain(grace).await;
    if left > 0 {
        tracing::warn!(
            batches = left,
            "shutdown grace period over; undelivered batches remain"
        );
    } else {
        tracing::info!("all batches delivered; exiting");
    }
    exporter.close();
    0
}
