//! node-agent: one small binary that measures a game-server/container host and exports
//! OpenTelemetry metrics over OTLP.
//!
//! The major components, in the order data flows through them:
//!
//! - [`config`]: one table of settings read from flags, the environment (the original Python
//!   agent's names and the standard `OTEL_*` ones), a TOML file and defaults, validated at start.
//! - [`resource`]: the node's identity (`service.instance.id`, `host.id`, …) and capabilities
//!   (CPU count, memory, disk, GPUs, cgroup setup), sent as the OTLP Resource.
//! - Samplers, which only read and parse: [`node`] (/proc, one file per metric family),
//!   reading every file through kept descriptors ([`procfile`]); [`gpu`] (NVML loaded at run
//!   time for NVIDIA, DRM sysfs for AMD/Intel), sampled with the node cycle.
//! - Containers and game servers: [`containers`] discovers them on its own schedule ([`docker`]
//!   Engine API, [`wings`] API) and samples each container's cgroup ([`cgroup`]: v1, v2, hybrid,
//!   per-task disk counters where blkio is blind) in the node cycle.
//! - [`probe`]: game-server status probes (Minecraft Java/legacy, Query, Bedrock, Source A2S),
//!   the choice of protocol and port per server, and the players loop.
//! - [`otlp`]: turns a finished sample into one OTLP request stamped with the time it was taken,
//!   so every sample is exported exactly once.
//! - [`export`]: the delivery queue the agent owns (memory, then a crash-safe disk spool replayed
//!   after a restart), and the gRPC/HTTP/console transports.
//! - [`selfmetrics`]: the agent's own health and heartbeat metrics.
//! - [`serve`]: the optional local `/healthz`, `/readyz` and `/metrics` endpoint; [`prom`] renders
//!   the exported OTLP as Prometheus text with the Collector's names.
//! - [`agent`] runs it all (`node-agent run`); [`check`] samples once and reports
//!   (`node-agent check`); [`cli`] and [`logging`] are the process's front.

pub mod agent;
pub mod cgroup;
pub mod check;
pub mod cli;
pub mod config;
pub mod containers;
pub mod docker;
pub mod export;
pub mod gpu;
pub mod logging;
pub mod logs;
pub mod node;
pub mod otlp;
pub mod probe;
pub mod procfile;
pub mod prom;
pub mod resource;
pub mod selfmetrics;
pub mod serve;
pub mod wings;

/// rustls needs one process-wide crypto provider; we build with `ring` only.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}
