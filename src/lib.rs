//! node-agent: one binary that measures a game-server/container host and exports OpenTelemetry
//! over OTLP.
//!
//! The crate is laid out as the pipeline data flows through, one folder per stage. Imports flow
//! one way, down this list: a stage uses the ones above it, never the ones below (a test in the
//! suite fails on a cycle).
//!
//! | stage | what it does |
//! |---|---|
//! | [`sys`] | reads the operating system cheaply: kept-descriptor files, the host's mount table, clocks, limits |
//! | [`sources`] | read and parse only: the node, cgroups, containers (Docker, Wings), GPUs, game-server probes, host identity, the agent itself |
//! | [`otlp`] | turns samples into OTLP: the builder, one metric mapping per source, the Resource |
//! | [`export`] | delivery the agent owns: memory queue, crash-safe disk spool, gRPC/HTTP/console transports |
//! | [`logging`], [`config`] | the process's logs; the settings table and its layers, building each stage's own config |
//! | [`state`] | the shared state of a running agent (inventory, health, capabilities, latest requests) |
//! | [`serve`] | the local `/healthz`, `/readyz`, `/metrics` endpoint |
//! | [`control`] | the control plane: an OpAMP client (registration, health, remote configuration) |
//! | [`runtime`] | `node-agent run`: the loops, their timing and shutdown |
//! | [`check`] | `node-agent check`: one pass of everything, as a report |
//! | [`top`] | `node-agent top`: a live terminal view of the node, its containers and game servers |
//! | [`cli`] | the command line, generated from the settings table |
//!
//! Where things go:
//! - **A new source** (something to measure): a module in [`sources`] that reads into a plain
//!   sample struct with its own config struct, a mapping in [`otlp::metrics`], a setting in
//!   [`config::table`], and a call from the loop in [`runtime`] that should sample it.
//! - **A new signal** (logs next to metrics): its record builder next to `otlp::metrics`, its
//!   source in [`sources`], its loop in [`runtime`]; delivery goes through [`export`].
//! - **A control command** (the control plane): a stage of its own between [`state`] and
//!   [`runtime`], reading and changing the shared state; the runtime starts it.

pub mod check;
pub mod cli;
pub mod config;
pub mod control;
pub mod export;
pub mod logging;
pub mod otlp;
pub mod runtime;
pub mod serve;
pub mod sources;
pub mod state;
pub mod sys;
pub mod top;

/// rustls needs one process-wide crypto provider; we build with `ring` only.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}
