//! Log setup: human-readable on a terminal, JSON lines with `--log-format json`; the level comes
//! from `LOG_LEVEL` or `RUST_LOG` (a level, or a tracing filter of `target=level` directives).
//! Logs go to stderr so that `OTEL_METRICS_EXPORTER=console` and `check --json` keep stdout for
//! data. A filter that does not parse is a configuration error ([`check_filter`], exit 2), never a
//! silent fall-back to `info`. With `log_export` the same events also go out as OTLP logs
//! ([`export`]).

pub(crate) mod export;

use crate::sys::text::one_line;
use std::io::IsTerminal;
use tracing_subscriber::EnvFilter;
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
/// (`off`, `error`, `warn`, `info`, `debug`, `trace`) or `target[span{field}]=level`.
pub(crate) fn check_filter(filter: &str) -> Result<(), FilterError> {
    EnvFilter::builder()
        .parse(filter)
        .map_err(|e| FilterError::Syntax(filter.to_string(), e.to_string()))?;
    for d in filter.split(',').map(str::trim).filter(|d| !d.is_empty()) {
        let bare = !d.contains(['=', '[']);
        if bare && !LEVELS.iter().any(|l| d.eq_ignore_ascii_case(l)) {
            return Err(FilterError::BareWord(d.to_string()));
        }
    }
    Ok(())
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
    let filter = EnvFilter::try_new(level)
        .or_else(|_| EnvFilter::try_new("info"))
        .expect("'info' is a valid filter")
        // The HTTP/2 stack logs every connection event at debug; keep it quiet unless asked.
        .add_directive("h2=warn".parse().expect("static directive"))
        .add_directive("hyper=warn".parse().expect("static directive"))
        .add_directive("rustls=warn".parse().expect("static directive"))
        // tungstenite (OpAMP WebSocket) traces the whole upgrade request, bearer token included.
        .add_directive("tungstenite=debug".parse().expect("static directive"));
    let json = matches!(format, LogFormat::Json);
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let otlp = export.map(export::layer);
    let result = if json {
        builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .finish()
            .with(otlp)
            .try_init()
    } else {
        builder
            .fmt_fields(one_line_fields())
            .with_ansi(std::io::stderr().is_terminal())
            .finish()
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
            "node_agent[cycle]=debug",
        ] {
            assert!(check_filter(ok).is_ok(), "{ok}");
        }
        for bad in ["nonsense=[", "verbose", "info,warning", "x=loud"] {
            assert!(check_filter(bad).is_err(), "{bad}");
        }
    }
}
