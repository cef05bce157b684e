//! The shared state of a running agent: what the loops, the local HTTP endpoint, `check` and the
//! control plane read and write. Like mini-redis keeps its shared state in `db.rs`, everything
//! that more than one task touches lives here, behind locks that cannot be poisoned
//! (`parking_lot`): a panic in one loop never turns every other loop's lock into a panic.

use crate::config::Config;
use crate::export::ExportStats;
use crate::otlp::resource;
use crate::sources::agent::Health;
use crate::sources::containers::Inventory;
use crate::sources::containers::sampler::Sampler as ContainerSampler;
use crate::sources::gpu::{GpuSampler, GpuWorker};
use crate::sources::host::{Capabilities, HostInfo};
use crate::sources::node::NodeSample;
use crate::sys::clock::now_nanos;
use crate::sys::mountinfo::{self, MountTable};
use bytes::Bytes;
use opentelemetry_proto::tonic::common::v1::KeyValue;
use parking_lot::{Mutex, RwLock};
use std::collections::BTreeMap;
use std::sync::Arc;

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
    /// Delivery counters, for `/readyz` and the self-metrics.
    pub(crate) export: Arc<ExportStats>,
    /// The GPU sampler (its own thread), sampled with every node cycle.
    pub(crate) gpu: Mutex<GpuWorker>,
    /// Containers and game servers: discovery's inventory and the per-container sampler.
    pub containers: Containers,
    /// The host's mount table, shared by the node sampler and discovery.
    pub mounts: Arc<MountTable>,
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
            gpu,
            containers: Containers::new(cfg.node.proc_path.clone(), cfg.sample_interval.0),
            mounts,
            cfg,
            host,
            caps: RwLock::new(caps),
            health: Health::default(),
            started_nanos: now_nanos(),
            latest: Mutex::new(BTreeMap::new()),
            export: Arc::new(ExportStats::default()),
        }
    }

    /// The OTLP Resource attributes as of now.
    pub(crate) fn resource(&self) -> Vec<KeyValue> {
        resource::build(&self.cfg.resource, &self.host, &self.caps.read())
    }

    /// Remembers a sampler's latest request for `/metrics`.
    pub(crate) fn set_latest(&self, sampler: &'static str, payload: &Bytes) {
        self.latest.lock().insert(sampler, payload.clone());
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
