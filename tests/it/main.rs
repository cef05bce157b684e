//! The integration suite, one binary: each module tests one area of the agent against the real
//! thing where it runs here (kernel cgroups, a real Docker engine, rotel, real game servers,
//! Prometheus), through the shared harness in `tests/harness/`. Tests that need their own global
//! allocator (`cycle_cost`, `probe_hostile`) are binaries of their own.

#[path = "../harness/mod.rs"]
mod harness;

mod cgroup_fixtures;
mod cgroup_real;
mod config_cli;
mod delivery;
mod delivery_crash;
mod delivery_disk;
mod delivery_retry;
mod delivery_signals;
mod docker_real;
mod e2e_otlp;
mod endpoint;
mod firstrun;
mod gpu;
mod house;
mod idle;
mod logs;
mod logs_e2e;
mod node_numbers;
mod opamp;
mod pipeline;
mod probe_e2e;
mod probes;
mod top;
mod transports;
