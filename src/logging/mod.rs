//! Log setup: human-readable on a terminal, JSON lines with `--log-format json`; the level comes
//! from `LOG_LEVEL` or `RUST_LOG` (any tracing filter works). Logs go to stderr so that
//! `OTEL_METRICS_EXPORTER=console` and `check --json` keep stdout for data. With `log_export`
//! the same events also go out as OTLP logs ([`export`]).

pub(crate) mod export;

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

/// Installs the process's subscriber; `level` is a tracing filter. `export`: also copy events
/// this severe or more (and allowed by `level`) for OTLP ([`export::take`]).
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
            .with_ansi(std::io::stderr().is_terminal())
            .finish()
            .with(otlp)
            .try_init()
    };
    let _ = result;
}
