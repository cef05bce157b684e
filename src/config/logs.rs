//! The logs signal's settings: the logs source's own configuration (which containers, the bounds,
//! where the cursors live) and the agent's own log as OTLP logs. Each bound is checked here so a
//! bad value stops the agent naming the setting (exit 2), not later inside the source.

use super::error::ConfigError;
use super::read::Values;
use crate::sources::logs::{LogsConfig, Selection};
use std::path::Path;
use std::time::Duration;

/// The logs source's configuration.
pub(crate) fn logs_config(
    r: &Values<'_>,
    state_dir: &Path,
    docker_host: &str,
    request_timeout: Duration,
) -> Result<LogsConfig, ConfigError> {
    let selection = r.choice(
        "logs",
        &[
            ("off", Selection::Off),
            ("none", Selection::Off),
            ("false", Selection::Off),
            ("servers", Selection::Servers),
            ("all", Selection::All),
        ],
        "use off, servers (Pterodactyl server containers) or all",
    )?;
    let max_line = r.u64("logs_max_line_bytes", 64 * 1024)?;
    let memory = r.u64("logs_memory_bytes", 1)?;
    if memory < 2 * max_line {
        return Err(r.invalid(
            "logs_memory_bytes",
            r.source("logs_memory_bytes"),
            format!("{memory} is less than twice logs_max_line_bytes ({max_line})"),
            "raise logs_memory_bytes or lower logs_max_line_bytes",
        ));
    }
    let flush_ms = r.u64("logs_flush_interval_ms", 1)?;
    if flush_ms > 10_000 {
        return Err(r.invalid(
            "logs_flush_interval_ms",
            r.source("logs_flush_interval_ms"),
            format!("{flush_ms} ms is longer than 10 s"),
            "give a number of milliseconds between 1 and 10000",
        ));
    }
    let backfill = match r.raw("logs_backfill_sec") {
        None => None,
        Some((v, _)) if v.trim().is_empty() => None,
        Some(_) => Some(r.seconds("logs_backfill_sec")?),
    };
    let defaults = LogsConfig::default();
    let cfg = LogsConfig {
        selection,
        state_dir: state_dir.to_path_buf(),
        docker_host: docker_host.to_string(),
        request_timeout,
        max_line: max_line.min(usize::MAX as u64 / 4) as usize,
        memory: memory.min(usize::MAX as u64 / 2) as usize,
        budget_interval: r.seconds("logs_budget_interval_sec")?,
        budget_lines: r.u64("logs_budget_lines", 1)?,
        budget_bytes: r.u64("logs_budget_bytes", 1)?,
        flush_interval: Duration::from_millis(flush_ms),
        // A batch holds at least one whole line.
        batch_bytes: defaults.batch_bytes.max(max_line as usize),
        resync_interval: defaults.resync_interval,
        backfill,
    };
    // The checks above name the setting; this is the source's own last word.
    cfg.validate().map_err(|problem| {
        r.invalid(
            "logs",
            r.source("logs"),
            problem.to_string(),
            "see docs/logs.md for the bounds",
        )
    })?;
    Ok(cfg)
}

/// `log_export`: the least severe level of the agent's own log sent as OTLP logs, `None` when off.
pub(crate) fn log_export(r: &Values<'_>) -> Result<Option<tracing::Level>, ConfigError> {
    r.choice(
        "log_export",
        &[
            ("off", None),
            ("false", None),
            ("none", None),
            ("", None),
            ("error", Some(tracing::Level::ERROR)),
            ("warn", Some(tracing::Level::WARN)),
            ("info", Some(tracing::Level::INFO)),
            ("debug", Some(tracing::Level::DEBUG)),
        ],
        "use off, error, warn, info or debug",
    )
}

#[cfg(test)]
mod tests {
    use super::super::Config;
    use crate::sources::logs::Selection;
    use std::time::Duration;

    fn config(env: &[(&str, &str)]) -> Result<Config, String> {
        let layers = super::super::tests::layers(env, &[]);
        Config::from_layers(&layers).map_err(|e| e.to_string())
    }

    #[test]
    fn defaults_follow_the_servers_and_keep_cursors_in_the_state_dir() {
        let c = config(&[("NODE_AGENT_STATE_DIR", "/srv/na")]).unwrap();
        assert_eq!(c.logs.selection, Selection::Servers);
        assert_eq!(c.logs.cursor_dir(), std::path::Path::new("/srv/na/logs"));
        assert_eq!(c.logs.max_line, 1 << 20);
        assert_eq!(c.logs.flush_interval, Duration::from_millis(500));
        assert_eq!(c.logs.backfill, None);
        assert_eq!(c.log_export, None);
        // The spool moves under the state directory unless spool_dir says otherwise.
        assert_eq!(
            c.queue.spool_dir.as_deref(),
            Some(std::path::Path::new("/srv/na/spool"))
        );
        let c = config(&[
            ("NODE_AGENT_STATE_DIR", "/srv/na"),
            ("NODE_AGENT_SPOOL_DIR", "/var/spool/na"),
            ("NODE_AGENT_LOGS", "ALL"),
            ("NODE_AGENT_LOGS_BACKFILL_SEC", "60"),
            ("NODE_AGENT_LOG_EXPORT", "warn"),
        ])
        .unwrap();
        assert_eq!(
            c.queue.spool_dir.as_deref(),
            Some(std::path::Path::new("/var/spool/na"))
        );
        assert_eq!(c.logs.selection, Selection::All);
        assert_eq!(c.logs.backfill, Some(Duration::from_secs(60)));
        assert_eq!(c.log_export, Some(tracing::Level::WARN));
    }

    #[test]
    fn bad_values_name_the_setting() {
        for (var, value, setting) in [
            ("NODE_AGENT_LOGS", "some", "logs"),
            (
                "NODE_AGENT_LOGS_MAX_LINE_BYTES",
                "1000",
                "logs_max_line_bytes",
            ),
            (
                "NODE_AGENT_LOGS_MEMORY_BYTES",
                "1048576",
                "logs_memory_bytes",
            ),
            ("NODE_AGENT_LOGS_BUDGET_LINES", "0", "logs_budget_lines"),
            (
                "NODE_AGENT_LOGS_FLUSH_INTERVAL_MS",
                "60000",
                "logs_flush_interval_ms",
            ),
            ("NODE_AGENT_LOGS_BACKFILL_SEC", "-1", "logs_backfill_sec"),
            ("NODE_AGENT_LOG_EXPORT", "loud", "log_export"),
            ("OTEL_LOGS_EXPORTER", "zipkin", "logs_exporter"),
        ] {
            let e = config(&[(var, value)]).unwrap_err();
            assert!(
                e.starts_with(&format!("invalid {setting} ")) && e.contains(var),
                "{var}={value}: {e}"
            );
        }
    }
}
