//! The host's identity (machine-id, name, OS, CPU model) and capabilities (CPU count, memory,
//! disk, GPUs, cgroup setup, container runtime, Wings version): what an orchestrator needs to place
//! servers. `otlp::resource` turns them into the Resource sent with every request.

use std::path::Path;

/// What the node offers, gathered by the samplers.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub(crate) struct Capabilities {
    pub(crate) cpu_count: u32,
    pub(crate) memory_total: u64,
    pub(crate) disk_total: u64,
    pub(crate) gpu_count: u32,
    pub(crate) gpu_models: Vec<String>,
    pub(crate) cgroup_version: Option<String>,
    pub(crate) cgroup_driver: Option<String>,
    pub(crate) container_runtime: Option<(String, String)>,
    pub(crate) wings_version: Option<String>,
}

/// Facts about the host that do not change while the agent runs.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub(crate) struct HostInfo {
    pub(crate) host_id: String,
    pub(crate) host_name: String,
    pub(crate) arch: String,
    pub(crate) os_description: String,
    pub(crate) os_name: String,
    pub(crate) os_version: String,
    pub(crate) kernel: String,
    pub(crate) cpu_model: String,
    pub(crate) cpu_vendor: String,
}

/// semconv `host.arch` values for Rust's target architecture names.
pub(crate) fn semconv_arch(rust_arch: &str) -> &str {
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
pub(crate) fn os_release_field(text: &str, key: &str) -> Option<String> {
    text.lines().find_map(|l| {
        let (k, v) = l.split_once('=')?;
        (k.trim() == key).then(|| v.trim().trim_matches('"').trim_matches('\'').to_string())
    })
}

/// First value of `key` in /proc/cpuinfo.
pub(crate) fn cpuinfo_field(text: &str, key: &str) -> Option<String> {
    text.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        (k.trim() == key).then(|| v.trim().to_string())
    })
}

impl HostInfo {
    /// Reads the host's facts from its root filesystem and /proc.
    pub(crate) fn detect(proc_path: &Path, root: &Path) -> Self {
        let host_id = read_trimmed(&root.join("etc/machine-id"))
            .or_else(|| read_trimmed(&root.join("var/lib/dbus/machine-id")))
            .unwrap_or_default();
        let host_name = read_trimmed(&proc_path.join("sys/kernel/hostname"))
            .or_else(|| read_trimmed(&root.join("etc/hostname")))
            .unwrap_or_default();
        let os_release = std::fs::read_to_string(root.join("etc/os-release"))
            .or_else(|_| std::fs::read_to_string(root.join("usr/lib/os-release")))
            .unwrap_or_default();
        let kernel = read_trimmed(&proc_path.join("sys/kernel/osrelease")).unwrap_or_default();
        let cpuinfo = std::fs::read_to_string(proc_path.join("cpuinfo")).unwrap_or_default();
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
}

#[cfg(test)]
mod tests {
    use super::*;

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
