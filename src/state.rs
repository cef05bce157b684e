//! The shared state of a running agent: what the loops, the local HTTP endpoint, `check` and the
//! control plane read and write. Like mini-redis keeps its shared state in `db.rs`, everything
//! that more than one task touches lives here, behind locks that cannot be poisoned
//! (`parking_lot`): a panic in one loop never turns every other loop's lock into a panic.

use crate::config::Config;
use crate::config::opamp::TransportKind;
use crate::export::ExportStats;
use crate::otlp::resource;
use crate::otlp::resource::ResourceConfig;
use crate::sources::agent::Health;
use crate::sources::containers::Inventory;
use crate::sources::containers::sampler::Sampler as ContainerSampler;
use crate::sources::gpu::{GpuSampler, GpuWorker};
use crate::sources::host::{Capabilities, HostInfo};
use crate::sources::logs::{Report as LogsReport, Selection};
use crate::sources::node::NodeSample;
use crate::sources::probe::prober::PlayersConfig;
use crate::sys::clock::now_nanos;
use crate::sys::mountinfo::{self, MountTable};
use bytes::Bytes;
use opentelemetry_proto::tonic::common::v1::KeyValue;
use parking_lot::{Mutex, RwLock};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// The settings a running agent changes without a restart (from a remote configuration, see
/// `config::remote::LIVE`): the loops read them at every iteration instead of `ctx.cfg`, which
/// holds what is read once at start.
#[derive(Debug, Clone)]
pub(crate) struct Live {
    /// The pause between node samples is drawn from `[min, max]`.
    pub(crate) sample_interval: (Duration, Duration),
    pub(crate) discovery_interval: Duration,
    /// Game-server targets, overrides, probe limits and schedule.
    pub(crate) players: PlayersConfig,
    /// The Resource's configured part (attributes, service name, node address).
    pub(crate) resource: ResourceConfig,
    /// Which containers' consoles are followed (`logs`); the logs source takes a change at once.
    pub(crate) logs: Selection,
}

impl Live {
    pub(crate) fn from_config(cfg: &Config) -> Live {
        Live {
            sample_interval: cfg.sample_interval,
            discovery_interval: cfg.discovery.interval,
            players: cfg.players.clone(),
            resource: cfg.resource.clone(),
            logs: cfg.logs.selection,
        }
    }
}

/// Where the control-plane (OpAMP) connection stands, for `/readyz` and `check`. Never holds a
/// secret: the endpoint is shown without credentials, errors name the URL the same way.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ControlStatus {
    pub endpoint: String,
    pub transport: TransportKind,
    pub instance_uid: String,
    /// The last exchange succeeded and no failure came after it.
    pub connected: bool,
    /// Unix milliseconds of the last successful reply.
    pub last_contact_unix_ms: Option<u64>,
    pub last_error: Option<String>,
    /// Failed attempts since the last success.
    pub consecutive_failures: u32,
    pub heartbeat_sec: f64,
    /// The server's capability bits (AcceptsStatus, OffersRemoteConfig, …).
    pub server_capabilities: u64,
    pub remote_config: Option<RemoteConfigState>,
    pub messages_sent: u64,
    pub messages_received: u64,
    /// Server messages that could not be decoded (ignored).
    pub malformed: u64,
}

/// The last remote configuration received and what became of it.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct RemoteConfigState {
    /// Hex of the configuration hash.
    pub hash: String,
    /// `APPLIED`, `APPLYING` or `FAILED`.
    pub status: String,
    pub error: Option<String>,
}

/// Discovery's latest inventory and the per-container sampler that reads it in the node cycle.
pub struct Containers {
    inventory: RwLock<Arc<Inventory>>,
    /// Discovery has published at least one inventory.
    published: std::sync::atomic::AtomicBool,
    pub(crate) sampler: Mutex<ContainerSampler>,
    /// The per-container OTLP templates the node cycle patches.
    pub(crate) encoder: Mutex<crate::otlp::metrics::containers::Encoder>,
}

impl Containers {
    fn new(proc_path: std::path::PathBuf, sample_interval: std::time::Duration) -> Containers {
        Containers {
            inventory: RwLock::new(Arc::new(Inventory::default())),
            published: std::sync::atomic::AtomicBool::new(false),
            sampler: Mutex::new(ContainerSampler::for_interval(proc_path, sample_interval)),
            encoder: Mutex::new(Default::default()),
        }
    }

    /// The latest inventory (an immutable snapshot).
    pub(crate) fn inventory(&self) -> Arc<Inventory> {
        self.inventory.read().clone()
    }

    /// Swaps in a new inventory.
    pub fn set(&self, inv: Inventory) {
        *self.inventory.write() = Arc::new(inv);
        self.published
            .store(true, std::sync::atomic::Ordering::Release);
    }

    /// Whether discovery has published an inventory yet.
    pub(crate) fn published(&self) -> bool {
        self.published.load(std::sync::atomic::Ordering::Acquire)
    }
}

/// The running logs signal, as `/readyz` and the self-metrics see it.
pub(crate) struct LogsState {
    /// What the logs source is doing now.
    pub(crate) report: Box<dyn Fn() -> LogsReport + Send + Sync>,
    /// The logs lane's delivery counters.
    pub(crate) export: Option<Arc<ExportStats>>,
    /// Records of the agent's own log not sent (its buffer was full); `None` when not exported.
    pub(crate) own_log_dropped: Option<Arc<std::sync::atomic::AtomicU64>>,
}

/// State shared by the samplers, the exporter and the local HTTP endpoint.
pub struct Context {
    pub cfg: Config,
    pub(crate) host: HostInfo,
    caps: RwLock<Capabilities>,
    pub(crate) health: Health,
    /// When the agent started: the start time of its own counters.
    pub(crate) started_nanos: u64,
    /// The last OTLP request of each sampler: what `/metrics` renders, so its names are the
    /// Collector's translation of exactly what we export. Every sampler loop calls
    /// [`Context::set_latest`] with the request it enqueues.
    latest: Mutex<BTreeMap<&'static str, Bytes>>,
    /// Whether anything reads [`Context::latest`]: off when the local endpoint is, so that the
    /// last request (1.8 MB at 1000 containers) is not held between cycles for nobody.
    pub(crate) keep_latest: bool,
    /// Delivery counters, for `/readyz` and the self-metrics.
    pub(crate) export: Arc<ExportStats>,
    /// The GPU sampler (its own thread), sampled with every node cycle.
    pub(crate) gpu: Mutex<GpuWorker>,
    /// Containers and game servers: discovery's inventory and the per-container sampler.
    pub containers: Containers,
    /// The host's mount table, shared by the node sampler and discovery.
    pub mounts: Arc<MountTable>,
    /// What may change while the agent runs (see [`Live`]), and a signal when it did.
    live: RwLock<Arc<Live>>,
    live_changed: tokio::sync::watch::Sender<()>,
    /// The control-plane connection's status, when there is a client (it keeps it current).
    pub(crate) control: Mutex<Option<Arc<Mutex<ControlStatus>>>>,
    /// The logs signal, once it runs.
    pub(crate) logs: RwLock<Option<Arc<LogsState>>>,
}

impl Context {
    pub fn new(cfg: Config) -> Self {
        let host = HostInfo::detect(&cfg.node.proc_path, &cfg.node.rootfs_path);
        let mounts = Arc::new(MountTable::host(&cfg.node.proc_path));
        let caps = Capabilities {
            cgroup_version: mounts
                .current()
                .ok()
                .and_then(|m| mountinfo::cgroup_version(&m))
                .map(str::to_string),
            ..Default::default()
        };
        let gpu = Mutex::new(GpuWorker::new(
            cfg.gpu.enabled,
            GpuSampler::from_config(&cfg.gpu),
        ));
        Context {
            live: RwLock::new(Arc::new(Live::from_config(&cfg))),
            live_changed: tokio::sync::watch::Sender::new(()),
            control: Mutex::new(None),
            logs: RwLock::new(None),
            gpu,
            containers: Containers::new(cfg.node.proc_path.clone(), cfg.sample_interval.0),
            mounts,
            cfg,
            host,
            caps: RwLock::new(caps),
            health: Health::default(),
            started_nanos: now_nanos(),
            latest: Mutex::new(BTreeMap::new()),
            keep_latest: true,
            export: Arc::new(ExportStats::default()),
        }
    }

    /// The OTLP Resource attributes as of now.
    pub(crate) fn resource(&self) -> Vec<KeyValue> {
        resource::build(&self.live().resource, &self.host, &self.caps.read())
    }

    /// Where the control-plane connection stands (`None`: no OpAMP client).
    pub(crate) fn control_status(&self) -> Option<ControlStatus> {
        let cell = self.control.lock().clone()?;
        let status = cell.lock().clone();
        Some(status)
    }

    /// The live settings in force (an immutable snapshot).
    pub(crate) fn live(&self) -> Arc<Live> {
        self.live.read().clone()
    }

    /// Puts new live settings in force; the loops re-plan their pause and take them at their
    /// next iteration.
    pub(crate) fn set_live(&self, live: Live) {
        *self.live.write() = Arc::new(live);
        self.live_changed.send_replace(());
    }

    /// Wakes when the live settings change.
    pub(crate) fn live_changes(&self) -> tokio::sync::watch::Receiver<()> {
        self.live_changed.subscribe()
    }

    /// The logs signal's state, when it runs.
    pub(crate) fn logs(&self) -> Option<Arc<LogsState>> {
        self.logs.read().clone()
    }

    /// Remembers a sampler's latest request for `/metrics`.
    pub(crate) fn set_latest(&self, sampler: &'static str, payload: &Bytes) {
        if self.keep_latest {
            self.latest.lock().insert(sampler, payload.clone());
        }
    }

    /// Every sampler's latest request.
    pub(crate) fn latest(&self) -> Vec<Bytes> {
        self.latest.lock().values().cloned().collect()
    }

    pub(crate) fn update_caps(&self, f: impl FnOnce(&mut Capabilities)) {
        f(&mut self.caps.write());
    }

    /// The capabilities a node sample tells: CPU count, memory and disk totals.
    pub(crate) fn record_node_caps(&self, sample: &NodeSample) {
        self.update_caps(|c| {
            c.cpu_count = sample.cpu.logical_cpus;
            c.memory_total = sample.memory.total;
            c.disk_total = sample.disk_total();
        });
    }
}
