//! Console logs of containers and game servers as OTLP logs: nothing lost, nothing doubled.
//!
//! The systems node-agent replaces ship each server's console to the central server; operators
//! need crash reasons, out-of-memory kills and "player joined" lines next to the metrics. Wings
//! runs servers with Docker's `local` log driver and a TTY, so there is no JSON file to tail: the
//! Engine API's logs stream is the one path that works for every driver. This module follows it
//! per container and turns each line into an OTLP `LogRecord`:
//!
//! - [`source`]: which containers (`logs = off | servers | all`), from Docker's list and events;
//! - [`follow`]: one container's reader; [`decode`] turns Docker's stream (multiplexed, or raw
//!   with a TTY; 16 KiB pieces) into whole, bounded lines; [`timestamp`] reads Docker's times;
//! - [`cursor`]: where each container's log was read up to, on disk, advanced only when the sink
//!   says a batch is safe; [`budget`]: the memory bound and each container's allowance;
//! - [`batch`] and [`sink`]: batches to the delivery seam and acknowledgements back;
//!   [`otlp`]: the OTLP shape (one Resource per container).
//!
//! Imports flow one way: the source half (`api`, `decode`, `timestamp`, `cursor`, `budget`,
//! `select`, `follow`, `config`) knows nothing of OTLP or delivery; `otlp` turns its records into
//! requests; `batch`, `sink` and `source` run it all. docs/logs.md states what Docker was observed
//! to do and what this module guarantees.

mod api;
mod batch;
mod budget;
mod config;
mod cursor;
mod decode;
mod follow;
pub mod fuzz;
mod otlp;
mod select;
mod sink;
mod source;
mod timestamp;

pub use budget::Counters;
pub use config::{LogsConfig, Selection};
pub use cursor::{CursorError, Position, StreamPos};
pub use decode::Stream;
pub use follow::Status;
pub use otlp::{IOSTREAM, ORIGINAL_SIZE, TRUNCATED};
pub use select::{ByLabels, Identity, Servers};
pub use sink::{Ack, LogBatch, LogSink};
pub use source::{ContainerReport, LogsError, LogsSource, Report};
