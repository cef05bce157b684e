//! GPUs: found as node capabilities and measured every node cycle, without running `nvidia-smi`.
//!
//! - NVIDIA through NVML, opened at run time ([`nvml`]); a host without the driver simply has no
//!   NVIDIA GPUs. When the library cannot be used but the driver is there, the GPUs are still
//!   listed (capabilities, no measurements) from `/proc/driver/nvidia/gpus/*/information`.
//! - AMD and Intel through DRM sysfs files ([`drm`]).
//!
//! Metrics follow the OpenTelemetry `hw.gpu.*` conventions (semconv 1.44, `hardware/gpu`):
//! `hw.gpu.utilization` (`hw.gpu.task=general`), `hw.gpu.memory.usage`/`.limit`/`.utilization`,
//! and the generic `hw.temperature`/`hw.power` with `hw.type=gpu`. Every point carries `hw.id`
//! (the NVIDIA UUID, else the PCI address), `hw.name`, `hw.vendor` and `hw.model`.
//!
//! Failures never stop other samplers: an error is logged once when it starts and once when it
//! clears ([`Reporter`]), the GPU is measured again when it returns, and every NVML call runs on
//! a worker thread the node cycle waits on for a bounded time ([`GpuWorker`]): a GPU that hangs
//! the driver cannot hang the node cycle.

pub(crate) mod drm;
pub(crate) mod nvml;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Facts about a GPU that do not change while it is present.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub(crate) struct GpuInfo {
    /// `hw.id`: NVIDIA UUID, else the PCI address.
    pub(crate) id: String,
    /// `hw.name`: `nvidia<index>` (NVML index, as `nvidia-smi` numbers them) or the DRM card name.
    pub(crate) name: String,
    pub(crate) vendor: String,
    pub(crate) model: String,
    /// PCI address, `dddd:bb:dd.f`.
    pub(crate) bus_id: Option<String>,
    pub(crate) driver: String,
    pub(crate) driver_version: Option<String>,
    pub(crate) memory_total: Option<u64>,
    /// Where it was found: `nvml`, `sysfs` or `procfs` (listed only, not measured).
    pub(crate) source: &'static str,
}

/// What one sample measured; a value the GPU or driver does not give is `None`.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub(crate) struct GpuReading {
    /// Share of time the GPU was busy, 0–1.
    pub(crate) utilization: Option<f64>,
    pub(crate) memory_used: Option<u64>,
    pub(crate) memory_total: Option<u64>,
    pub(crate) temperature_c: Option<f64>,
    pub(crate) power_w: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub(crate) struct Gpu {
    #[serde(flatten)]
    pub(crate) info: GpuInfo,
    pub(crate) reading: GpuReading,
}

/// Every GPU of one sample.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub(crate) struct GpuSample {
    pub(crate) gpus: Vec<Gpu>,
}

impl GpuSample {
    /// `node.gpu.count` and `node.gpu.models` (one model per GPU, in order).
    pub(crate) fn capabilities(&self) -> (u32, Vec<String>) {
        (
            self.gpus.len() as u32,
            self.gpus.iter().map(|g| g.info.model.clone()).collect(),
        )
    }
}

/// `00000000:00:06.0` (NVML) and `0000:00:06.0` (sysfs, procfs) → `0000:00:06.0`, lower case.
pub(crate) fn normalize_bus_id(bus: &str) -> String {
    let b = bus.trim().to_ascii_lowercase();
    match b.split_once(':') {
        Some((domain, rest)) if domain.len() > 4 => {
            let d = domain.trim_start_matches('0');
            format!("{:0>4}:{rest}", d)
        }
        _ => b,
    }
}

/// Fields of `/proc/driver/nvidia/gpus/<bus>/information` (the driver's own description).
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct NvidiaProcInfo {
    pub(crate) model: String,
    pub(crate) uuid: String,
    pub(crate) bus_location: String,
    pub(crate) device_minor: Option<u32>,
    pub(crate) firmware: Option<String>,
}

/// Parses one `information` file (`Key: \t value` lines). `None` without a model.
pub(crate) fn parse_nvidia_information(text: &str) -> Option<NvidiaProcInfo> {
    let mut i = NvidiaProcInfo::default();
    for line in text.lines() {
        let Some((k, v)) = line.split_once(':') else {
            continue;
        };
        let v = v.trim();
        match k.trim() {
            "Model" => i.model = v.to_string(),
            "GPU UUID" => i.uuid = v.to_string(),
            "Bus Location" => i.bus_location = normalize_bus_id(v),
            "Device Minor" => i.device_minor = v.parse().ok(),
            "GPU Firmware" => i.firmware = Some(v.to_string()).filter(|s| !s.is_empty()),
            _ => {}
        }
    }
    (!i.model.is_empty()).then_some(i)
}

/// The driver version from `/proc/driver/nvidia/version`: the first version-looking word of the
/// `NVRM version:` line (`NVIDIA UNIX x86_64 Kernel Module  535.104.05  …` for the proprietary
/// module, `NVIDIA UNIX Open Kernel Module for x86_64  580.159.04  Release Build …` for the open one).
pub(crate) fn parse_nvidia_version(text: &str) -> Option<String> {
    let line = text.lines().find(|l| l.starts_with("NVRM version:"))?;
    line.split_whitespace()
        .find(|w| {
            w.contains('.')
                && w.split('.')
                    .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
        })
        .map(str::to_string)
}

/// NVIDIA GPUs the driver lists under `<proc>/driver/nvidia/gpus/`, listed (not measured): the
/// fallback when NVML cannot be used.
pub(crate) fn nvidia_from_procfs(proc_path: &Path) -> Vec<Gpu> {
    let base = proc_path.join("driver/nvidia");
    let version = std::fs::read_to_string(base.join("version"))
        .ok()
        .and_then(|t| parse_nvidia_version(&t));
    let Ok(dir) = std::fs::read_dir(base.join("gpus")) else {
        return Vec::new();
    };
    let mut gpus: Vec<Gpu> = dir
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let text = std::fs::read_to_string(e.path().join("information")).ok()?;
            let i = parse_nvidia_information(&text)?;
            let bus = if i.bus_location.is_empty() {
                normalize_bus_id(&e.file_name().to_string_lossy())
            } else {
                i.bus_location.clone()
            };
            Some(Gpu {
                info: GpuInfo {
                    id: if i.uuid.is_empty() {
                        bus.clone()
                    } else {
                        i.uuid.clone()
                    },
                    name: format!("nvidia{}", i.device_minor.unwrap_or(0)),
                    vendor: "NVIDIA".into(),
                    model: i.model,
                    bus_id: Some(bus),
                    driver: "nvidia".into(),
                    driver_version: version.clone(),
                    memory_total: None,
                    source: "procfs",
                },
                reading: GpuReading::default(),
            })
        })
        .collect();
    gpus.sort_by(|a, b| a.info.bus_id.cmp(&b.info.bus_id));
    gpus
}

/// Logs each error once when it starts and once when it clears, keyed by source (GPU, call or
/// file), so a GPU that stays broken does not flood the log every cycle.
#[derive(Debug, Default)]
pub(crate) struct Reporter {
    active: BTreeMap<String, String>,
}

impl Reporter {
    /// Takes this pass's errors; returns the keys that are new (logged now) and those that cleared.
    pub(crate) fn update(&mut self, errors: &[(String, String)]) -> (Vec<String>, Vec<String>) {
        let now: BTreeMap<String, String> = errors.iter().cloned().collect();
        let started: Vec<String> = now
            .keys()
            .filter(|k| !self.active.contains_key(*k))
            .cloned()
            .collect();
        let cleared: Vec<String> = self
            .active
            .keys()
            .filter(|k| !now.contains_key(*k))
            .cloned()
            .collect();
        for k in &started {
            tracing::warn!(source = %k, error = %now[k], "gpu: measuring failed (reported once; retried every cycle)");
        }
        for k in &cleared {
            tracing::info!(source = %k, "gpu: measuring works again");
        }
        self.active = now;
        (started, cleared)
    }
}

/// How often a missing or failed NVML is tried again, and the DRM card list rebuilt.
const RETRY: Duration = Duration::from_secs(30);

enum NvmlState {
    /// Not tried yet (first sample).
    Untried,
    /// No driver library and no NVIDIA driver on this host (or `gpu=off`): looked at again only
    /// if the driver shows up in procfs.
    Off {
        since: Instant,
    },
    /// Library or driver failed; tried again after `RETRY`.
    Waiting {
        since: Instant,
    },
    Loaded(nvml::NvidiaSampler<nvml::Nvml>),
}

/// Whether GPUs are looked for, and where.
#[derive(Debug, Clone)]
pub(crate) struct GpuConfig {
    /// `gpu=auto` (on) or `off`.
    pub(crate) enabled: bool,
    /// A libnvidia-ml to open instead of the default names.
    pub(crate) nvml_library: Option<String>,
    pub(crate) proc_path: PathBuf,
    pub(crate) sys_path: PathBuf,
    pub(crate) rootfs_path: PathBuf,
}

/// All GPU sources, with their caches.
pub(crate) struct GpuSampler {
    proc_path: PathBuf,
    nvml_library: Option<String>,
    nvml: NvmlState,
    /// NVIDIA GPUs listed from procfs while NVML is not loaded, and when: the listing is
    /// refreshed at the NVML retry interval, not every cycle (on a host without the NVIDIA
    /// driver that is two failing opens per cycle saved).
    nvidia_procfs: Option<(Instant, Vec<Gpu>)>,
    drm: drm::DrmSampler,
    pub(crate) reporter: Reporter,
}

impl GpuSampler {
    /// The sampler for `cfg`'s paths.
    pub(crate) fn from_config(cfg: &GpuConfig) -> Self {
        Self::new(
            cfg.proc_path.clone(),
            cfg.sys_path.clone(),
            cfg.rootfs_path.clone(),
            cfg.nvml_library.clone(),
        )
    }

    pub(crate) fn new(
        proc_path: PathBuf,
        sys_path: PathBuf,
        rootfs: PathBuf,
        nvml_library: Option<String>,
    ) -> Self {
        GpuSampler {
            proc_path,
            nvml_library,
            nvml: NvmlState::Untried,
            nvidia_procfs: None,
            drm: drm::DrmSampler::new(sys_path, rootfs),
            reporter: Reporter::default(),
        }
    }

    /// Whether the NVIDIA driver is visible (then a missing NVML is worth retrying and reporting).
    fn nvidia_driver_present(&self) -> bool {
        self.proc_path.join("driver/nvidia/gpus").exists()
    }

    fn try_load(&mut self, first: bool, errors: &mut Vec<(String, String)>) {
        match nvml::Nvml::load(self.nvml_library.as_deref()) {
            Ok(lib) => {
                tracing::info!("gpu: NVML loaded");
                self.nvml = NvmlState::Loaded(nvml::NvidiaSampler::new(lib));
            }
            Err(nvml::LoadError::NotFound(..)) if !self.nvidia_driver_present() => {
                if first {
                    tracing::debug!("gpu: no NVIDIA driver library; NVIDIA GPUs are not measured");
                }
                self.nvml = NvmlState::Off {
                    since: Instant::now(),
                };
            }
            Err(e) => {
                errors.push(("nvml".into(), e.to_string()));
                self.nvml = NvmlState::Waiting {
                    since: Instant::now(),
                };
            }
        }
    }

    /// One pass over every source. Errors are returned keyed by source and also logged once.
    pub(crate) fn sample(&mut self) -> (GpuSample, Vec<(String, String)>) {
        let mut errors = Vec::new();
        let mut gpus = Vec::new();
        // NVIDIA.
        match &self.nvml {
            NvmlState::Untried => self.try_load(true, &mut errors),
            NvmlState::Off { since } => {
                if since.elapsed() >= RETRY && self.nvidia_driver_present() {
                    self.try_load(false, &mut errors);
                }
            }
            NvmlState::Waiting { since } => {
                if since.elapsed() >= RETRY {
                    self.try_load(false, &mut errors);
                } else {
                    // Keep the pending NVML errors active until the retry, so they are not logged
                    // again (nor logged as cleared) in between.
                    errors.extend(
                        self.reporter
                            .active
                            .iter()
                            .filter(|(k, _)| k.starts_with("nvml"))
                            .map(|(k, v)| (k.clone(), v.clone())),
                    );
                }
            }
            NvmlState::Loaded(_) => {}
        }
        if let NvmlState::Loaded(s) = &mut self.nvml {
            let pass = s.sample();
            gpus.extend(pass.gpus);
            errors.extend(pass.errors);
            if pass.driver_gone {
                // Unload (nvmlShutdown + dlclose): a reloaded or upgraded driver needs a fresh library.
                self.nvml = NvmlState::Waiting {
                    since: Instant::now(),
                };
            }
        }
        if matches!(self.nvml, NvmlState::Loaded(_)) {
            self.nvidia_procfs = None;
        } else {
            // Listed without measurements, so capabilities stay right without NVML.
            if self
                .nvidia_procfs
                .as_ref()
                .is_none_or(|(at, _)| at.elapsed() >= RETRY)
            {
                self.nvidia_procfs = Some((Instant::now(), nvidia_from_procfs(&self.proc_path)));
            }
            if let Some((_, listed)) = &self.nvidia_procfs {
                gpus.extend(listed.iter().cloned());
            }
        }
        // AMD and Intel.
        if self.drm.last_scan.is_none_or(|t| t.elapsed() >= RETRY) {
            self.drm.scan();
        }
        let (drm_gpus, drm_errors, vanished) = self.drm.sample();
        gpus.extend(drm_gpus);
        errors.extend(drm_errors);
        if vanished {
            self.drm.last_scan = None;
        }
        self.reporter.update(&errors);
        (GpuSample { gpus }, errors)
    }
}

/// The GPU sampler on its own thread. The node cycle asks for a sample and waits at most
/// `timeout`; a call stuck in the driver costs the node cycle that wait once, after which the
/// cycles go on without GPU data until the thread answers again.
/// One GPU pass: the sample and its errors keyed by source.
pub(crate) type GpuPass = (GpuSample, Vec<(String, String)>);

pub(crate) struct GpuWorker {
    enabled: bool,
    setup: Option<Box<dyn FnMut() -> GpuPass + Send>>,
    tx: Option<mpsc::SyncSender<()>>,
    rx: Option<mpsc::Receiver<GpuPass>>,
    outstanding: bool,
    /// After a pass that found no GPU and no error, the thread is not asked again before this
    /// (a host without GPUs would otherwise cost two thread switches every cycle for nothing).
    quiet_until: Option<Instant>,
    /// How long that is: [`RETRY`], the interval at which the pass itself looks again for a
    /// driver or a card, so a GPU that appears is seen as soon as before.
    quiet: Duration,
}

/// What the node cycle gets from the GPU worker.
pub(crate) struct GpuResult {
    pub(crate) sample: GpuSample,
    /// Current errors (also logged once by the worker).
    pub(crate) errors: Vec<String>,
}

impl GpuWorker {
    pub(crate) fn new(enabled: bool, mut sampler: GpuSampler) -> Self {
        Self::with(enabled, Box::new(move || sampler.sample()))
    }

    /// A worker around any pass function (tests use a slow one).
    pub(crate) fn with(enabled: bool, pass: Box<dyn FnMut() -> GpuPass + Send>) -> Self {
        GpuWorker {
            enabled,
            setup: Some(pass),
            tx: None,
            rx: None,
            outstanding: false,
            quiet_until: None,
            quiet: RETRY,
        }
    }

    fn start(&mut self) {
        let Some(mut sampler) = self.setup.take() else {
            return;
        };
        let (req_tx, req_rx) = mpsc::sync_channel::<()>(1);
        let (res_tx, res_rx) = mpsc::sync_channel(1);
        let spawned = std::thread::Builder::new()
            .name("gpu-sampler".into())
            .spawn(move || {
                while req_rx.recv().is_ok() {
                    if res_tx.send(sampler()).is_err() {
                        return;
                    }
                }
            });
        match spawned {
            Ok(_) => {
                self.tx = Some(req_tx);
                self.rx = Some(res_rx);
            }
            Err(e) => tracing::warn!(error = %e, "gpu: cannot start the sampler thread"),
        }
    }

    /// A sample, or an empty one with an error when the worker did not answer within `timeout`.
    pub(crate) fn sample(&mut self, timeout: Duration) -> GpuResult {
        let empty = |e: Option<String>| GpuResult {
            sample: GpuSample::default(),
            errors: e.into_iter().collect(),
        };
        if !self.enabled {
            return empty(None);
        }
        if self.quiet_until.is_some_and(|t| Instant::now() < t) {
            return empty(None);
        }
        self.quiet_until = None;
        self.start();
        let (Some(tx), Some(rx)) = (&self.tx, &self.rx) else {
            return empty(Some("gpu sampler thread not running".into()));
        };
        if self.outstanding {
            // The previous request is still running (or its late answer is waiting): drop it.
            match rx.try_recv() {
                Ok(_) => self.outstanding = false,
                Err(mpsc::TryRecvError::Empty) => {
                    return empty(Some(
                        "GPU driver call still running since an earlier cycle".into(),
                    ));
                }
                Err(mpsc::TryRecvError::Disconnected) => {
                    return empty(Some("gpu sampler thread ended".into()));
                }
            }
        }
        if tx.send(()).is_err() {
            return empty(Some("gpu sampler thread ended".into()));
        }
        match rx.recv_timeout(timeout) {
            Ok((sample, errors)) => {
                if sample.gpus.is_empty() && errors.is_empty() {
                    self.quiet_until = Some(Instant::now() + self.quiet);
                }
                GpuResult {
                    sample,
                    errors: errors.into_iter().map(|(_, m)| m).collect(),
                }
            }
            Err(_) => {
                self.outstanding = true;
                tracing::warn!(
                    timeout_s = timeout.as_secs_f64(),
                    "gpu: sampling did not finish in time; GPU metrics left out until it does"
                );
                empty(Some(format!(
                    "GPU sampling did not finish within {:.1} s",
                    timeout.as_secs_f64()
                )))
            }
        }
    }
}

#[cfg(test)]
mod tests;
