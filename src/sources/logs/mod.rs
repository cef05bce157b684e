//! Container consoles, line by line: the logs source.
//!
//! The systems node-agent replaces ship each server's console to the central server; operators
//! need crash reasons, out-of-memory kills and "player joined" lines next to the metrics. Wings
//! runs servers with Docker's `local` log driver and a TTY, so there is no JSON file to tail: the
//! Engine API's logs stream is the one path that works for every driver. This source reads it per
//! container into plain [`follow::Record`]s; `otlp::logs` makes them OTLP, `runtime::logs` runs
//! the followers and the batches, and `export::logs` is the seam delivery plugs into.
//!
//! - [`api`]: the Docker calls (inspect, the logs stream, `/events`);
//! - [`decode`]: Docker's stream (multiplexed, or raw with a TTY; 16 KiB pieces) into whole,
//!   bounded lines; [`timestamp`]: Docker's times;
//! - [`follow`]: one container's reader, from its position, as fast as Docker gives it;
//! - [`cursor`]: where each container's log was read up to, on disk; [`budget`]: the memory bound
//!   and each container's allowance; [`select`]: which containers, and which Wings server each is;
//! - [`Report`]: what the source is doing, for `check`, `/readyz` and the self-metrics;
//! - [`config`]: the source's settings.
//!
//! docs/logs.md states what Docker was observed to do and what the logs signal guarantees.

pub(crate) mod api;
pub(crate) mod budget;
mod config;
pub(crate) mod cursor;
pub(crate) mod decode;
pub(crate) mod follow;
#[cfg(any(test, feature = "fuzz"))]
pub mod fuzz;
mod report;
pub(crate) mod select;
mod timestamp;

pub use budget::Counters;
pub use config::{LogsConfig, LogsConfigError, Selection};
pub use cursor::{CursorError, Position, StreamPos};
pub use decode::Stream;
pub use follow::Status;
pub use report::{ContainerReport, Report};
pub use select::{ByLabels, Identity, Servers};
