//! The OTLP Resource: the node's identity and capabilities, sent with every request.
//!
//! Identity must be stable across restarts, because `service.instance.id` becomes Prometheus'
//! `instance` label and the orchestrator's node key: it is `NODE_ID` when set, else `host.id`
//! (the machine-id). Capabilities are refreshed when the samplers learn something new, and
//! `OTEL_RESOURCE_ATTRIBUTES` always has the last word.

use crate::otlp::builder::{kv, kv_int};
use crate::sources::host::{Capabilities, HostInfo};
use opentelemetry_proto::tonic::common::v1::KeyValue;

/// What the operator says about the resource.
#[derive(Debug, Clone, Default)]
pub(crate) struct ResourceConfig {
    /// `NODE_ID`: the node's identity; `service.instance.id` (default: `host.id`).
    pub(crate) node_id: Option<String>,
    /// `NODE_IP`: `host.ip`.
    pub(crate) node_ip: Option<String>,
    /// `OTEL_SERVICE_NAME`; it beats `service.name` in `OTEL_RESOURCE_ATTRIBUTES`.
    pub(crate) service_name: Option<String>,
    /// `OTEL_RESOURCE_ATTRIBUTES`: they replace detected attributes with the same key.
    pub(crate) attributes: Vec<(String, String)>,
}

/// `service.instance.id`: NODE_ID, else host.id, else the host name.
pub(crate) fn instance_id(cfg: &ResourceConfig, host: &HostInfo) -> String {
    cfg.node_id
        .clone()
        .or_else(|| (!host.host_id.is_empty()).then(|| host.host_id.clone()))
        .unwrap_or_else(|| host.host_name.clone())
}

/// Builds the resource attributes. User attributes (OTEL_RESOURCE_ATTRIBUTES) replace detected
/// ones with the same key; OTEL_SERVICE_NAME beats both for `service.name`.
pub(crate) fn build(cfg: &ResourceConfig, host: &HostInfo, caps: &Capabilities) -> Vec<KeyValue> {
    let mut attrs: Vec<KeyValue> = Vec::with_capacity(32);
    let mut push = |k: &str, v: String| {
        if !v.is_empty() {
            attrs.push(kv(k, v));
        }
    };
    push("service.name", "node-agent".into());
    push("service.version", env!("CARGO_PKG_VERSION").into());
    push("service.instance.id", instance_id(cfg, host));
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
    for (k, v) in &cfg.attributes {
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
