//! The logs signal at run time: which containers are followed, the followers, the batches to the
//! sink and the sink's answers back to the cursors.
//!
//! The supervisor learns of containers from Docker's list (at start, after every reconnect of the
//! event stream, and every `resync_interval`) and from `/events` (`start`, `die`, `destroy`), so
//! a new container is followed as soon as Docker reports its start. Every selected container that
//! runs, or that stopped with lines not yet read, gets a follower (`sources::logs::follow`); a stopped
//! container keeps its cursor (a restart continues after its old lines), and only `destroy` (or
//! the container missing from a successful list) deletes it.

mod acks;
mod batch;
mod servers;

use crate::export::logs::LogSink;
use crate::sources::containers::docker::Docker;
use crate::sources::logs::budget::Memory;
use crate::sources::logs::cursor::{self, CursorDir, CursorWriter};
use crate::sources::logs::follow::{self, Ctx, Followed};
use crate::sources::logs::select::selected;
use crate::sources::logs::{
    Counters, CursorError, LogsConfig, Position, Selection, Servers, Status, api,
};
use acks::Tracker;
use batch::Delivery;
use opentelemetry_proto::tonic::common::v1::KeyValue;
use parking_lot::Mutex;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use tokio::sync::{Notify, mpsc, watch};
use tokio::task::JoinHandle;

#[derive(Debug, thiserror::Error)]
pub enum LogsError {
    #[error("{0}")]
    Config(String),
    #[error(transparent)]
    Cursors(#[from] CursorError),
}

/// One container in a [`Report`].
#[derive(Debug, Clone, serde::Serialize)]
pub struct ContainerReport {
    pub id: String,
    pub name: String,
    pub server_uuid: Option<String>,
    pub status: Status,
    /// Acknowledged by the sink (what the cursor file says, or is about to).
    pub cursor: Option<Position>,
    /// Handed to the sink.
    pub read: Position,
    pub lines: u64,
    pub bytes: u64,
    pub dropped_budget: u64,
    pub dropped_memory: u64,
    pub dropped_sink: u64,
    pub cut: u64,
    pub decode_errors: u64,
}

/// What the source is doing (for `check` and the agent's own metrics).
#[derive(Debug, Clone, serde::Serialize)]
pub struct Report {
    pub cursor_dir: String,
    pub memory_used: usize,
    pub memory_peak: usize,
    pub memory_limit: usize,
    pub batches: u64,
    pub records: u64,
    pub batches_in_flight: usize,
    pub containers: Vec<ContainerReport>,
}

struct Task {
    handle: JoinHandle<()>,
    stop: watch::Sender<bool>,
    die: Arc<Notify>,
    /// A `start` came while this follower was still running: run again when it ends.
    kick: bool,
}

struct Inner {
    ctx: Arc<Ctx>,
    d: Arc<Delivery>,
    tasks: Mutex<HashMap<String, Task>>,
}

/// The running source. Dropping it stops everything at once, as a crash would (lines not yet
/// acknowledged are read again next time); [`LogsSource::shutdown`] stops it cleanly.
pub struct LogsSource {
    inner: Arc<Inner>,
    stop: watch::Sender<bool>,
    batcher_stop: watch::Sender<bool>,
    handles: Vec<JoinHandle<()>>,
    cursor_dir: String,
}

enum Msg {
    Resync,
    Event(api::Event),
}

impl LogsSource {
    /// Starts following (inside a Tokio runtime). `node` is the node's resource attributes;
    /// `recovered` are positions a durable sink found in its own store (see [`LogSink`]).
    pub fn start(
        cfg: LogsConfig,
        sink: Arc<dyn LogSink>,
        servers: Arc<dyn Servers>,
        node: Vec<KeyValue>,
        recovered: Vec<(String, Position)>,
    ) -> Result<LogsSource, LogsError> {
        cfg.validate().map_err(LogsError::Config)?;
        let dir = cfg.cursor_dir();
        let (cursors, mut acked) = CursorDir::open(&dir)?;
        for (id, p) in recovered {
            acked.entry(id).or_default().merge(&p);
        }
        let (chunk_tx, chunk_rx) = mpsc::unbounded_channel();
        let (ack_tx, ack_rx) = mpsc::unbounded_channel();
        let d = Arc::new(Delivery {
            tracker: Mutex::new(Tracker::default()),
            acks: ack_tx,
            acked: Mutex::new(acked),
            destroyed: Mutex::new(HashMap::new()),
            followed: Mutex::new(HashMap::new()),
            writer: CursorWriter::start(cursors),
            batches: Default::default(),
            records: Default::default(),
        });
        let ctx = Arc::new(Ctx {
            docker: Docker::new(&cfg.docker_host, cfg.request_timeout),
            mem: Memory::new(cfg.memory),
            chunks: chunk_tx,
            servers,
            cfg: cfg.clone(),
        });
        let inner = Arc::new(Inner {
            ctx,
            d: d.clone(),
            tasks: Mutex::new(HashMap::new()),
        });
        let (stop, stop_rx) = watch::channel(false);
        let (batcher_stop, batcher_stop_rx) = watch::channel(false);
        let mut handles = vec![
            tokio::spawn(batch::batcher(
                d.clone(),
                sink,
                node,
                chunk_rx,
                cfg.flush_interval,
                cfg.batch_bytes,
                batcher_stop_rx,
            )),
            tokio::spawn(batch::acknowledgements(d, ack_rx)),
        ];
        if cfg.selection != Selection::Off {
            handles.push(tokio::spawn(supervise(inner.clone(), stop_rx)));
        }
        Ok(LogsSource {
            inner,
            stop,
            batcher_stop,
            handles,
            cursor_dir: dir.display().to_string(),
        })
    }

    pub fn report(&self) -> Report {
        let d = &self.inner.d;
        let acked = d.acked.lock().clone();
        let mut containers: Vec<ContainerReport> = d
            .followed
            .lock()
            .values()
            .map(|f| {
                let who = f.identity.lock().clone();
                let c = &f.counters;
                ContainerReport {
                    id: f.id.clone(),
                    name: who.name.clone(),
                    server_uuid: who.server_uuid.clone(),
                    status: f.status.lock().clone(),
                    cursor: acked.get(&f.id).cloned(),
                    read: f.read_pos.lock().clone(),
                    lines: Counters::get(&c.lines),
                    bytes: Counters::get(&c.bytes),
                    dropped_budget: Counters::get(&c.dropped_budget),
                    dropped_memory: Counters::get(&c.dropped_memory),
                    dropped_sink: Counters::get(&c.dropped_sink),
                    cut: Counters::get(&c.cut),
                    decode_errors: Counters::get(&c.decode_errors),
                }
            })
            .collect();
        containers.sort_by(|a, b| a.name.cmp(&b.name).then(a.id.cmp(&b.id)));
        let (memory_used, memory_peak, memory_limit) = batch::memory_report(&self.inner.ctx.mem);
        Report {
            cursor_dir: self.cursor_dir.clone(),
            memory_used,
            memory_peak,
            memory_limit,
            batches: d.batches.load(Ordering::Relaxed),
            records: d.records.load(Ordering::Relaxed),
            batches_in_flight: d.tracker.lock().in_flight(),
            containers,
        }
    }

    /// Stops the followers, hands the last lines to the sink and waits (up to `grace`) for the
    /// sink's answers and the cursor writes. `true` when everything was acknowledged and written.
    pub async fn shutdown(mut self, grace: Duration) -> bool {
        let deadline = Instant::now() + grace;
        let _ = self.stop.send(true);
        let tasks: Vec<Task> = self.inner.tasks.lock().drain().map(|(_, t)| t).collect();
        for t in &tasks {
            let _ = t.stop.send(true);
        }
        // A follower answers at its next await; one inside a Docker request (bounded by the
        // request timeout) is not waited for past a second.
        let followers_by = tokio::time::Instant::now() + Duration::from_secs(1);
        for t in tasks {
            let abort = t.handle.abort_handle();
            if tokio::time::timeout_at(followers_by, t.handle)
                .await
                .is_err()
            {
                abort.abort();
            }
        }
        let _ = self.batcher_stop.send(true);
        let handles = std::mem::take(&mut self.handles);
        let mut handles = handles.into_iter();
        if let Some(b) = handles.next() {
            let _ = b.await; // the batcher: its last batch is submitted
        }
        let d = self.inner.d.clone();
        while d.tracker.lock().unanswered() > 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // Let the acknowledgement task apply the last answers.
        tokio::time::sleep(Duration::from_millis(50)).await;
        let answered = d.tracker.lock().unanswered() == 0;
        let left = deadline.saturating_duration_since(Instant::now());
        let written = tokio::task::spawn_blocking(move || d.writer.flush(left))
            .await
            .unwrap_or(false);
        for h in handles {
            h.abort();
        }
        answered && written
    }
}

impl Drop for LogsSource {
    fn drop(&mut self) {
        for h in &self.handles {
            h.abort();
        }
        for (_, t) in self.inner.tasks.lock().drain() {
            t.handle.abort();
        }
    }
}

impl Inner {
    fn start_position(&self, id: &str) -> Position {
        self.d.acked.lock().get(id).cloned().unwrap_or_default()
    }

    /// Makes sure a follower runs for `id` (or runs again once the current one ends).
    fn follow(&self, id: &str) {
        let mut tasks = self.tasks.lock();
        if let Some(t) = tasks.get_mut(id)
            && !t.handle.is_finished()
        {
            t.kick = true;
            return;
        }
        let f = {
            let mut followed = self.d.followed.lock();
            followed
                .entry(id.to_string())
                .or_insert_with(|| {
                    Arc::new(Followed::new(id, self.start_position(id), &self.ctx.cfg))
                })
                .clone()
        };
        let (stop, stop_rx) = watch::channel(false);
        let die = Arc::new(Notify::new());
        let handle = tokio::spawn(follow::run(self.ctx.clone(), f, stop_rx, die.clone()));
        tasks.insert(
            id.to_string(),
            Task {
                handle,
                stop,
                die,
                kick: false,
            },
        );
    }

    /// The container is gone: stop its follower and delete its cursor.
    fn forget(&self, id: &str) {
        if let Some(t) = self.tasks.lock().remove(id) {
            let _ = t.stop.send(true);
            t.handle.abort();
        }
        self.d
            .destroyed
            .lock()
            .insert(id.to_string(), Instant::now());
        self.d.acked.lock().remove(id);
        if let Some(f) = self.d.followed.lock().remove(id) {
            *f.status.lock() = Status::Gone;
        }
        self.d.writer.submit([(id.to_string(), None)]);
    }

    fn wanted(&self, id: &str, name: &str, labels: &BTreeMap<String, String>) -> bool {
        selected(self.ctx.cfg.selection, &*self.ctx.servers, id, name, labels)
    }

    fn on_event(&self, e: api::Event) {
        if e.kind != "container" || !cursor::valid_id(&e.actor.id) {
            return;
        }
        let id = e.actor.id.as_str();
        match e.action.as_str() {
            "start" => {
                let name = e.actor.attributes.get("name").cloned().unwrap_or_default();
                if self.wanted(id, &name, &e.actor.attributes) {
                    self.follow(id);
                }
            }
            "die" => {
                if let Some(t) = self.tasks.lock().get(id) {
                    t.die.notify_one();
                }
            }
            "destroy" => self.forget(id),
            _ => {}
        }
    }

    /// Reads the container list: follows what should be, forgets what is gone.
    async fn resync(&self, last_error: &mut Option<String>) {
        let list = match self.ctx.docker.list().await {
            Ok(l) => l,
            Err(e) => {
                let text = e.to_string();
                if last_error.as_deref() != Some(&text) && !e.is_absent() {
                    tracing::warn!(error = %text, "logs: cannot list Docker containers");
                }
                *last_error = Some(text);
                return;
            }
        };
        if last_error.take().is_some() {
            tracing::info!("logs: Docker answers again");
        }
        let mut present = std::collections::HashSet::with_capacity(list.len());
        for s in &list {
            present.insert(s.id.clone());
            let labels = s.labels.clone().unwrap_or_default();
            if !cursor::valid_id(&s.id) || !self.wanted(&s.id, &s.name(), &labels) {
                continue;
            }
            let running = s.state == "running" || s.state == "paused" || s.state == "restarting";
            let done = self
                .d
                .followed
                .lock()
                .get(&s.id)
                .is_some_and(|f| *f.status.lock() == Status::Drained);
            if running || !done {
                self.follow(&s.id);
            }
        }
        let known: Vec<String> = {
            let mut k: Vec<String> = self.d.acked.lock().keys().cloned().collect();
            k.extend(self.d.followed.lock().keys().cloned());
            k
        };
        for id in known {
            if !present.contains(&id) {
                self.forget(&id);
            }
        }
        let hour = Duration::from_secs(3600);
        self.d.destroyed.lock().retain(|_, t| t.elapsed() < hour);
    }

    /// Followers that ended although a `start` came meanwhile run again.
    fn reap(&self) {
        let again: Vec<String> = self
            .tasks
            .lock()
            .iter()
            .filter(|(_, t)| t.kick && t.handle.is_finished())
            .map(|(id, _)| id.clone())
            .collect();
        for id in again {
            self.follow(&id);
        }
    }
}

async fn supervise(inner: Arc<Inner>, mut stop: watch::Receiver<bool>) {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let events = tokio::spawn(events(inner.ctx.clone(), tx, stop.clone()));
    let mut resync = tokio::time::interval(inner.ctx.cfg.resync_interval);
    resync.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut reap = tokio::time::interval(Duration::from_millis(250));
    let mut last_error = None;
    loop {
        tokio::select! {
            _ = stop.changed() => break,
            m = rx.recv() => match m {
                Some(Msg::Resync) => inner.resync(&mut last_error).await,
                Some(Msg::Event(e)) => inner.on_event(e),
                None => break,
            },
            _ = resync.tick() => inner.resync(&mut last_error).await,
            _ = reap.tick() => inner.reap(),
        }
    }
    events.abort();
}

/// Reads `/events`; after every (re)connection asks for a resync so nothing between is missed.
async fn events(ctx: Arc<Ctx>, tx: mpsc::UnboundedSender<Msg>, mut stop: watch::Receiver<bool>) {
    let mut backoff = Duration::from_millis(250);
    let mut last_error: Option<String> = None;
    loop {
        let err = match api::events(&ctx.docker).await {
            Ok(mut resp) => {
                if tx.send(Msg::Resync).is_err() {
                    return;
                }
                if last_error.take().is_some() {
                    tracing::info!("logs: Docker events stream connected again");
                }
                backoff = Duration::from_millis(250);
                let mut lines = api::EventLines::default();
                loop {
                    let next =
                        api::next_within(&mut resp, lines.mid_line(), Duration::from_secs(30));
                    let r = tokio::select! {
                        _ = stop.changed() => return,
                        r = next => r,
                    };
                    match r {
                        Ok(Some(d)) => {
                            let (evs, bad) = lines.feed(&d);
                            if bad > 0 {
                                tracing::debug!(bad, "logs: undecodable Docker events skipped");
                            }
                            for e in evs {
                                if tx.send(Msg::Event(e)).is_err() {
                                    return;
                                }
                            }
                        }
                        Ok(None) => break "the events stream ended".to_string(),
                        Err(e) => break e,
                    }
                }
            }
            Err(e) => e.to_string(),
        };
        if last_error.as_deref() != Some(&err) {
            tracing::warn!(error = %err, "logs: Docker events unavailable; retrying (containers are still found by listing)");
        }
        last_error = Some(err);
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = stop.changed() => return,
        }
        backoff = (backoff * 2).min(Duration::from_secs(30));
    }
}
