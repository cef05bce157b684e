//! What the logs source is doing, as plain data: for `check`, `/readyz` and the agent's own
//! metrics (`runtime::logs::LogsSource::report` fills it in).

use super::config::Selection;
use super::cursor::Position;
use super::follow::Status;

/// One container in a [`Report`].
#[derive(Debug, Clone, serde::Serialize)]
pub struct ContainerReport {
    pub id: String,
    pub name: String,
    pub image: String,
    pub server_uuid: Option<String>,
    pub status: Status,
    /// Acknowledged by the sink (what the cursor file says, or is about to).
    pub cursor: Option<Position>,
    /// Handed to the sink.
    pub read: Position,
    /// Lines read from Docker.
    pub lines: u64,
    pub bytes: u64,
    /// Lines the sink took for good (delivered or spooled).
    pub sent: u64,
    pub dropped_budget: u64,
    pub dropped_memory: u64,
    pub dropped_sink: u64,
    pub cut: u64,
    pub decode_errors: u64,
}

/// The source as a whole.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Report {
    pub selection: Selection,
    pub cursor_dir: String,
    /// The cursor writer's last failure, while it lasts (a restart would read lines again).
    pub cursor_error: Option<String>,
    pub memory_used: usize,
    pub memory_peak: usize,
    pub memory_limit: usize,
    pub batches: u64,
    pub records: u64,
    pub batches_in_flight: usize,
    pub containers: Vec<ContainerReport>,
}
