//! An honest, prompt shutdown. The grace period is for a collector that answers: when the last
//! attempt failed (the collector is known to be down), waiting cannot deliver anything, so the
//! queue goes to the spool at once and the process exits. While waiting, a failed attempt ends
//! the wait the same way, and a second signal ends it on the spot. The log says up front how
//! long the agent will wait and why.

use crate::export::{ExportStats, Exporter, ExporterKind};
use crate::state::Context;
use std::time::Duration;

/// How the delivery phase of a shutdown ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ending {
    /// Everything queued was delivered.
    Delivered,
    /// The collector is not answering; nothing was waited for.
    CollectorDown,
    /// The collector answered but did not take everything within the grace period.
    GraceOver,
    /// A second signal.
    Interrupted,
}

// What the shutdown reads from the exporter's counters, in one place.

/// Unix seconds since the last attempt started failing, when it is failing.
fn failing_since(stats: &ExportStats) -> Option<u64> {
    match stats.snapshot().failing_since {
        0 => None,
        t => Some(t),
    }
}

fn last_error(stats: &ExportStats) -> String {
    stats.last_error().unwrap_or_default()
}

/// Logs what the shutdown will do, as soon as the first signal arrives.
pub(crate) fn announce(signal: &str, ctx: &Context, stats: &ExportStats, grace: Duration) {
    let e = &ctx.cfg.export;
    if e.exporter != ExporterKind::Otlp {
        tracing::info!("{signal}: stopping after the sample in progress");
        return;
    }
    let url = super::startup::display_url(&e.endpoint);
    match failing_since(stats) {
        Some(since) => {
            let now = crate::sys::clock::now_nanos() / 1_000_000_000;
            let reason = last_error(stats);
            tracing::info!(
                "{signal}: stopping; the collector at {url} has not answered for {} s ({reason}), so queued samples go to the spool now, without waiting",
                now.saturating_sub(since)
            );
        }
        None => tracing::info!(
            "{signal}: stopping; delivering the queued samples to {url} for at most {} s (NODE_AGENT_SHUTDOWN_GRACE_SEC), then the rest goes to the spool. Signal again to stop at once",
            grace.as_secs_f64()
        ),
    }
}

/// Waits while the collector takes the queue: until it is empty, an attempt fails, or `grace`
/// has passed.
pub(crate) async fn deliver(exporter: &Exporter, grace: Duration) -> Ending {
    let stats = exporter.stats();
    let deadline = tokio::time::Instant::now() + grace;
    loop {
        // `drain` with no grace only tells whether the queue is empty.
        if exporter.drain(Duration::ZERO).await {
            return Ending::Delivered;
        }
        if failing_since(&stats).is_some() {
            return Ending::CollectorDown;
        }
        if tokio::time::Instant::now() >= deadline {
            return Ending::GraceOver;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Logs how the shutdown ended and where the undelivered samples are: `waiting` batches are in the
/// spool for the next start, `lost` could not be spooled (counted as dropped, `reason=shutdown`).
pub(crate) fn report(ending: Ending, ctx: &Context, _stats: &ExportStats, waiting: u64, lost: u64) {
    let why = match ending {
        Ending::Delivered => {
            tracing::info!("all queued samples delivered");
            return;
        }
        Ending::CollectorDown => "the collector is not answering",
        Ending::GraceOver => "the shutdown grace period is over",
        Ending::Interrupted => "stopped at once by a second signal",
    };
    let spool = ctx
        .cfg
        .queue
        .spool_dir
        .as_ref()
        .map(|d| d.display().to_string())
        .unwrap_or_default();
    if lost > 0 {
        tracing::error!(
            "{why}: {lost} undelivered batch(es) lost (not spooled, counted as dropped); {waiting} kept in the spool {spool}"
        );
    } else {
        tracing::info!(
            "{why}: {waiting} undelivered batch(es) kept in the spool {spool}; they are sent after the next start"
        );
    }
}
