//! `node-agent run`: the samplers on their jittered schedules, feeding the delivery queue, until
//! SIGTERM/SIGINT. On a signal the cycle in progress finishes, its sample is queued, the queue is
//! given the grace period to drain, and the process exits 0.

use crate::config::Config;
use crate::export::{ExportStats, Exporter, QueueConfig, Transport};
use crate::node::NodeSampler;
use crate::otlp::{self, MetricsBuilder};
use crate::resource::{self, Capabilities, HostInfo};
use crate::selfmetrics::{self, Health};
use bytes::Bytes;
use opentelemetry_proto::tonic::common::v1::KeyValue;
use prost::Message;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// State shared by the samplers, the exporter and the local HTTP endpoint.
pub struct Context {
    pub cfg: Config,
    pub host: HostInfo,
    pub caps: RwLock<Capabilities>,
    pub health: Health,
    pub started_nanos: u64,
    /// The last OTLP request of each sampler: what `/metrics` renders, so its names are the
    /// Collector's translation of exactly what we export. Every sampler loop calls
    /// [`Context::set_latest`] with the request it enqueues.
    pub latest: Mutex<BTreeMap<&'static str, Bytes>>,
    /// Delivery counters, for `/readyz`.
    pub export: Arc<ExportStats>,
    /// The GPU sampler (its own thread), sampled with every node cycle.
    pub gpu: std::sync::Mutex<crate::gpu::GpuWorker>,
    /// Containers and game servers: discovery's inventory and the per-container sampler.
    pub containers: crate::containers::Shared,
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
        let gpu = std::sync::Mutex::new(crate::gpu::GpuWorker::new(
            cfg.gpu_enabled,
            crate::gpu::GpuSampler::new(
                cfg.proc_path.clone(),
                cfg.sys_path.clone(),
                cfg.rootfs_path.clone(),
                cfg.nvml_library.clone(),
            ),
        ));
        Context {
            gpu,
            containers: crate::containers::Shared::new(cfg.proc_path.clone()),
            cfg,
            host,
            caps: RwLock::new(caps),
            health: Health::default(),
            started_nanos: otlp::now_nanos(),
            latest: Mutex::new(BTreeMap::new()),
            export: Arc::new(ExportStats::default()),
        }
    }

    pub fn resource(&self) -> Vec<KeyValue> {
        resource::build(&self.cfg, &self.host, &self.caps.read().expect("caps lock"))
    }

    /// Remembers a sampler's latest request for `/metrics`.
    pub fn set_latest(&self, sampler: &'static str, payload: &Bytes) {
        self.latest
            .lock()
            .expect("latest lock")
            .insert(sampler, payload.clone());
    }

    pub fn update_caps(&self, f: impl FnOnce(&mut Capabilities)) {
        f(&mut self.caps.write().expect("caps lock"));
    }

    /// The capabilities a node sample tells: CPU count, memory and disk totals.
    pub fn record_node_caps(&self, sample: &crate::node::NodeSample) {
        self.update_caps(|c| {
            c.cpu_count = sample.cpu.logical_cpus;
            c.memory_total = sample.memory.total;
            c.disk_total = sample.disk_total();
        });
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
    ctx.record_node_caps(&sample);
    ctx.health.record("node", started.elapsed(), error);
    let mut b = MetricsBuilder::new(time);
    sample.metrics(&mut b);
    gpu_cycle(ctx, sample.boot_time.saturating_mul(1_000_000_000), &mut b);
    containers_cycle(ctx, time, &mut b);
    selfmetrics::metrics(&ctx.health, export, ctx.started_nanos, &mut b);
    Bytes::from(b.into_request(&ctx.resource()).encode_to_vec())
}

/// How long a node cycle waits for the GPU sampler (the first pass loads NVML, which can take a
/// second or two on a GPU without persistence mode).
pub const GPU_TIMEOUT: Duration = Duration::from_secs(5);

/// The GPU part of a node cycle: sample, refresh the GPU capabilities, add the metrics.
pub fn gpu_cycle(ctx: &Context, start_nanos: u64, b: &mut MetricsBuilder) -> crate::gpu::GpuResult {
    let started = Instant::now();
    let result = ctx.gpu.lock().expect("gpu lock").sample(GPU_TIMEOUT);
    let (count, models) = result.sample.capabilities();
    ctx.update_caps(|c| {
        c.gpu_count = count;
        c.gpu_models = models;
    });
    if ctx.cfg.gpu_enabled {
        let error = (!result.errors.is_empty()).then(|| result.errors.join("; "));
        ctx.health.record("gpu", started.elapsed(), error);
    }
    result.sample.metrics(start_nanos, b);
    result
}

/// The containers' part of the node cycle: same interval, same timestamp.
pub fn containers_cycle(
    ctx: &Context,
    time: u64,
    b: &mut MetricsBuilder,
) -> crate::containers::sampler::ContainersSample {
    let started = Instant::now();
    let inv = ctx.containers.inventory();
    let (sample, errors) = ctx
        .containers
        .sampler
        .lock()
        .expect("sampler lock")
        .sample(&inv, time);
    let error = (!errors.is_empty()).then(|| errors.join("; "));
    ctx.health.record("containers", started.elapsed(), error);
    crate::containers::sampler::metrics(&sample, b);
    sample
}

async fn node_loop(ctx: Arc<Context>, exporter: Exporter, mut shutdown: watch::Receiver<bool>) {
    let cfg = &ctx.cfg;
    let mut sampler = NodeSampler::from_config(cfg);
    let stats = exporter.stats();
    loop {
        let payload = node_cycle(&ctx, &mut sampler, &stats);
        ctx.set_latest("node", &payload);
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

/// Raises the soft limit on open descriptors to the hard one. The samplers keep one descriptor
/// per file they re-read (about 10 per container with cgroup v1, plus one per process for disk
/// bytes), so a node with a few hundred containers passes the usual soft limit of 1024; past it
/// every new container would fail with EMFILE.
pub fn raise_fd_limit() -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain getrlimit/setrlimit on a valid struct.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
    lim.rlim_cur
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
    let queue = QueueConfig {
        memory_bytes: cfg.queue_memory_bytes,
        // Console and `none` never fail to deliver: no spool directory is created for them.
        spool_dir: (cfg.export.exporter == crate::config::ExporterKind::Otlp
            && !cfg.spool_dir.as_os_str().is_empty())
        .then(|| cfg.spool_dir.clone()),
        spool_max_bytes: cfg.spool_max_bytes,
        fsync: cfg.spool_fsync,
        backoff_max: cfg.send_backoff_max,
    };
    let exporter = Exporter::start(transport, queue);
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
    let discovery = tokio::spawn(crate::containers::discovery_loop(
        ctx.clone(),
        shutdown_rx.clone(),
    ));
    let node = tokio::spawn(node_loop(
        ctx.clone(),
        exporter.clone(),
        shutdown_rx.clone(),
    ));
    let players = tokio::spawn(crate::probe::schedule::players_loop(
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
    // The last sample is queued; give the collector the grace period, then keep the rest on disk.
    let delivered = exporter.drain(grace).await;
    let (persisted, lost) = exporter.shutdown().await;
    if delivered {
        tracing::info!("all batches delivered; exiting");
    } else if lost == 0 {
        tracing::warn!(
            spooled = persisted,
            "shutdown grace period over; undelivered batches kept in the spool for the next start"
        );
    } else {
        tracing::error!(
            spooled = persisted,
            lost,
            "shutdown grace period over; no spool for the undelivered batches"
        );
    }
    tracing::info!(samples, "node-agent stopped");
    0
}
