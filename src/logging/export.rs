//! The agent's own log as OTLP logs (`log_export`): a tracing layer that copies each event into
//! a bounded buffer, from which `node-agent run` sends them through the logs queue.
//!
//! The layer is on the path of every log line, so it must never slow the code that logs nor
//! feed itself: it never blocks (a full buffer drops the record and counts it), never allocates
//! without bound (the message and each field are cut), and never logs (nothing in this module
//! calls `tracing`; events from this module are ignored, in case one ever does).

use crate::otlp::agent_log::AgentRecord;
use parking_lot::Mutex;
use std::fmt::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::sync::mpsc;
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::{Context, Layer};

/// Records held for the sender at most (about 4 MiB with the cuts below).
const BUFFER: usize = 1024;
/// A message (or a field value) is cut there, bytes.
const MAX_TEXT: usize = 4096;
/// Fields kept per event.
const MAX_FIELDS: usize = 16;

/// The receiving end: the records, and how many did not fit.
pub(crate) struct OwnLog {
    pub(crate) records: mpsc::Receiver<AgentRecord>,
    pub(crate) dropped: Arc<AtomicU64>,
}

/// Filled by [`layer`], taken once by the runtime.
static TAKEN: Mutex<Option<OwnLog>> = parking_lot::const_mutex(None);

/// The records of the agent's own log, when `log_export` is on (once).
pub(crate) fn take() -> Option<OwnLog> {
    TAKEN.lock().take()
}

/// The layer; its receiving end waits in [`take`].
pub(crate) fn layer(level: Level) -> ExportLayer {
    let (tx, rx) = mpsc::channel(BUFFER);
    let dropped = Arc::new(AtomicU64::new(0));
    *TAKEN.lock() = Some(OwnLog {
        records: rx,
        dropped: dropped.clone(),
    });
    ExportLayer { tx, dropped, level }
}

pub(crate) struct ExportLayer {
    tx: mpsc::Sender<AgentRecord>,
    dropped: Arc<AtomicU64>,
    level: Level,
}

/// Text cut to [`MAX_TEXT`] on a character boundary.
fn cut(mut s: String) -> String {
    if s.len() > MAX_TEXT {
        let mut end = MAX_TEXT;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
        s.push('…');
    }
    s
}

#[derive(Default)]
struct Fields {
    message: String,
    fields: Vec<(String, String)>,
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.put(field, value.to_string());
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        let mut s = String::new();
        let _ = write!(s, "{value:?}");
        self.put(field, s);
    }
}

impl Fields {
    fn put(&mut self, field: &Field, value: String) {
        if field.name() == "message" {
            self.message = cut(value);
        } else if self.fields.len() < MAX_FIELDS {
            self.fields.push((field.name().to_string(), cut(value)));
        }
    }
}

impl<S: Subscriber> Layer<S> for ExportLayer {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let meta = event.metadata();
        // More verbose than asked, or from this module (never feed ourselves).
        if *meta.level() > self.level || meta.target().starts_with(module_path!()) {
            return;
        }
        // Full: drop, count, go on. Checked first so a flood costs no formatting.
        let Ok(permit) = self.tx.try_reserve() else {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        };
        let mut f = Fields::default();
        event.record(&mut f);
        permit.send(AgentRecord {
            time: crate::sys::clock::now_nanos(),
            level: *meta.level(),
            target: meta.target().to_string(),
            message: f.message,
            fields: f.fields,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracing_subscriber::layer::SubscriberExt;

    #[test]
    fn copies_events_drops_when_full_and_never_blocks() {
        let (tx, mut rx) = mpsc::channel(2);
        let dropped = Arc::new(AtomicU64::new(0));
        let l = ExportLayer {
            tx,
            dropped: dropped.clone(),
            level: Level::INFO,
        };
        let sub = tracing_subscriber::registry().with(l);
        tracing::subscriber::with_default(sub, || {
            // (Events of this module are never copied: these pose as another's.)
            tracing::warn!(target: "node_agent::logging::export", "never copied");
            tracing::debug!(target: "node_agent::t", "too verbose");
            tracing::warn!(target: "node_agent::t", signal = "logs", n = 3, "batches dropped");
            tracing::info!(target: "node_agent::t", "{}", "x".repeat(10_000));
            tracing::error!(target: "node_agent::t", "no room");
            tracing::error!(target: "node_agent::t", "no room either");
        });
        let a = rx.try_recv().unwrap();
        assert_eq!(
            (a.level, a.message.as_str()),
            (Level::WARN, "batches dropped")
        );
        assert_eq!(
            a.fields,
            vec![("signal".into(), "logs".into()), ("n".into(), "3".into())]
        );
        let b = rx.try_recv().unwrap();
        assert!(b.message.len() <= MAX_TEXT + 3 && b.message.ends_with('…'));
        assert!(rx.try_recv().is_err());
        assert_eq!(dropped.load(Ordering::Relaxed), 2);
    }
}
