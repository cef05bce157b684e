//! The node sampler: CPU, memory, filesystems, disks, network and uptime of the host, read from
//! /proc (one file per metric family, each with a pure parser and its metric encoding).

pub mod cpu;
pub mod disk;
pub mod filesystem;
pub mod memory;
pub mod network;
pub mod uptime;

use crate::otlp::MetricsBuilder;
use crate::procfile::{FileError, ProcFile};
use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

/// Everything one node sample holds.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct NodeSample {
    pub cpu: cpu::CpuSample,
    pub memory: memory::MemorySample,
    pub filesystems: Vec<filesystem::FsSample>,
    pub stale_mounts: Vec<String>,
    pub disks: Vec<disk::DiskSample>,
    pub interfaces: Vec<network::InterfaceSample>,
    pub uptime_sec: f64,
    /// Boot time, Unix seconds: the start of every node counter.
    pub boot_time: u64,
}

impl NodeSample {
    pub fn metrics(&self, b: &mut MetricsBuilder) {
        let boot = self.boot_time.saturating_mul(1_000_000_000);
        cpu::metrics(&self.cpu, boot, b);
        memory::metrics(&self.memory, boot, b);
        filesystem::metrics(&self.filesystems, boot, b);
        disk::metrics(&self.disks, boot, b);
        network::metrics(&self.interfaces, boot, b);
        uptime::metrics(self.uptime_sec, b);
    }

    /// Total size of the real filesystems (capability `node.disk.total`).
    pub fn disk_total(&self) -> u64 {
        self.filesystems.iter().map(|f| f.total).sum()
    }
}

/// Errors of one node sampling pass. A failed family leaves its part of the sample empty; the
/// others are still reported.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
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
    mountinfo: ProcFile,
    /// The mount table as last read; mountinfo is read again only when `poll` says it changed.
    mounts: Vec<filesystem::Mount>,
    cpu: cpu::CpuState,
    fs: filesystem::FsState,
    whole_disk: HashMap<String, bool>,
    tck: f64,
}

impl NodeSampler {
    /// The sampler for the paths and statfs deadline of `cfg`.
    pub fn from_config(cfg: &crate::config::Config) -> Self {
        Self::new(
            cfg.proc_path.clone(),
            cfg.sys_path.clone(),
            cfg.rootfs_path.clone(),
            cfg.filesystem_timeout,
        )
    }

    pub fn new(
        proc_path: PathBuf,
        sys_path: PathBuf,
        rootfs: PathBuf,
        fs_timeout: Duration,
    ) -> Self {
        let p = |rel: &str| proc_path.join(rel);
        let mountinfo = if p("1/mountinfo").exists() {
            p("1/mountinfo")
        } else {
            p("self/mountinfo")
        };
        NodeSampler {
            stat: ProcFile::new(p("stat")),
            meminfo: ProcFile::new(p("meminfo")),
            diskstats: ProcFile::new(p("diskstats")),
            net_dev: ProcFile::new(p("net/dev")),
            uptime: ProcFile::new(p("uptime")),
            mountinfo: ProcFile::new(mountinfo),
            mounts: Vec::new(),
            cpu: cpu::CpuState::default(),
            fs: filesystem::FsState::new(rootfs, fs_timeout),
            whole_disk: HashMap::new(),
            tck: cpu::ticks_per_second(),
            sys_path,
        }
    }

    /// Takes one sample. Families that fail are listed in the returned errors.
    pub fn sample(&mut self) -> (NodeSample, Vec<NodeError>) {
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
        if self.mountinfo.changed() {
            match self.mountinfo.read_str() {
                Ok(text) => self.mounts = filesystem::parse_mountinfo(text),
                Err(e) => {
                    self.mounts.clear();
                    errors.push(e.into());
                }
            }
        }
        if !self.mounts.is_empty() {
            (s.filesystems, s.stale_mounts) = self.fs.sample(&self.mounts);
        }
        (s, errors)
    }
}
