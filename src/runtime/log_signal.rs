//! The logs signal in `node-agent run`: container consoles through [`LogsSource`] and the agent's
//! own log (`log_export`), both on the exporter's logs lane.
//!
//! - The source starts once the spool has been scanned, from the cursor files merged with the
//!   positions the spool still holds ([`LaneLogSink::recovered`]): a `kill -9` between a spool
//!   write and a cursor write then neither repeats nor loses a line. Starting late never holds
//!   the metrics up: this runs in its own task.
//! - The selection (`logs`) and the node's resource attributes follow the live settings (a
//!   remote configuration), at once.
//! - At shutdown the source hands its last lines to the lane and waits for the answers (delivered
//!   or spooled) and the cursor writes; anything still open then is in the spool with its
//!   positions, or is read again at the next start.
//! - The agent's own records are batched once a second and queued without positions; nothing
//!   here logs per record, so a log line about the logs lane cannot multiply itself.

use super::logs::LogsSource;
use crate::export::logs_sink::LaneLogSink;
use crate::export::{Exporter, ExporterKind, Signal};
use crate::logging::export::OwnLog;
use crate::otlp::agent_log::{self, AgentRecord};
use crate::sources::logs::{Selection, Servers};
use crate::state::{Context, LogsState};
use crate::sys::clock::now_nanos;
use bytes::Bytes;
use opentelemetry_proto::tonic::common::v1::KeyValue;
use prost::Message;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// The agent's own records are sent this often (or at [`OWN_BATCH`] records).
const OWN_FLUSH: Duration = Duration::from_secs(1);
const OWN_BATCH: usize = 512;

/// Which Wings server a container is, from discovery's latest inventory.
struct Inventory(Arc<Context>);

impl Servers for Inventory {
    fn server(
        &self,
        id: &str,
        name: &str,
        labels: &BTreeMap<String, String>,
    ) -> Option<(String, Option<String>)> {
        self.0.containers.server(id, name, labels)
    }
}

/// The node's resource attributes as the logs carry them: the identity, without the
/// capability counts that change with every sample (`node.*`, `container.runtime.*`).
fn node_resource(ctx: &Context) -> Vec<KeyValue> {
    ctx.resource()
        .into_iter()
        .filter(|a| !a.key.starts_with("node.") && !a.key.starts_with("container.runtime."))
        .collect()
}

/// Starts the logs signal's tasks; `None` when there is no logs lane (`OTEL_LOGS_EXPORTER=none`).
/// The handle ends once the source has shut down (after `shutdown` turns true).
pub(crate) fn spawn(
    ctx: Arc<Context>,
    exporter: Exporter,
    own: Option<OwnLog>,
    shutdown: watch::Receiver<bool>,
    grace: Duration,
) -> Option<JoinHandle<()>> {
    if ctx.cfg.queue.logs.is_none() {
        let what = if own.is_some() {
            "container logs and the agent's own log (log_export) are"
        } else {
            "container logs are"
        };
        tracing::info!("OTEL_LOGS_EXPORTER=none: {what} not read or sent");
        return None;
    }
    let own = own.map(|o| {
        let dropped = o.dropped.clone();
        let task = tokio::spawn(own_log(ctx.clone(), exporter.clone(), o, shutdown.clone()));
        (dropped, task)
    });
    Some(tokio::spawn(consoles(ctx, exporter, own, shutdown, grace)))
}

type OwnTask = (Arc<std::sync::atomic::AtomicU64>, JoinHandle<()>);

async fn consoles(
    ctx: Arc<Context>,
    exporter: Exporter,
    own: Option<OwnTask>,
    mut shutdown: watch::Receiver<bool>,
    grace: Duration,
) {
    let (own_dropped, own_task) = match own {
        Some((d, t)) => (Some(d), Some(t)),
        None => (None, None),
    };
    let sink = LaneLogSink::new(exporter.clone());
    let recovered = tokio::select! {
        r = sink.recovered() => r,
        _ = shutdown.changed() => Vec::new(),
    };
    let mut cfg = ctx.cfg.logs.clone();
    cfg.selection = ctx.live().logs;
    let started = if *shutdown.borrow() {
        None
    } else {
        match LogsSource::start(
            cfg,
            Arc::new(sink),
            Arc::new(Inventory(ctx.clone())),
            node_resource(&ctx),
            recovered,
        ) {
            Ok(s) => Some(Arc::new(s)),
            Err(e) => {
                tracing::error!(error = %e, dir = %ctx.cfg.logs.cursor_dir().display(), "cannot start the logs source: container logs are not read (metrics go on)");
                None
            }
        }
    };
    let report: Box<dyn Fn() -> crate::sources::logs::Report + Send + Sync> = match &started {
        Some(s) => {
            let s = Arc::downgrade(s);
            let dir = ctx.cfg.logs.cursor_dir().display().to_string();
            Box::new(move || match s.upgrade() {
                Some(s) => s.report(),
                None => stopped(&dir),
            })
        }
        None => {
            let dir = ctx.cfg.logs.cursor_dir().display().to_string();
            Box::new(move || {
                let mut r = stopped(&dir);
                r.cursor_error = Some("the logs source did not start".into());
                r
            })
        }
    };
    *ctx.logs.write() = Some(Arc::new(LogsState {
        report,
        export: exporter.stats_of(Signal::Logs),
        own_log_dropped: own_dropped,
    }));
    if let Some(s) = &started {
        let sel = s.report().selection;
        tracing::info!(
            selection = sel.name(),
            cursors = %ctx.cfg.logs.cursor_dir().display(),
            "{}",
            match sel {
                Selection::Off => "container logs are off (NODE_AGENT_LOGS=off)".to_string(),
                Selection::Servers => "following the console of every game server (Pterodactyl server containers); NODE_AGENT_LOGS=all for every container, off to stop".to_string(),
                Selection::All => "following the console of every container (NODE_AGENT_LOGS=all)".to_string(),
            }
        );
    }
    let mut live = ctx.live_changes();
    loop {
        tokio::select! {
            _ = shutdown.changed() => break,
            r = live.changed() => {
                if r.is_err() {
                    break;
                }
                if let Some(s) = &started {
                    s.set_selection(ctx.live().logs);
                    s.set_node(node_resource(&ctx));
                }
            }
        }
    }
    if let Some(source) = started {
        // Nothing will answer a memory-only queue whose collector is down: do not wait for it.
        let spooled = ctx.cfg.queue.spool_dir.is_some()
            && ctx.cfg.logs_export.exporter == ExporterKind::Otlp
            && ctx.cfg.queue.logs.is_some_and(|b| b.spool_max_bytes > 0);
        let wait = if exporter.collector_failing() && !spooled {
            Duration::from_millis(300)
        } else {
            grace
        };
        // A report being read holds the source for a moment.
        let mut source = source;
        let mut tries = 0;
        let owned = loop {
            match Arc::try_unwrap(source) {
                Ok(s) => break Some(s),
                Err(_) if tries >= 200 => break None,
                Err(shared) => {
                    source = shared;
                    tries += 1;
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            }
        };
        if let Some(source) = owned
            && !source.shutdown(wait).await
        {
            tracing::info!(
                "logs: not every batch was answered before the exit; those lines are in the spool or are read again at the next start"
            );
        }
    }
    if let Some(t) = own_task {
        let _ = tokio::time::timeout(Duration::from_secs(1), t).await;
    }
}

/// Sends the agent's own records until shutdown (then what is buffered).
async fn own_log(
    ctx: Arc<Context>,
    exporter: Exporter,
    mut own: OwnLog,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut batch: Vec<AgentRecord> = Vec::new();
    // Armed by a batch's first record: no timer runs while the agent has nothing to say.
    let flush = tokio::time::sleep(OWN_FLUSH);
    tokio::pin!(flush);
    let send = |batch: &mut Vec<AgentRecord>| {
        if batch.is_empty() {
            return;
        }
        let req = agent_log::request(node_resource(&ctx), std::mem::take(batch), now_nanos());
        exporter.submit(
            Signal::Logs,
            Bytes::from(req.encode_to_vec()),
            Bytes::new(),
            None,
        );
    };
    loop {
        tokio::select! {
            r = own.records.recv() => match r {
                Some(r) => {
                    if batch.is_empty() {
                        flush.as_mut().reset(tokio::time::Instant::now() + OWN_FLUSH);
                    }
                    batch.push(r);
                    if batch.len() >= OWN_BATCH {
                        send(&mut batch);
                    }
                }
                None => break,
            },
            _ = &mut flush, if !batch.is_empty() => send(&mut batch),
            _ = shutdown.changed() => break,
        }
    }
    while let Ok(r) = own.records.try_recv() {
        batch.push(r);
    }
    send(&mut batch);
}

/// The report of a source that is not running.
fn stopped(cursor_dir: &str) -> crate::sources::logs::Report {
    crate::sources::logs::Report {
        selection: Selection::Off,
        cursor_dir: cursor_dir.to_string(),
        cursor_error: None,
        memory_used: 0,
        memory_peak: 0,
        memory_limit: 0,
        batches: 0,
        records: 0,
        batches_in_flight: 0,
        containers: Vec::new(),
    }
}
