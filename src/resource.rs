//! Identity and capabilities of the node: the OpenTelemetry Resource sent with every batch.
//!
//! Identity must be stable across restarts, because `service.instance.id` becomes Prometheus'
//! `instance` label and the orchestrator's node key: it is `NODE_ID` when set, else `host.id`
//! (the machine-id). Capabilities (CPU count, memory, disk, GPUs, cgroup setup, container runtime,
//! Wings version) are what an orchestrator needs to place servers; they are refreshed when the
//! samplers learn something new, and `OTEL_RESOURCE_ATTRIBUTES` always has the last word.

use crate::config::Config;
use crate::otlp::{kv, kv_int};
use opentelemetry_proto::tonic::common::v1::KeyValue;
use std::path::Path;

/// What the node offers, gathered by the samplers.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct Capabilities {
    pub cpu_count: u32,
    pub memory_total: u64,
    pub disk_total: u64,
    pub gpu_count: u32,
    pub gpu_models: Vec<String>,
    pub cgroup_version: Option<String>,
    pub cgroup_driver: Option<String>,
    pub container_runtime: Option<(String, String)>,
    pub wings_version: Option<String>,
}

/// Facts about the host that do not change while the agent runs.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct HostInfo {
    pub host_id: String,
    pub host_name: String,
    pub arch: String,
    pub os_description: String,
    pub os_name: String,
    pub os_version: String,
    pub kernel: String,
    pub cpu_model: String,
    pub cpu_vendor: String,
}

/// semconv `host.arch` values for Rust's target architecture names.
pub fn semconv_arch(rust_arch: &str) -> &str {
    match rust_arch {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "arm" => "arm32",
        "x86" => "x86",
        "powerpc64" => "ppc64",
        "powerpc" => "ppc32",
        "s390x" => "s390x",
        other => other,
    }
}

fn read_trimmed(path: &Path) -> Option<String> {
    std::fs::read_to_string(path)
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
}

/// `KEY=value` / `KEY="value"` lines of os-release.
pub fn os_release_field(text: &str, key: &str) -> Option<String> {
    text.lines().find_map(|l| {
        let (k, v) = l.split_once('=')?;
        (k.trim() == key).then(|| v.trim().trim_matches('"').trim_matches('\'').to_string())
    })
}

/// First value of `key` in /proc/cpuinfo.
pub fn cpuinfo_field(text: &str, key: &str) -> Option<String> {
    text.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        (k.trim() == key).then(|| v.trim().to_string())
    })
}

impl HostInfo {
    pub fn detect(cfg: &Config) -> Self {
        let root = &cfg.rootfs_path;
        let host_id = read_trimmed(&root.join("etc/machine-id"))
            .or_else(|| read_trimmed(&root.join("var/lib/dbus/machine-id")))
            .unwrap_or_default();
        let host_name = read_trimmed(&cfg.proc_path.join("sys/kernel/hostname"))
            .or_else(|| read_trimmed(&root.join("etc/hostname")))
            .unwrap_or_default();
        let os_release = std::fs::read_to_string(root.join("etc/os-release"))
            .or_else(|_| std::fs::read_to_string(root.join("usr/lib/os-release")))
            .unwrap_or_default();
        let kernel = read_trimmed(&cfg.proc_path.join("sys/kernel/osrelease")).unwrap_or_default();
        let cpuinfo = std::fs::read_to_string(cfg.proc_path.join("cpuinfo")).unwrap_or_default();
        let pretty = os_release_field(&os_release, "PRETTY_NAME").unwrap_or_else(|| "Linux".into());
        HostInfo {
            host_id,
            host_name,
            arch: semconv_arch(std::env::consts::ARCH).to_string(),
            os_description: if kernel.is_empty() {
                pretty
            } else {
                format!("{pretty} (Linux {kernel})")
            },
            os_name: os_release_field(&os_release, "NAME").unwrap_or_default(),
            os_version: os_release_field(&os_release, "VERSION_ID").unwrap_or_default(),
            kernel,
            cpu_model: cpuinfo_field(&cpuinfo, "model name")
                .or_else(|| cpuinfo_field(&cpuinfo, "Model"))
                .unwrap_or_default(),
            cpu_vendor: cpuinfo_field(&cpuinfo, "vendor_id")
                .or_else(|| cpuinfo_field(&cpuinfo, "CPU implementer"))
                .unwrap_or_default(),
        }
    }

    /// `service.instance.id`: NODE_ID, else host.id, else the host name.
    pub fn instance_id(&self, cfg: &Config) -> String {
        cfg.node_id
            .clone()
            .or_else(|| (!self.host_id.is_empty()).then(|| self.host_id.clone()))
            .unwrap_or_else(|| self.host_name.clone())
    }
}

/// Builds the resource attributes. User attributes (OTEL_RESOURCE_ATTRIBUTES) replace detected
/// ones with the same key; OTEL_SERVICE_NAME beats both for `service.name`.
pub fn build(cfg: &Config, host: &HostInfo, caps: &Capabilities) -> Vec<KeyValue> {
    let mut attrs: Vec<KeyValue> = Vec::with_capacity(32);
    let mut push = |k: &str, v: String| {
        if !v.is_empty() {
            attrs.push(kv(k, v));
        }
    };
    push("service.name", "node-agent".into());
    push("service.version", env!("CARGO_PKG_VERSION").into());
    push("service.instance.id", host.instance_id(cfg));
    push("host.id", host.host_id.clone());
    push("host.name", host.host_name.clone());
    push("host.arch", host.arch.clone());
    push("host.ip", cfg.node_ip.clone().unwrap_or_default());
    push("os.type", "linux".into());
    push("os.description", host.os_description.clone());
    push("os.name", host.os_name.clone());
    push("os.version", host.os_version.clone());
    push("host.cpu.model.name", host.cpu_model.clone());
    push("host.cpu.vendor.id", host.cpu_vendor.clone());
    push("node.gpu.models", caps.gpu_models.join(","));
    push(
        "node.cgroup.version",
        caps.cgroup_version.clone().unwrap_or_default(),
    );
    push(
        "node.cgroup.driver",
        caps.cgroup_driver.clone().unwrap_or_default(),
    );
    if let Some((name, version)) = &caps.container_runtime {
        push("container.runtime.name", name.clone());
        push("container.runtime.version", version.clone());
    }
    push(
        "pterodactyl.wings.version",
        caps.wings_version.clone().unwrap_or_default(),
    );
    attrs.push(kv_int("node.cpu.count", caps.cpu_count as i64));
    attrs.push(kv_int(
        "node.memory.total",
        caps.memory_total.min(i64::MAX as u64) as i64,
    ));
    attrs.push(kv_int(
        "node.disk.total",
        caps.disk_total.min(i64::MAX as u64) as i64,
    ));
    attrs.push(kv_int("node.gpu.count", caps.gpu_count as i64));
    for (k, v) in &cfg.resource_attributes {
        set(&mut attrs, k, kv(k, v.clone()));
    }
    if let Some(name) = &cfg.service_name {
        set(&mut attrs, "service.name", kv("service.name", name.clone()));
    }
    attrs
}

fn set(attrs: &mut Vec<KeyValue>, key: &str, value: KeyValue) {
    match attrs.iter_mut().find(|a| a.key == key) {
        Some(slot) => *slot = value,
        None => attrs.push(value),
    }
}

/// cgroup layout from the host's mountinfo: `2` (unified at /sys/fs/cgroup), `hybrid` (v1
/// controllers plus a v2 `unified` mount) or `1`.
pub fn detect_cgroup_version(mountinfo: &str) -> Option<String> {
    let (mut v1, mut v2_root, mut v2_any) = (false, false, false);
    for line in mountinfo.lines() {
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        let mountpoint = left.split(' ').nth(4).unwrap_or("");
        let fs = right.split(' ').next().unwrap_or("");
        if !mountpoint.starts_with("/sys/fs/cgroup") {
            continue;
        }
        match fs {
            "cgroup2" => {
                v2_any = true;
                v2_root |= mountpoint == "/sys/fs/cgroup";
            }
            "cgroup" => v1 = true,
            _ => {}
        }
    }
    match (v1, v2_root, v2_any) {
        (_, true, _) => Some("2".into()),
        (true, false, true) => Some("hybrid".into()),
        (true, false, false) => Some("1".into()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cgroup_layouts() {
        let hybrid = "32 31 0:29 / /sys/fs/cgroup/cpu rw - cgroup cgroup rw,cpu\n41 31 0:38 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw\n";
        assert_eq!(detect_cgroup_version(hybrid).as_deref(), Some("hybrid"));
        let v2 = "30 23 0:26 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n";
        assert_eq!(detect_cgroup_version(v2).as_deref(), Some("2"));
        let v1 = "32 31 0:29 / /sys/fs/cgroup/cpu rw - cgroup cgroup rw,cpu\n";
        assert_eq!(detect_cgroup_version(v1).as_deref(), Some("1"));
        assert_eq!(detect_cgroup_version(""), None);
    }

    #[test]
    fn os_release_and_cpuinfo() {
        assert_eq!(
            os_release_field("NAME=\"Debian GNU/Linux\"\nVERSION_ID=\"12\"", "VERSION_ID")
                .as_deref(),
            Some("12")
        );
        assert_eq!(
            cpuinfo_field(
                "vendor_id\t: GenuineIntel\nmodel name\t: Xeon\n",
                "model name"
            )
            .as_deref(),
            Some("Xeon")
        );
        assert_eq!(semconv_arch("x86_64"), "amd64");
    }
}
