//! Containers and game servers: discovery on its own schedule (the Docker Engine API and the Wings
//! API, joined by container name = server UUID) and the per-container cgroup sampler that runs in
//! the node cycle.

pub(crate) mod discovery;
pub(crate) mod docker;
#[cfg(any(test, feature = "fuzz"))]
pub mod fuzz;
pub(crate) mod json;
pub mod sampler;
pub mod wings;

pub use discovery::{ContainerInfo, Discovery, DiscoveryConfig, Inventory, SourceState};
