//! The logs source's own settings (the agent's settings table composes them; see docs/logs.md
//! for the keys, environment variables and defaults).

use std::path::PathBuf;
use std::time::Duration;

/// Which containers' logs are followed (`logs`, `NODE_AGENT_LOGS`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Selection {
    Off,
    /// Pterodactyl server containers only (Wings' `Service=Pterodactyl` label or a Wings server
    /// UUID as the name; not the `_installer` containers).
    #[default]
    Servers,
    All,
}

impl Selection {
    /// The setting's word for it.
    pub fn name(self) -> &'static str {
        match self {
            Selection::Off => "off",
            Selection::Servers => "servers",
            Selection::All => "all",
        }
    }
}

/// A logs setting out of its bounds; each names the setting and what it must be.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LogsConfigError {
    #[error("logs = {0:?}: expected off, servers or all (NODE_AGENT_LOGS)")]
    Selection(String),
    #[error(
        "logs_max_line_bytes = {0}: must be at least 65536 (one Docker piece is 16 KiB; the default is 1048576)"
    )]
    MaxLine(usize),
    #[error(
        "logs_memory_bytes = {memory}: must be at least twice logs_max_line_bytes ({max_line})"
    )]
    Memory { memory: usize, max_line: usize },
    #[error("logs_budget_interval_sec, logs_budget_lines and logs_budget_bytes must be above 0")]
    Budget,
    #[error("logs_flush_interval_ms = {0:?}: must be between 1 ms and 10 s")]
    FlushInterval(Duration),
    #[error("logs batch size {batch} is below logs_max_line_bytes {max_line}")]
    Batch { batch: usize, max_line: usize },
}

impl std::str::FromStr for Selection {
    type Err = LogsConfigError;
    fn from_str(s: &str) -> Result<Self, LogsConfigError> {
        match s.trim().to_ascii_lowercase().as_str() {
            "off" | "none" | "false" => Ok(Selection::Off),
            "servers" => Ok(Selection::Servers),
            "all" => Ok(Selection::All),
            other => Err(LogsConfigError::Selection(other.to_string())),
        }
    }
}

#[derive(Debug, Clone)]
pub struct LogsConfig {
    pub selection: Selection,
    /// Cursors live in `<state_dir>/logs/` (`state_dir`, `NODE_AGENT_STATE_DIR`).
    pub state_dir: PathBuf,
    /// `unix:///var/run/docker.sock` or a path (the agent's `DOCKER_HOST`).
    pub docker_host: String,
    /// Bound on each Docker request's headers and on inspect/list (the agent's HTTP timeout).
    pub request_timeout: Duration,
    /// A line longer than this is cut, marked (`logs_max_line_bytes`, ≥ 64 KiB).
    pub max_line: usize,
    /// Memory for lines being assembled or waiting for the sink (`logs_memory_bytes`).
    pub memory: usize,
    /// Each container's budget: lines and bytes per interval (`logs_budget_interval_sec`, `logs_budget_lines`, `logs_budget_bytes`).
    pub budget_interval: Duration,
    pub budget_lines: u64,
    pub budget_bytes: u64,
    /// A batch goes to the sink at most this long after its first line, or sooner when it reaches
    /// `batch_bytes` (`logs_flush_interval_ms`).
    pub flush_interval: Duration,
    pub batch_bytes: usize,
    /// How often the container list is read again to catch what `/events` missed.
    pub resync_interval: Duration,
    /// A container with no cursor is read from this far back (`None`: all Docker still holds; `logs_backfill_sec`).
    pub backfill: Option<Duration>,
}

impl Default for LogsConfig {
    fn default() -> Self {
        LogsConfig {
            selection: Selection::Servers,
            state_dir: PathBuf::from("/var/lib/node-agent"),
            docker_host: "unix:///var/run/docker.sock".into(),
            request_timeout: Duration::from_secs(10),
            max_line: 1 << 20,
            memory: 16 << 20,
            budget_interval: Duration::from_secs(10),
            budget_lines: 50_000,
            budget_bytes: 16 << 20,
            flush_interval: Duration::from_millis(500),
            batch_bytes: 2 << 20,
            resync_interval: Duration::from_secs(30),
            backfill: None,
        }
    }
}

impl LogsConfig {
    /// The cursor directory.
    pub fn cursor_dir(&self) -> PathBuf {
        self.state_dir.join("logs")
    }

    /// Checks the bounds; the message names the setting and the fix.
    pub fn validate(&self) -> Result<(), LogsConfigError> {
        if self.max_line < 64 * 1024 {
            return Err(LogsConfigError::MaxLine(self.max_line));
        }
        if self.memory < 2 * self.max_line {
            return Err(LogsConfigError::Memory {
                memory: self.memory,
                max_line: self.max_line,
            });
        }
        if self.budget_interval.is_zero() || self.budget_lines == 0 || self.budget_bytes == 0 {
            return Err(LogsConfigError::Budget);
        }
        if self.flush_interval.is_zero() || self.flush_interval > Duration::from_secs(10) {
            return Err(LogsConfigError::FlushInterval(self.flush_interval));
        }
        if self.batch_bytes < self.max_line {
            return Err(LogsConfigError::Batch {
                batch: self.batch_bytes,
                max_line: self.max_line,
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_bounds_named() {
        LogsConfig::default().validate().unwrap();
        let c = LogsConfig {
            max_line: 1000,
            ..Default::default()
        };
        assert!(
            c.validate()
                .unwrap_err()
                .to_string()
                .contains("logs_max_line_bytes")
        );
        assert_eq!("ALL".parse::<Selection>(), Ok(Selection::All));
        assert!(
            "some"
                .parse::<Selection>()
                .unwrap_err()
                .to_string()
                .contains("NODE_AGENT_LOGS")
        );
    }
}
