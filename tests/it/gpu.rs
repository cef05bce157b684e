//! The real agent binary and GPUs: on a host without GPUs (CI) it starts, reports
//! `node.gpu.count=0` and no GPU metric; pointed at a sysfs tree of AMD/Intel cards it reports
//! them with the values the kernel files hold — through `node-agent check --json` and the
//! console exporter (`OTEL_METRICS_EXPORTER=console`).

use crate::harness::{Proc, agent_command, repo_root};
use serde_json::Value;
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::mpsc;
use std::time::Duration;

/// GPUs this host has, counted without the agent: NVIDIA GPUs the driver lists under
/// /proc/driver/nvidia/gpus, and AMD/Intel display controllers under /sys/class/drm.
fn host_gpu_count() -> usize {
    let nvidia = std::fs::read_dir("/proc/driver/nvidia/gpus")
        .map(|d| d.count())
        .unwrap_or(0);
    let drm = std::fs::read_dir("/sys/class/drm")
        .map(|d| {
            d.filter_map(|e| e.ok())
                .filter(|e| {
                    let n = e.file_name().to_string_lossy().into_owned();
                    n.starts_with("card")
                        && n[4..].chars().all(|c| c.is_ascii_digit())
                        && n.len() > 4
                })
                .filter(|e| {
                    let read = |f: &str| {
                        std::fs::read_to_string(e.path().join("device").join(f)).unwrap_or_default()
                    };
                    let vendor = read("vendor");
                    (vendor.trim() == "0x1002" || vendor.trim() == "0x8086")
                        && read("class").trim().starts_with("0x03")
                })
                .count()
        })
        .unwrap_or(0);
    nvidia + drm
}

fn fixtures() -> PathBuf {
    repo_root().join("tests/fixtures/gpu")
}

fn check_json(envs: &[(&str, &str)]) -> Value {
    let out = agent_command()
        .args(["check", "--json"])
        .env("OTEL_METRICS_EXPORTER", "console")
        .envs(envs.iter().copied())
        .stderr(Stdio::null())
        .output()
        .expect("run node-agent check");
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "check --json is not JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

/// Starts `node-agent run` with the console exporter and returns its first sample (one OTLP/JSON
/// document), then stops it with SIGTERM.
fn first_console_sample(envs: &[(&str, &str)]) -> Value {
    let mut cmd = agent_command();
    cmd.arg("run")
        .env("OTEL_METRICS_EXPORTER", "console")
        .env("NODE_AGENT_CONSOLE_FORMAT", "otlp-json")
        .env("AGENT_SAMPLE_INTERVAL_MIN_SEC", "1")
        .env("AGENT_SAMPLE_INTERVAL_MAX_SEC", "1")
        .env("LOG_LEVEL", "warn")
        .envs(envs.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    let mut agent = Proc::spawn("node-agent", &mut cmd);
    let stdout = agent.child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    let line = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("the agent printed no sample within 60 s");
    agent.signal(libc::SIGTERM);
    let status = agent
        .wait_timeout(Duration::from_secs(30))
        .expect("agent did not exit on SIGTERM");
    assert!(status.success(), "agent exited with {status}");
    serde_json::from_str(&line).expect("console line is OTLP/JSON")
}

fn attr_value(v: &Value) -> String {
    let v = &v["value"];
    v.get("stringValue")
        .and_then(Value::as_str)
        .map(str::to_string)
        .or_else(|| {
            v.get("intValue")
                .map(|i| i.to_string().trim_matches('"').to_string())
        })
        .unwrap_or_default()
}

fn resource(sample: &Value) -> BTreeMap<String, String> {
    sample["resourceMetrics"][0]["resource"]["attributes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| (a["key"].as_str().unwrap().to_string(), attr_value(a)))
        .collect()
}

/// (metric name, value, attributes) of every point.
fn points(sample: &Value) -> Vec<(String, f64, BTreeMap<String, String>)> {
    let mut out = Vec::new();
    for m in sample["resourceMetrics"][0]["scopeMetrics"][0]["metrics"]
        .as_array()
        .unwrap()
    {
        let data = m.get("gauge").or_else(|| m.get("sum")).unwrap();
        for p in data["dataPoints"].as_array().unwrap() {
            let v = p
                .get("asDouble")
                .and_then(Value::as_f64)
                .or_else(|| {
                    p.get("asInt")
                        .and_then(|i| i.as_str().map(|s| s.parse().unwrap()).or(i.as_f64()))
                })
                .unwrap();
            // Proto3 JSON omits an empty list: a point without attributes has no key.
            let attrs = p["attributes"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|a| (a["key"].as_str().unwrap().to_string(), attr_value(a)))
                .collect();
            out.push((m["name"].as_str().unwrap().to_string(), v, attrs));
        }
    }
    out
}

#[test]
fn without_gpus_the_agent_reports_zero_and_no_gpu_metric() {
    let expected = host_gpu_count();
    let report = check_json(&[]);
    assert_eq!(report["resource"]["node.gpu.count"], expected.to_string());
    assert_eq!(report["gpus"].as_array().unwrap().len(), expected);
    let gpu_source = report["sources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "gpu")
        .expect("a gpu source in check");
    if expected == 0 {
        assert_eq!(gpu_source["ok"], true, "{gpu_source}");
        assert_eq!(gpu_source["detail"], "no GPU found");
        assert!(report["resource"].get("node.gpu.models").is_none());
    }

    let sample = first_console_sample(&[]);
    assert_eq!(resource(&sample)["node.gpu.count"], expected.to_string());
    let pts = points(&sample);
    assert!(
        pts.iter().any(|(n, _, _)| n == "system.memory.usage"),
        "node metrics are there"
    );
    if expected == 0 {
        let gpu: Vec<_> = pts
            .iter()
            .filter(|(n, _, _)| n.starts_with("hw."))
            .collect();
        assert!(
            gpu.is_empty(),
            "GPU metrics on a host without GPUs: {gpu:?}"
        );
    }
    // The GPU sampler ran without errors.
    let errors = pts.iter().find(|(n, _, a)| {
        n == "node_agent.sampler.errors"
            && a.get("node_agent.sampler").map(String::as_str) == Some("gpu")
    });
    if expected == 0 {
        assert_eq!(errors.map(|e| e.1), Some(0.0));
    }

    // gpu=off: no GPU source at all.
    let off = check_json(&[("NODE_AGENT_GPU", "off")]);
    assert!(
        off["sources"]
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s["name"] != "gpu")
    );
    assert_eq!(off["resource"]["node.gpu.count"], "0");
}

fn fixture_num(rel: &str) -> f64 {
    let text = std::fs::read_to_string(fixtures().join("sysfs").join(rel)).unwrap();
    text.trim().parse().unwrap()
}

#[test]
fn amd_and_intel_cards_from_sysfs_reach_check_and_otlp() {
    let sys = fixtures().join("sysfs");
    let rootfs = fixtures().join("rootfs");
    // A regular file that is not a library: NVML fails to load, as on a host without NVIDIA.
    let dir = tempfile::tempdir().unwrap();
    let not_nvml = dir.path().join("libnvidia-ml.so.1");
    std::fs::write(&not_nvml, b"not a shared library").unwrap();
    let envs = [
        ("NODE_AGENT_SYS_PATH", sys.to_str().unwrap()),
        ("NODE_AGENT_ROOTFS_PATH", rootfs.to_str().unwrap()),
        // Only the fixture's cards: no NVML even on a host that has one, no host procfs NVIDIA.
        ("NODE_AGENT_NVML_LIBRARY", not_nvml.to_str().unwrap()),
    ];
    let nvidia_on_host = Path::new("/proc/driver/nvidia/gpus").exists();
    let report = check_json(&envs);
    let gpus: Vec<&Value> = report["gpus"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|g| g["source"] == "sysfs")
        .collect();
    let ids: Vec<&str> = gpus.iter().map(|g| g["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["0000:0b:00.0", "0000:03:00.0", "0000:c3:00.0"]);
    if !nvidia_on_host {
        assert_eq!(report["resource"]["node.gpu.count"], "3");
        assert_eq!(
            report["resource"]["node.gpu.models"],
            "Navi 21 [Radeon RX 6800/6800 XT / 6900 XT],DG2 [Arc A770],AMD Instinct MI210"
        );
    }
    let rx = gpus[0];
    let dev = "class/drm/card0/device";
    assert_eq!(rx["vendor"], "AMD");
    assert_eq!(
        rx["memory_total"].as_f64().unwrap(),
        fixture_num(&format!("{dev}/mem_info_vram_total"))
    );
    assert_eq!(
        rx["reading"]["utilization"].as_f64().unwrap(),
        fixture_num(&format!("{dev}/gpu_busy_percent")) / 100.0
    );

    let sample = first_console_sample(&envs);
    let pts = points(&sample);
    let one = |name: &str, id: &str| -> (f64, BTreeMap<String, String>) {
        let p = pts
            .iter()
            .find(|(n, _, a)| n == name && a["hw.id"] == id)
            .unwrap_or_else(|| panic!("no {name} for {id}"));
        (p.1, p.2.clone())
    };
    let (util, attrs) = one("hw.gpu.utilization", "0000:0b:00.0");
    assert_eq!(
        util,
        fixture_num(&format!("{dev}/gpu_busy_percent")) / 100.0
    );
    assert_eq!(attrs["hw.gpu.task"], "general");
    assert_eq!(attrs["hw.name"], "card0");
    assert_eq!(attrs["hw.vendor"], "AMD");
    assert_eq!(
        attrs["hw.model"],
        "Navi 21 [Radeon RX 6800/6800 XT / 6900 XT]"
    );
    assert_eq!(
        one("hw.gpu.memory.limit", "0000:0b:00.0").0,
        fixture_num(&format!("{dev}/mem_info_vram_total"))
    );
    assert_eq!(
        one("hw.gpu.memory.usage", "0000:0b:00.0").0,
        fixture_num(&format!("{dev}/mem_info_vram_used"))
    );
    let (temp, attrs) = one("hw.temperature", "0000:0b:00.0");
    assert_eq!(
        temp,
        fixture_num(&format!("{dev}/hwmon/hwmon2/temp1_input")) / 1000.0
    );
    assert_eq!(attrs["hw.type"], "gpu");
    assert_eq!(
        one("hw.power", "0000:c3:00.0").0,
        fixture_num("class/drm/card4/device/hwmon/hwmon5/power1_input") / 1e6
    );
    // The Intel card has no busy file: no utilization point for it rather than a made-up zero.
    assert!(
        !pts.iter()
            .any(|(n, _, a)| n == "hw.gpu.utilization" && a["hw.id"] == "0000:03:00.0")
    );
    if !nvidia_on_host {
        assert_eq!(resource(&sample)["node.gpu.count"], "3");
    }
}
