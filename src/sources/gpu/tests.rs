//! Tests of the GPU sampler on fixtures: real `nvidia-smi`/procfs output of an H100 node, and
//! DRM sysfs trees in the kernel's file formats (AMD RX 6900 XT and Instinct MI210, Intel Arc A770,
//! plus an ASPEED BMC display and an NVIDIA card that must be skipped).

use super::nvml::{Backend, NvidiaSampler, NvmlError, RawReading, map_reading};
use super::*;

use std::cell::RefCell;
use std::path::PathBuf;

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/gpu")
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(fixtures().join(rel)).unwrap()
}

/// The text of `<tag>` inside the first `<parent>` block of nvidia-smi's XML.
fn xml_in(xml: &str, parent: &str, tag: &str) -> String {
    let start = [format!("<{parent}>"), format!("<{parent} ")]
        .iter()
        .filter_map(|t| xml.find(t.as_str()))
        .min()
        .unwrap();
    let block = &xml[start..];
    let open = format!("<{tag}>");
    let from = block.find(&open).unwrap() + open.len();
    let to = from + block[from..].find('<').unwrap();
    block[from..to].trim().to_string()
}

/// One data row of `nvidia-smi --query-gpu=index,uuid,name,pci.bus_id,memory.total,memory.used,
/// utilization.gpu,temperature.gpu,power.draw,driver_version --format=csv[,noheader],nounits`.
fn csv_row(text: &str) -> Vec<String> {
    let line = text
        .lines()
        .find(|l| !l.starts_with("index") && !l.trim().is_empty())
        .unwrap();
    line.split(',').map(|f| f.trim().to_string()).collect()
}

const MIB: u64 = 1 << 20;

#[test]
fn bus_ids_normalize() {
    assert_eq!(normalize_bus_id("00000000:00:06.0"), "0000:00:06.0");
    assert_eq!(normalize_bus_id("0000:0B:00.0"), "0000:0b:00.0");
    assert_eq!(normalize_bus_id("00000001:81:00.0"), "0001:81:00.0");
    assert_eq!(normalize_bus_id("garbage"), "garbage");
}

#[test]
fn proc_information_matches_nvidia_smi() {
    for (info, xml, csv) in [
        (
            "nvidia-h100/proc-driver-nvidia-information.txt",
            "nvidia-h100/nvidia-smi-q.xml",
            "nvidia-h100/nvidia-smi-query.csv",
        ),
        (
            "h100-device/proc-driver-nvidia/information",
            "h100-device/load-nvidia-smi-q.xml",
            "h100-device/load-query-before.csv",
        ),
    ] {
        let i = parse_nvidia_information(&read(info)).unwrap();
        let xml = read(xml);
        let row = csv_row(&read(csv));
        assert_eq!(i.model, xml_in(&xml, "gpu", "product_name"));
        assert_eq!(i.model, row[2]);
        assert_eq!(i.uuid, xml_in(&xml, "gpu", "uuid"));
        assert_eq!(i.uuid, row[1]);
        assert_eq!(
            i.bus_location,
            normalize_bus_id(&xml_in(&xml, "pci", "pci_bus_id"))
        );
        assert_eq!(i.bus_location, normalize_bus_id(&row[3]));
        assert_eq!(
            i.device_minor,
            xml_in(&xml, "gpu", "minor_number").parse().ok()
        );
        assert_eq!(
            i.firmware.as_deref(),
            Some(xml_in(&xml, "gpu", "gsp_firmware_version").as_str())
        );
    }
    assert_eq!(parse_nvidia_information("garbage\n:::\n"), None);
    assert_eq!(parse_nvidia_information(""), None);
}

#[test]
fn driver_version_from_procfs() {
    let open = read("h100-device/proc-driver-nvidia/version");
    let xml = read("h100-device/load-nvidia-smi-q.xml");
    let smi = xml_in(&xml, "nvidia_smi_log", "driver_version");
    assert_eq!(parse_nvidia_version(&open).as_deref(), Some(smi.as_str()));
    let proprietary = "NVRM version: NVIDIA UNIX x86_64 Kernel Module  535.104.05  Sat Aug 19 01:15:15 UTC 2023\nGCC version:  gcc version 12.2.0\n";
    assert_eq!(
        parse_nvidia_version(proprietary).as_deref(),
        Some("535.104.05")
    );
    assert_eq!(parse_nvidia_version("NVRM version: garbage"), None);
    assert_eq!(parse_nvidia_version(""), None);
}

#[test]
fn procfs_lists_nvidia_gpus_without_nvml() {
    let gpus = nvidia_from_procfs(&fixtures().join("proc"));
    assert_eq!(gpus.len(), 1);
    let g = &gpus[0].info;
    let row = csv_row(&read("nvidia-h100/nvidia-smi-query.csv"));
    assert_eq!(g.model, row[2]);
    assert_eq!(g.id, row[1]);
    assert_eq!(
        g.bus_id.as_deref(),
        Some(normalize_bus_id(&row[3]).as_str())
    );
    assert_eq!(g.driver_version.as_deref(), Some(row[9].as_str()));
    assert_eq!(g.source, "procfs");
    assert_eq!(gpus[0].reading, GpuReading::default());
    assert!(nvidia_from_procfs(Path::new("/nonexistent")).is_empty());
}

/// What NVML returns for the GPU of the nvidia-smi fixture, in NVML's units (bytes, %, °C, mW),
/// converted by the agent, equals what nvidia-smi printed (MiB, %, °C, W).
#[test]
fn nvml_units_map_to_what_nvidia_smi_shows() {
    for (xml, csv) in [
        (
            "nvidia-h100/nvidia-smi-q.xml",
            "nvidia-h100/nvidia-smi-query.csv",
        ),
        (
            "h100-device/load-nvidia-smi-q.xml",
            "h100-device/load-query-before.csv",
        ),
    ] {
        let xml = read(xml);
        let row = csv_row(&read(csv));
        let mib = |tag: &str| -> u64 {
            xml_in(&xml, "fb_memory_usage", tag)
                .trim_end_matches(" MiB")
                .parse()
                .unwrap()
        };
        let raw = RawReading {
            memory: Some((mib("total") * MIB, mib("used") * MIB)),
            utilization_gpu: Some(
                xml_in(&xml, "utilization", "gpu_util")
                    .trim_end_matches(" %")
                    .parse()
                    .unwrap(),
            ),
            temperature: Some(
                xml_in(&xml, "temperature", "gpu_temp")
                    .trim_end_matches(" C")
                    .parse()
                    .unwrap(),
            ),
            power_mw: Some(
                (xml_in(&xml, "gpu_power_readings", "average_power_draw")
                    .trim_end_matches(" W")
                    .parse::<f64>()
                    .unwrap()
                    * 1000.0)
                    .round() as u32,
            ),
        };
        let r = map_reading(raw);
        assert_eq!(
            r.memory_total.unwrap() / MIB,
            row[4].parse::<u64>().unwrap()
        );
        assert_eq!(r.memory_used.unwrap() / MIB, row[5].parse::<u64>().unwrap());
        assert_eq!(
            r.utilization.unwrap() * 100.0,
            row[6].parse::<f64>().unwrap()
        );
        // The CSV and the XML were taken a moment apart (under load on the device run):
        // temperature within 2 °C, power within 5 %.
        assert!((r.temperature_c.unwrap() - row[7].parse::<f64>().unwrap()).abs() <= 2.0);
        let smi_w = row[8].parse::<f64>().unwrap();
        assert!(
            (r.power_w.unwrap() - smi_w).abs() <= smi_w * 0.05,
            "{r:?} vs {smi_w}"
        );
    }
    let none = map_reading(RawReading::default());
    assert_eq!(none, GpuReading::default());
    assert_eq!(
        map_reading(RawReading {
            utilization_gpu: Some(250),
            ..Default::default()
        })
        .utilization,
        Some(1.0)
    );
}

/// A scripted NVML: GPUs can be lost and come back, the driver can go away.
#[derive(Default)]
struct Script {
    /// (uuid, present)
    gpus: Vec<(String, bool)>,
    driver_gone: bool,
}

struct FakeNvml(RefCell<Script>);

fn err(call: &'static str, code: i32) -> NvmlError {
    NvmlError {
        call,
        code,
        message: "scripted".into(),
    }
}

impl Backend for FakeNvml {
    fn device_count(&self) -> Result<u32, NvmlError> {
        let s = self.0.borrow();
        if s.driver_gone {
            return Err(err("nvmlDeviceGetCount_v2", nvml::ERROR_DRIVER_NOT_LOADED));
        }
        Ok(s.gpus.len() as u32)
    }
    fn handle(&self, index: u32) -> Result<usize, NvmlError> {
        let s = self.0.borrow();
        match s.gpus.get(index as usize) {
            Some((_, true)) => Ok(index as usize + 1),
            _ => Err(err(
                "nvmlDeviceGetHandleByIndex_v2",
                nvml::ERROR_GPU_IS_LOST,
            )),
        }
    }
    fn identity(
        &self,
        handle: usize,
    ) -> Result<(String, String, Option<String>, Option<u64>), NvmlError> {
        let s = self.0.borrow();
        Ok((
            "NVIDIA H100 80GB HBM3".into(),
            s.gpus[handle - 1].0.clone(),
            Some(format!("00000000:0{}:00.0", handle)),
            Some(81559 * MIB),
        ))
    }
    fn driver_version(&self) -> Option<String> {
        Some("580.159.04".into())
    }
    fn reading(&self, handle: usize) -> (GpuReading, Vec<NvmlError>) {
        let s = self.0.borrow();
        if !s.gpus[handle - 1].1 {
            return (
                GpuReading::default(),
                vec![err("nvmlDeviceGetMemoryInfo_v2", nvml::ERROR_GPU_IS_LOST)],
            );
        }
        (
            map_reading(RawReading {
                memory: Some((81559 * MIB, 21007 * MIB)),
                utilization_gpu: Some(100),
                temperature: Some(49),
                power_mw: Some(351_330),
            }),
            Vec::new(),
        )
    }
}

#[test]
fn lost_gpu_is_reported_once_and_measured_again_when_back() {
    let fake = FakeNvml(RefCell::new(Script {
        gpus: vec![("GPU-a".into(), true), ("GPU-b".into(), true)],
        driver_gone: false,
    }));
    let mut s = NvidiaSampler::new(fake);
    let mut rep = Reporter::default();
    let pass = s.sample();
    assert_eq!(pass.gpus.len(), 2);
    assert!(pass.errors.is_empty());
    let g = &pass.gpus[1];
    assert_eq!(g.info.id, "GPU-b");
    assert_eq!(g.info.name, "nvidia1");
    assert_eq!(g.info.bus_id.as_deref(), Some("0000:02:00.0"));
    assert_eq!(g.info.driver_version.as_deref(), Some("580.159.04"));
    assert_eq!(g.reading.power_w, Some(351.33));

    // GPU-b falls off the bus: it is left out, its error logged once, GPU-a still measured.
    s.backend.0.borrow_mut().gpus[1].1 = false;
    let pass = s.sample();
    assert_eq!(
        pass.gpus
            .iter()
            .map(|g| g.info.id.as_str())
            .collect::<Vec<_>>(),
        ["GPU-a"]
    );
    let (started, _) = rep.update(&pass.errors);
    assert_eq!(started.len(), 1);
    assert_eq!(started, ["nvml gpu1"]);
    // Next cycles: re-scan, GPU-b still gone; the error is not new any more.
    for _ in 0..3 {
        let pass = s.sample();
        assert_eq!(pass.gpus.len(), 1);
        assert_eq!(pass.errors.len(), 1, "{:?}", pass.errors);
        let (started, cleared) = rep.update(&pass.errors);
        assert!(cleared.is_empty() && started.is_empty());
    }

    // Back: measured again, error cleared.
    s.backend.0.borrow_mut().gpus[1].1 = true;
    let pass = s.sample();
    assert_eq!(pass.gpus.len(), 2);
    assert!(pass.errors.is_empty());
    let (_, cleared) = rep.update(&pass.errors);
    assert_eq!(cleared.len(), 1);

    // The driver goes away: the caller is told to unload.
    s.backend.0.borrow_mut().driver_gone = true;
    let pass = s.sample();
    assert!(pass.driver_gone && pass.gpus.is_empty());
}

#[test]
fn reporter_logs_start_and_clear_once() {
    let mut r = Reporter::default();
    let e = vec![("nvml".to_string(), "boom".to_string())];
    assert_eq!(r.update(&e).0, ["nvml"]);
    assert!(r.update(&e).0.is_empty());
    assert!(r.update(&e).1.is_empty());
    assert_eq!(r.update(&[]).1, ["nvml"]);
    assert!(r.update(&[]).1.is_empty());
}

/// A copy of the sysfs fixture that tests may change.
fn sysfs_copy() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    fn copy(from: &Path, to: &Path) {
        std::fs::create_dir_all(to).unwrap();
        for e in std::fs::read_dir(from).unwrap() {
            let e = e.unwrap();
            let target = to.join(e.file_name());
            if e.file_type().unwrap().is_dir() {
                copy(&e.path(), &target);
            } else {
                std::fs::copy(e.path(), target).unwrap();
            }
        }
    }
    copy(&fixtures().join("sysfs"), dir.path());
    dir
}

fn fixture_num(root: &Path, rel: &str) -> u64 {
    drm::parse_num(&std::fs::read_to_string(root.join(rel)).unwrap()).unwrap()
}

#[test]
fn drm_cards_amd_and_intel_from_sysfs() {
    let sys = sysfs_copy();
    let root = sys.path();
    let mut d = drm::DrmSampler::new(root.to_path_buf(), fixtures().join("rootfs"));
    d.scan();
    let t0 = Instant::now();
    let (gpus, errors, vanished) = d.sample_at(t0);
    assert!(errors.is_empty(), "{errors:?}");
    assert!(!vanished);
    // card2 (ASPEED), card3 (NVIDIA: NVML's), connectors and render nodes are skipped.
    let names: Vec<&str> = gpus.iter().map(|g| g.info.name.as_str()).collect();
    assert_eq!(names, ["card0", "card1", "card4"]);

    let rx = &gpus[0];
    let dev = "class/drm/card0/device";
    assert_eq!(rx.info.vendor, "AMD");
    assert_eq!(rx.info.model, "Navi 21 [Radeon RX 6800/6800 XT / 6900 XT]");
    assert_eq!(rx.info.id, "0000:0b:00.0");
    assert_eq!(rx.info.driver, "amdgpu");
    assert_eq!(rx.info.source, "sysfs");
    let r = &rx.reading;
    assert_eq!(
        r.utilization,
        Some(fixture_num(root, &format!("{dev}/gpu_busy_percent")) as f64 / 100.0)
    );
    assert_eq!(
        r.memory_total,
        Some(fixture_num(root, &format!("{dev}/mem_info_vram_total")))
    );
    assert_eq!(
        r.memory_used,
        Some(fixture_num(root, &format!("{dev}/mem_info_vram_used")))
    );
    assert_eq!(rx.info.memory_total, r.memory_total);
    assert_eq!(
        r.temperature_c,
        Some(fixture_num(root, &format!("{dev}/hwmon/hwmon2/temp1_input")) as f64 / 1000.0)
    );
    assert_eq!(
        r.power_w,
        Some(fixture_num(root, &format!("{dev}/hwmon/hwmon2/power1_average")) as f64 / 1e6)
    );

    let mi = &gpus[2];
    assert_eq!(mi.info.model, "AMD Instinct MI210");
    assert_eq!(mi.reading.utilization, Some(1.0));
    assert_eq!(mi.reading.power_w, Some(283.0));
    assert_eq!(mi.reading.temperature_c, Some(61.0));

    // Intel: no busy %, no VRAM files, power from the energy counter between two samples.
    let arc = &gpus[1];
    assert_eq!(arc.info.vendor, "Intel");
    assert_eq!(arc.info.model, "DG2 [Arc A770]");
    assert_eq!(arc.info.driver, "i915");
    assert_eq!(arc.reading, GpuReading::default());
    let energy = root.join("class/drm/card1/device/hwmon/hwmon3/energy1_input");
    let e0 = fixture_num(root, "class/drm/card1/device/hwmon/hwmon3/energy1_input");
    std::fs::write(&energy, format!("{}\n", e0 + 90_000_000)).unwrap(); // +90 J
    let (gpus, _, _) = d.sample_at(t0 + Duration::from_secs(2));
    let p = gpus[1].reading.power_w.unwrap();
    assert!((p - 45.0).abs() < 1e-9, "{p}");
    // A rescan keeps known cards as they are, energy baseline included.
    d.scan();
    std::fs::write(&energy, format!("{}\n", e0 + 150_000_000)).unwrap(); // +60 J in 2 s
    let (gpus, _, _) = d.sample_at(t0 + Duration::from_secs(4));
    let p = gpus[1].reading.power_w.unwrap();
    assert!((p - 30.0).abs() < 1e-9, "{p}");
}

#[test]
fn drm_card_that_vanishes_comes_back() {
    let sys = sysfs_copy();
    let root = sys.path();
    let mut d = drm::DrmSampler::new(root.to_path_buf(), fixtures().join("rootfs"));
    d.scan();
    assert_eq!(d.sample().0.len(), 3);
    let card = root.join("class/drm/card0");
    let parked = root.join("parked-card0");
    std::fs::rename(&card, &parked).unwrap();
    d.scan();
    let (gpus, errors, _) = d.sample();
    assert_eq!(gpus.len(), 2);
    assert!(errors.is_empty());
    std::fs::rename(&parked, &card).unwrap();
    d.scan();
    let (gpus, _, _) = d.sample();
    assert_eq!(gpus.len(), 3);
    assert_eq!(gpus[0].reading.utilization, Some(0.37));
    // Garbage in a value file: reported, the rest of the card still measured.
    std::fs::write(card.join("device/gpu_busy_percent"), "garbage").unwrap();
    let (gpus, errors, _) = d.sample();
    assert_eq!(errors.len(), 1);
    assert!(errors[0].1.contains("gpu_busy_percent"));
    assert_eq!(gpus[0].reading.utilization, None);
    assert!(gpus[0].reading.temperature_c.is_some());
}

#[test]
fn sampler_combines_sources_and_reports_missing_nvml_once() {
    // NVIDIA driver in procfs but no usable NVML: listed (capabilities), error reported.
    let mut s = GpuSampler::new(
        fixtures().join("proc"),
        fixtures().join("sysfs"),
        fixtures().join("rootfs"),
        Some("/nonexistent/libnvidia-ml.so.1".into()),
    );
    let (sample, errors) = s.sample();
    let (count, models) = sample.capabilities();
    assert_eq!(count, 4);
    assert_eq!(
        models,
        [
            "NVIDIA H100 80GB HBM3",
            "Navi 21 [Radeon RX 6800/6800 XT / 6900 XT]",
            "DG2 [Arc A770]",
            "AMD Instinct MI210"
        ]
    );
    assert_eq!(errors.len(), 1);
    assert!(errors[0].1.contains("/nonexistent/libnvidia-ml.so.1"));
    // Until the retry the error stays active (not logged again, not "cleared").
    let (_, errors) = s.sample();
    assert_eq!(errors.len(), 1);
    assert!(s.reporter.update(&errors).0.is_empty());

    // No NVIDIA driver, no library: not an error.
    let mut s = GpuSampler::new(
        PathBuf::from("/nonexistent"),
        fixtures().join("sysfs"),
        fixtures().join("rootfs"),
        Some("/nonexistent/libnvidia-ml.so.1".into()),
    );
    let (sample, errors) = s.sample();
    assert_eq!(sample.gpus.len(), 3);
    assert!(errors.is_empty());
}

#[test]
fn worker_does_not_let_a_stuck_driver_hold_the_cycle() {
    let calls = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
    let c = calls.clone();
    let mut w = GpuWorker::with(
        true,
        Box::new(move || {
            // The first pass hangs (a GPU stuck in the driver) for a while.
            if c.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 0 {
                std::thread::sleep(Duration::from_millis(1500));
            }
            (GpuSample::default(), Vec::new())
        }),
    );
    let r = w.sample(Duration::from_millis(100));
    assert_eq!(r.errors.len(), 1);
    assert!(r.errors[0].contains("did not finish"));
    // Still stuck: the next cycle does not wait and does not queue another pass.
    let started = Instant::now();
    let r = w.sample(Duration::from_secs(30));
    assert!(r.errors[0].contains("still running"));
    assert!(started.elapsed() < Duration::from_secs(10));
    // Once it returns, sampling goes on normally.
    std::thread::sleep(Duration::from_millis(2000));
    let r = w.sample(Duration::from_secs(30));
    assert!(r.errors.is_empty(), "{:?}", r.errors);
    assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 2);

    let mut off = GpuWorker::with(false, Box::new(|| panic!("not called when off")));
    let r = off.sample(Duration::from_secs(1));
    assert!(r.errors.is_empty() && r.sample.gpus.is_empty());
}

#[test]
fn a_host_without_gpus_is_asked_again_only_at_the_retry_interval() {
    let calls = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let found = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (c, f) = (calls.clone(), found.clone());
    let mut w = GpuWorker::with(
        true,
        Box::new(move || {
            c.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let mut s = GpuSample::default();
            if f.load(std::sync::atomic::Ordering::SeqCst) {
                s.gpus.push(Gpu {
                    info: GpuInfo {
                        id: "0000:00:06.0".into(),
                        name: "card0".into(),
                        vendor: "amd".into(),
                        model: "test".into(),
                        bus_id: None,
                        driver: "amdgpu".into(),
                        driver_version: None,
                        memory_total: None,
                        source: "sysfs",
                    },
                    reading: GpuReading::default(),
                });
            }
            (s, Vec::new())
        }),
    );
    w.quiet = Duration::from_millis(300);
    let n = |c: &std::sync::atomic::AtomicUsize| c.load(std::sync::atomic::Ordering::SeqCst);
    assert!(w.sample(Duration::from_secs(5)).sample.gpus.is_empty());
    assert_eq!(n(&calls), 1);
    // Nothing found: the next cycles do not ask the thread.
    for _ in 0..5 {
        assert!(w.sample(Duration::from_secs(5)).sample.gpus.is_empty());
    }
    assert_eq!(n(&calls), 1);
    // A card appears: seen once the quiet time is over, then asked every cycle.
    found.store(true, std::sync::atomic::Ordering::SeqCst);
    std::thread::sleep(Duration::from_millis(400));
    assert_eq!(w.sample(Duration::from_secs(5)).sample.gpus.len(), 1);
    assert_eq!(w.sample(Duration::from_secs(5)).sample.gpus.len(), 1);
    assert_eq!(n(&calls), 3);
    // An error is no quiet pass either.
    let mut failing = GpuWorker::with(
        true,
        Box::new(|| (GpuSample::default(), vec![("nvml".into(), "broken".into())])),
    );
    assert_eq!(failing.sample(Duration::from_secs(5)).errors.len(), 1);
    assert_eq!(failing.sample(Duration::from_secs(5)).errors.len(), 1);
}

#[test]
fn nvidia_procfs_is_listed_at_the_retry_interval_not_every_cycle() {
    // A host whose NVIDIA proc files appear after the first pass: not looked at again until the
    // retry interval (strace on a host without the driver showed two failing opens per cycle).
    let proc = tempfile::tempdir().unwrap();
    let mut s = GpuSampler::new(
        proc.path().to_path_buf(),
        PathBuf::from("/nonexistent"),
        PathBuf::from("/nonexistent"),
        Some("/nonexistent/libnvidia-ml.so.1".into()),
    );
    assert!(s.sample().0.gpus.is_empty());
    let src = fixtures().join("proc/driver");
    let copy = |from: &Path, to: &Path| {
        for e in walk(from) {
            let rel = e.strip_prefix(from).unwrap();
            std::fs::create_dir_all(to.join(rel).parent().unwrap()).unwrap();
            std::fs::copy(&e, to.join(rel)).unwrap();
        }
    };
    copy(&src, &proc.path().join("driver"));
    assert!(nvidia_from_procfs(proc.path()).len() == 1);
    assert!(
        s.sample().0.gpus.is_empty(),
        "listed again before the retry interval"
    );
    s.nvidia_procfs = None;
    assert_eq!(s.sample().0.gpus.len(), 1);
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = vec![];
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}
