//! The node sampler: CPU, memory, filesystems, disks, network and uptime of the host, read from
//! /proc (one file per family, each with a pure parser). `otlp::metrics::node` encodes a sample.

pub(crate) mod cpu;
pub(crate) mod disk;
pub(crate) mod filesystem;
pub(crate) mod memory;
pub(crate) mod network;
pub(crate) mod uptime;

use crate::sys::mountinfo::{MountEntry, MountTable};
use crate::sys::procfile::{FileError, ProcFile};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// Where the node sampler reads the host, and how long a filesystem may take to answer.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// The host's /proc (`/host/proc` in a container).
    pub proc_path: PathBuf,
    /// The host's /sys.
    pub sys_path: PathBuf,
    /// The host's root filesystem, under which mount points are measured.
    pub rootfs_path: PathBuf,
    /// A network or FUSE mount whose statfs takes longer is reported stale and skipped.
    pub filesystem_timeout: Duration,
}

/// Everything one node sample holds.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub(crate) struct NodeSample {
    pub(crate) cpu: cpu::CpuSample,
    pub(crate) memory: memory::MemorySample,
    pub(crate) filesystems: Vec<filesystem::FsSample>,
    pub(crate) stale_mounts: Vec<String>,
    pub(crate) disks: Vec<disk::DiskSample>,
    pub(crate) interfaces: Vec<network::InterfaceSample>,
    pub(crate) uptime_sec: f64,
    /// Boot time, Unix seconds: the start of every node counter.
    pub(crate) boot_time: u64,
}

impl NodeSample {
    /// Total size of the real filesystems (capability `node.disk.total`).
    pub(crate) fn disk_total(&self) -> u64 {
        self.filesystems.iter().map(|f| f.total).sum()
    }
}

/// Errors of one node sampling pass. A failed family leaves its part of the sample empty; the
/// others are still reported.
#[derive(Debug, thiserror::Error)]
pub(crate) enum NodeError {
    #[error(transparent)]
    File(#[from] FileError),
    #[error("{path}: unexpected content")]
    Parse { path: PathBuf },
}

/// Keeps the descriptors and previous readings between samples.
pub struct NodeSampler {
    sys_path: PathBuf,
    stat: ProcFile,
    meminfo: ProcFile,
    diskstats: ProcFile,
    net_dev: ProcFile,
    uptime: ProcFile,
    /// The host's mount table, shared with discovery; parsed again only after a change.
    mount_table: Arc<MountTable>,
    /// The table the real filesystems below were picked from.
    picked_from: Option<Arc<Vec<MountEntry>>>,
    mounts: Vec<filesystem::FsMount>,
    cpu: cpu::CpuState,
    fs: filesystem::FsState,
    whole_disk: HashMap<String, bool>,
    tck: f64,
}

impl NodeSampler {
    /// A sampler reading the host where `cfg` says, sharing the host's mount table.
    pub fn new(cfg: &NodeConfig, mount_table: Arc<MountTable>) -> Self {
        let p = |rel: &str| cfg.proc_path.join(rel);
        NodeSampler {
            stat: ProcFile::new(p("stat")),
            meminfo: ProcFile::new(p("meminfo")),
            diskstats: ProcFile::new(p("diskstats")),
            net_dev: ProcFile::new(p("net/dev")),
            uptime: ProcFile::new(p("uptime")),
            mount_table,
            picked_from: None,
            mounts: Vec::new(),
            cpu: cpu::CpuState::default(),
            fs: filesystem::FsState::new(cfg.rootfs_path.clone(), cfg.filesystem_timeout),
            whole_disk: HashMap::new(),
            tck: cpu::ticks_per_second(),
            sys_path: cfg.sys_path.clone(),
        }
    }

    /// Takes one sample. Families that fail are listed in the returned errors.
    pub(crate) fn sample(&mut self) -> (NodeSample, Vec<NodeError>) {
        let mut s = NodeSample::default();
        let mut errors = Vec::new();
        match self.stat.read_str() {
            Ok(text) => match cpu::parse_proc_stat(text) {
                Some(stat) => {
                    s.cpu = self.cpu.sample(&stat, self.tck);
                    s.boot_time = stat.boot_time;
                }
                None => errors.push(NodeError::Parse {
                    path: self.stat.path().into(),
                }),
            },
            Err(e) => errors.push(e.into()),
        }
        match self.meminfo.read_str() {
            Ok(text) => match memory::parse_meminfo(text) {
                Some(m) => s.memory = m,
                None => errors.push(NodeError::Parse {
                    path: self.meminfo.path().into(),
                }),
            },
            Err(e) => errors.push(e.into()),
        }
        match self.uptime.read_str() {
            Ok(text) => match uptime::parse_uptime(text) {
                Some(u) => s.uptime_sec = u,
                None => errors.push(NodeError::Parse {
                    path: self.uptime.path().into(),
                }),
            },
            Err(e) => errors.push(e.into()),
        }
        let sys_block = self.sys_path.join("block");
        let whole_disk = &mut self.whole_disk;
        match self.diskstats.read_str() {
            Ok(text) => {
                s.disks = disk::parse_diskstats(text, |name| {
                    *whole_disk.entry(name.to_string()).or_insert_with(|| {
                        !disk::is_virtual_device(name) && sys_block.join(name).exists()
                    })
                })
            }
            Err(e) => errors.push(e.into()),
        }
        match self.net_dev.read_str() {
            Ok(text) => s.interfaces = network::parse_net_dev(text),
            Err(e) => errors.push(e.into()),
        }
        match self.mount_table.current() {
            Ok(table) => {
                if !self
                    .picked_from
                    .as_ref()
                    .is_some_and(|t| Arc::ptr_eq(t, &table))
                {
                    self.mounts = filesystem::real_mounts(&table);
                    self.picked_from = Some(table);
                }
            }
            Err(e) => {
                self.mounts.clear();
                self.picked_from = None;
                errors.push(e.into());
            }
        }
        if !self.mounts.is_empty() {
            (s.filesystems, s.stale_mounts) = self.fs.sample(&self.mounts);
        }
        (s, errors)
    }
}
