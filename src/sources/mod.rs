//! Where the numbers come from. Sources only read and parse: each turns the host's files or a
//! peer's answers into a plain sample struct, owns its small config struct, and knows nothing of
//! OTLP, the queue or the running agent.
//!
//! - [`node`]: the host from /proc and /sys (CPU, memory, filesystems, disks, network, uptime).
//! - [`cgroup`]: one container's cgroup on v1, v2 or hybrid (CPU, memory, disk, pressure).
//! - [`containers`]: discovery (Docker Engine API, Wings API) and the per-container sampler.
//! - [`gpu`]: NVIDIA through NVML, AMD/Intel through DRM sysfs.
//! - [`probe`]: game-server status protocols and the players pass.
//! - [`host`]: identity and capabilities; [`agent`]: the agent's own process and sampler health.
//! - `parsers` (only with `--features bench`): the parsers of the node files, public for the
//!   benchmark helper's comparison with procfs-core.
//!
//! A new source gets a module here and a mapping in `otlp::metrics`.

pub(crate) mod agent;
pub mod cgroup;
pub mod containers;
pub(crate) mod gpu;
pub(crate) mod host;
pub mod logs;
pub mod node;
#[cfg(feature = "bench")]
pub mod parsers;
pub mod probe;
