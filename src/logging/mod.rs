//! Log setup: human-readable on a terminal, JSON lines with `--log-format json`; the level comes
//! from `LOG_LEVEL` or `RUST_LOG` (a level, or `target=level` directives).
//!
//! The filter is tracing's [`Targets`], not `EnvFilter`: the agent opens no spans, so span and
//! field filters would match nothing, and `EnvFilter` brings a regular-expression engine whose
//! code (about 280 KB of the binary's text) is mapped with the rest at start: the binary's text
//! is nearly all resident (docs/benchmarks.md#memory).
//! Logs go to stderr so that `OTEL_METRICS_EXPORTER=console` and `check --json` keep stdout for
//! data. A filter that does not parse is a configuration error ([`check_filter`], exit 2), never a
//! silent fall-back to `info`. With `log_export` the same events also go out as OTLP logs
//! ([`export`]).

pub(crate) mod export;

use crate::sys::text::one_line;
use std::io::IsTerminal;
use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum LogFormat {
    /// Text (the same on a terminal or not, for now).
    Auto,
    Text,
    /// One JSON object per line.
    Json,
}

const LEVELS: &[&str] = &["off", "error", "warn", "info", "debug", "trace"];

/// Why a log filter is refused.
#[derive(Debug, thiserror::Error)]
pub(crate) enum FilterError {
    #[error("`{0}` is not a valid filter: {1}")]
    Syntax(String, String),
    /// tracing would read a bare word as a target to log at every level (`verbose` would switch
    /// every log line off but that target's), which is never what was meant.
    #[error("`{0}` is neither a level nor a `target=level` directive")]
    BareWord(String),
}

/// Checks a log filter the way [`init`] will read it: each comma-separated directive is a level
/// (`off`, `error`, `warn`, `info`, `debug`, `trace`) or `target=level`.
pub(crate) fn check_filter(filter: &str) -> Result<Targets, FilterError> {
    let targets = directives(filter)
        .collect::<Vec<_>>()
        .join(",")
        .parse::<Targets>()
        .map_err(|e| FilterError::Syntax(filter.to_string(), e.to_string()))?;
    for d in directives(filter) {
        // `directives` has taken the blanks off both sides of the `=`.
        let (target, level) = match d.split_once('=') {
            Some((t, l)) => (Some(t), l),
            None => (None, d.as_str()),
        };
        if !LEVELS.iter().any(|l| level.eq_ignore_ascii_case(l)) {
            return Err(match target {
                None => FilterError::BareWord(d.to_string()),
                Some(_) => FilterError::Syntax(
                    filter.to_string(),
                    format!("`{level}` is not a level ({})", LEVELS.join(", ")),
                ),
            });
        }
        if target.is_some_and(|t| t.is_empty() || t.contains(['[', ']', '{', '}', ' '])) {
            return Err(FilterError::Syntax(
                filter.to_string(),
                format!("`{d}` does not name a target (span and field filters are not supported)"),
            ));
        }
    }
    Ok(targets)
}

/// The comma-separated directives of a filter, blanks around them and around their `=` removed.
fn directives(filter: &str) -> impl Iterator<Item = String> + '_ {
    filter
        .split(',')
        .map(str::trim)
        .filter(|d| !d.is_empty())
        .map(|d| match d.split_once('=') {
            Some((t, l)) => format!("{}={}", t.trim(), l.trim()),
            None => d.to_string(),
        })
}

/// Targets that log too much, or too much of a secret, below these levels: applied unless the
/// filter names the target itself.
const QUIETER: &[(&str, LevelFilter)] = &[
    // The HTTP/2 stack logs every connection event at debug.
    ("h2", LevelFilter::WARN),
    ("hyper", LevelFilter::WARN),
    ("rustls", LevelFilter::WARN),
    // tungstenite (OpAMP WebSocket) traces the whole upgrade request, bearer token included.
    ("tungstenite", LevelFilter::DEBUG),
];

/// The filter [`init`] installs: `level` as checked by [`check_filter`] (`info` if it does not
/// parse), with the [`QUIETER`] caps for the targets it does not name.
fn filter(level: &str) -> Targets {
    let mut targets =
        check_filter(level).unwrap_or_else(|_| Targets::new().with_default(LevelFilter::INFO));
    let named: Vec<String> = directives(level)
        .filter_map(|d| d.split_once('=').map(|(t, _)| t.to_string()))
        .collect();
    for &(target, cap) in QUIETER {
        if !named.iter().any(|n| n == target) {
            let level = targets.default_level().unwrap_or(LevelFilter::OFF).min(cap);
            targets = targets.with_target(target, level);
        }
    }
    targets
}

/// The longest a field of a text log line gets, in characters: far more than any message the
/// agent writes, and a 10 MB error a peer sent still makes one short line.
const FIELD_MAX: usize = 4096;

/// Text-format fields (`message key=value ...`, as tracing writes them) that cannot break the
/// line: each value passes [`one_line`], so a newline, carriage return or terminal escape in
/// anything a message quotes (a peer's error, a file name) is written escaped, and a huge value
/// is cut. JSON lines need no such care: the encoder escapes control characters itself.
fn one_line_fields() -> impl for<'w> tracing_subscriber::fmt::FormatFields<'w> + 'static {
    use tracing_subscriber::field::MakeExt;
    tracing_subscriber::fmt::format::debug_fn(|w, field, value| {
        let text = one_line(format_args!("{value:?}"), FIELD_MAX);
        if field.name() == "message" {
            write!(w, "{text}")
        } else {
            write!(w, "{}={text}", field.name())
        }
    })
    .delimited(" ")
}

/// Installs the process's subscriber; `level` is a tracing filter (checked by [`check_filter`]).
/// `export`: also copy events this severe or more (and allowed by `level`) for OTLP
/// ([`export::take`]).
pub fn init(level: &str, format: LogFormat, export: Option<tracing::Level>) {
    let json = matches!(format, LogFormat::Json);
    let targets = filter(level);
    let builder = tracing_subscriber::fmt()
        .with_max_level(LevelFilter::TRACE)
        .with_writer(std::io::stderr);
    let otlp = export.map(export::layer);
    let result = if json {
        builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .finish()
            .with(targets)
            .with(otlp)
            .try_init()
    } else {
        builder
            .fmt_fields(one_line_fields())
            .with_ansi(std::io::stderr().is_terminal())
            .finish()
            .with(targets)
            .with(otlp)
            .try_init()
    };
    let _ = result;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_are_checked() {
        for ok in [
            "info",
            "WARN",
            "node_agent=debug,hyper=warn",
            "warn,node_agent::serve=trace",
            " info , node_agent = debug ",
            "off",
        ] {
            assert!(check_filter(ok).is_ok(), "{ok}");
        }
        for bad in [
            "nonsense=[",
            "verbose",
            "info,warning",
            "x=loud",
            "node_agent[cycle]=debug",
            "=debug",
            "a=b=c",
        ] {
            assert!(check_filter(bad).is_err(), "{bad}");
        }
    }

    /// The caps on chatty targets hold unless the filter names the target itself, and never
    /// raise a target above the filter's own level.
    #[test]
    fn chatty_targets_are_capped_unless_named() {
        let at = |f: &Targets, target: &str, level: tracing::Level| f.would_enable(target, &level);
        let f = filter("trace");
        assert!(at(&f, "node_agent::runtime", tracing::Level::TRACE));
        assert!(at(&f, "h2::proto", tracing::Level::WARN));
        assert!(!at(&f, "h2::proto", tracing::Level::INFO));
        assert!(!at(&f, "tungstenite::handshake", tracing::Level::TRACE));
        assert!(at(&f, "tungstenite::handshake", tracing::Level::DEBUG));
        let f = filter("error");
        assert!(!at(&f, "h2", tracing::Level::WARN));
        assert!(!at(&f, "node_agent", tracing::Level::WARN));
        let f = filter("info,h2=trace");
        assert!(at(&f, "h2::codec", tracing::Level::TRACE));
        assert!(!at(&f, "hyper::client", tracing::Level::INFO));
        let f = filter("node_agent=debug");
        assert!(at(&f, "node_agent::x", tracing::Level::DEBUG));
        assert!(!at(&f, "reqwest", tracing::Level::ERROR));
        // A filter that does not parse (refused at load; here only for safety) logs at info.
        let f = filter("nonsense=[");
        assert!(at(&f, "node_agent", tracing::Level::INFO));
        assert!(!at(&f, "node_agent", tracing::Level::DEBUG));
    }
}
