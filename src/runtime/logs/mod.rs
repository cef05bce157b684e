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
    ContainerReport, Counters, CursorError, LogsConfig, Position, Report, Selection, Servers,
    Status, api,
};
use acks::Tracker;
use batch::Delivery;
use opentelemetry_proto::tonic::common::v1::KeyValue;
use parking_lot::{Mutex, RwLock};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use tokio::sync::{Notify, mpsc, watch};
use tokio::task::JoinHandle;

#[derive(Debug, thiserror::Error)]
pub enum LogsError {
    #[error(transparent)]
    Config(#[from] crate::sources::logs::LogsConfigError),
    #[error(transparent)]
    Cursors(#[from] CursorError),
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
    /// Which containers are followed (changed live by [`LogsSource::set_selection`]).
    selection: Mutex<Selection>,
    /// Asks the supervisor to read the container list now.
    resync_now: Notify,
}

/// The supervisor task and its stop switch, while the selection is not `off`.
type Supervisor = (JoinHandle<()>, watch::Sender<bool>);

/// The running source. Dropping it stops everything at once, as a crash would (lines not yet
/// acknowledged are read again next time); [`LogsSource::shutdown`] stops it cleanly.
pub struct LogsSource {
    inner: Arc<Inner>,
    /// The node's resource attributes, put on every container's Resource.
    node: Arc<RwLock<Vec<KeyValue>>>,
    supervisor: Mutex<Option<Supervisor>>,
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
        let node = Arc::new(RwLock::new(node));
        let dir = cfg.cursor_dir();
        let (cursors, mut acked) = CursorDir::open(&dir)?;
        // Positions the sink still holds batches for, ahead of the files: written to the files
        // now, as the sink forgets those batches once it delivers them.
        let mut ahead = Vec::new();
        for (id, p) in recovered {
            if !cursor::valid_id(&id) {
                continue;
            }
            let pos = acked.entry(id.clone()).or_default();
            let before = pos.clone();
            pos.merge(&p);
            if *pos != before {
                ahead.push((id, Some(pos.clone())));
            }
        }
        if let Err(e) = cursors.write(&ahead) {
            tracing::error!(error = %e, "cannot write log cursors: a restart would read those lines again");
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
            selection: Mutex::new(cfg.selection),
            resync_now: Notify::new(),
        });
        let (batcher_stop, batcher_stop_rx) = watch::channel(false);
        let handles = vec![
            tokio::spawn(batch::batcher(
                d.clone(),
                sink.clone(),
                node.clone(),
                chunk_rx,
                cfg.flush_interval,
                cfg.batch_bytes,
                batcher_stop_rx,
            )),
            tokio::spawn(batch::acknowledgements(d, ack_rx)),
        ];
        let supervisor = (cfg.selection != Selection::Off).then(|| start_supervisor(&inner));
        Ok(LogsSource {
            inner,
            node,
            supervisor: Mutex::new(supervisor),
            batcher_stop,
            handles,
            cursor_dir: dir.display().to_string(),
        })
    }

    /// Changes which containers are followed, at once: newly selected ones are followed from
    /// their cursors (or the start of what Docker holds), followers of containers no longer
    /// selected stop (their cursors stay: selected again, they continue where they were);
    /// `off` stops every follower and every Docker call.
    pub fn set_selection(&self, selection: Selection) {
        let old = std::mem::replace(&mut *self.inner.selection.lock(), selection);
        if old == selection {
            return;
        }
        tracing::info!(
            from = old.name(),
            to = selection.name(),
            "logs: the container selection changed"
        );
        let mut sup = self.supervisor.lock();
        if selection == Selection::Off {
            if let Some((handle, stop)) = sup.take() {
                let _ = stop.send(true);
                handle.abort();
            }
            let ids: Vec<String> = self.inner.tasks.lock().keys().cloned().collect();
            for id in ids {
                self.inner.unfollow(&id);
            }
        } else if sup.is_none() {
            *sup = Some(start_supervisor(&self.inner));
        } else {
            self.inner.resync_now.notify_one();
        }
    }

    /// New resource attributes of the node (a remote configuration changed them): the next
    /// batch carries them.
    pub fn set_node(&self, node: Vec<KeyValue>) {
        *self.node.write() = node;
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
                    image: who.image.clone(),
                    server_uuid: who.server_uuid.clone(),
                    status: f.status.lock().clone(),
                    cursor: acked.get(&f.id).cloned(),
                    read: f.read_pos.lock().clone(),
                    lines: Counters::get(&c.lines),
                    bytes: Counters::get(&c.bytes),
                    sent: Counters::get(&c.sent),
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
            selection: *self.inner.selection.lock(),
            cursor_dir: self.cursor_dir.clone(),
            cursor_error: d.writer.error(),
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
        if let Some((handle, stop)) = self.supervisor.lock().take() {
            let _ = stop.send(true);
            handle.abort();
        }
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
        if let Some((handle, _)) = self.supervisor.lock().take() {
            handle.abort();
        }
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

    /// The container is no longer selected: stop its follower; its cursor stays.
    fn unfollow(&self, id: &str) {
        if let Some(t) = self.tasks.lock().remove(id) {
            let _ = t.stop.send(true);
        }
        self.d.followed.lock().remove(id);
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
        let selection = *self.selection.lock();
        selected(selection, &*self.ctx.servers, id, name, labels)
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
        let mut unwanted = Vec::new();
        for s in &list {
            present.insert(s.id.clone());
            let labels = s.labels.clone().unwrap_or_default();
            if !cursor::valid_id(&s.id) || !self.wanted(&s.id, &s.name(), &labels) {
                unwanted.push(s.id.as_str());
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
        for id in unwanted {
            if self.tasks.lock().contains_key(id) || self.d.followed.lock().contains_key(id) {
                self.unfollow(id);
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

    /// Whether a follower waits to be started again once its task has finished.
    fn kicked(&self) -> bool {
        self.tasks.lock().values().any(|t| t.kick)
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

fn start_supervisor(inner: &Arc<Inner>) -> Supervisor {
    let (stop, stop_rx) = watch::channel(false);
    (tokio::spawn(supervise(inner.clone(), stop_rx)), stop)
}

async fn supervise(inner: Arc<Inner>, mut stop: watch::Receiver<bool>) {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let events = tokio::spawn(events(inner.ctx.clone(), tx, stop.clone()));
    let mut resync = tokio::time::interval(inner.ctx.cfg.resync_interval);
    resync.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut reap = tokio::time::interval(Duration::from_millis(250));
    // Idle for hours between kicks: one tick on return, not a burst of the missed ones.
    reap.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
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
            _ = inner.resync_now.notified() => inner.resync(&mut last_error).await,
            // Only while a follower was asked to start again once it has finished: a quiet
            // node has no timer ticking four times a second.
            _ = reap.tick(), if inner.kicked() => inner.reap(),
        }
    }
    events.abort();
}

/// How long an events stream must have lived to count as healthy when it ends without an event.
const EVENTS_HEALTHY_AFTER: Duration = Duration::from_secs(10);

/// The events stream's reconnection state: the backoff and the last error (warned once).
///
/// A stream that ends at once (a proxy that closes `/events`) is a failure like any other: the
/// backoff and the one warning stay until a stream has delivered an event or lived
/// [`EVENTS_HEALTHY_AFTER`]; otherwise the agent would reconnect, and resync every container,
/// four times a second.
struct Reconnect {
    backoff: Duration,
    last_error: Option<String>,
}

impl Reconnect {
    const FIRST: Duration = Duration::from_millis(250);
    const MAX: Duration = Duration::from_secs(30);

    fn new() -> Reconnect {
        Reconnect {
            backoff: Self::FIRST,
            last_error: None,
        }
    }

    /// The stream works: the next failure starts from the first backoff. True when it had been
    /// failing (say it is back).
    fn healthy(&mut self) -> bool {
        self.backoff = Self::FIRST;
        self.last_error.take().is_some()
    }

    /// A connection failed or a stream ended after `lived` (`None`: it never connected). Returns
    /// whether to warn (a new error) and how long to wait before the next try.
    fn failed(&mut self, err: String, lived: Option<Duration>) -> (bool, Duration) {
        if lived.is_some_and(|l| l >= EVENTS_HEALTHY_AFTER) {
            self.healthy();
        }
        let warn = self.last_error.as_deref() != Some(&err);
        self.last_error = Some(err);
        let wait = self.backoff;
        self.backoff = (self.backoff * 2).min(Self::MAX);
        (warn, wait)
    }
}

/// Reads `/events`; after every (re)connection asks for a resync so nothing between is missed.
async fn events(ctx: Arc<Ctx>, tx: mpsc::UnboundedSender<Msg>, mut stop: watch::Receiver<bool>) {
    let mut state = Reconnect::new();
    loop {
        // No Docker on this node at all: nothing to warn about (the list is silent too).
        let mut absent = false;
        let mut lived = None;
        let err = match api::events(&ctx.docker).await {
            Ok(mut resp) => {
                if tx.send(Msg::Resync).is_err() {
                    return;
                }
                let connected = tokio::time::Instant::now();
                let mut lines = api::EventLines::default();
                let err = loop {
                    let next =
                        api::next_within(&mut resp, lines.mid_line(), Duration::from_secs(30));
                    let r = tokio::select! {
                        _ = stop.changed() => return,
                        r = next => r,
                    };
                    match r {
                        Ok(Some(d)) => {
                            if state.healthy() {
                                tracing::info!("logs: Docker events stream connected again");
                            }
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
                        Err(e) => break e.to_string(),
                    }
                };
                lived = Some(connected.elapsed());
                err
            }
            Err(e) => {
                absent = e.is_absent();
                e.to_string()
            }
        };
        let (warn, wait) = state.failed(err.clone(), lived);
        if warn && !absent {
            tracing::warn!(error = %err, retry_in = ?wait, "logs: Docker events unavailable; retrying (containers are still found by listing)");
        }
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = stop.changed() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_events_stream_that_ends_at_once_backs_off_and_warns_once() {
        let mut r = Reconnect::new();
        let at_once = Some(Duration::from_millis(5));
        let mut waits = vec![];
        let mut warned = 0;
        for _ in 0..10 {
            let (warn, wait) = r.failed("the events stream ended".into(), at_once);
            warned += usize::from(warn);
            waits.push(wait.as_millis());
        }
        assert_eq!(warned, 1);
        assert_eq!(
            waits,
            [250, 500, 1000, 2000, 4000, 8000, 16000, 30000, 30000, 30000]
        );
        // A stream that lived a while was healthy: its end retries soon, and says so once.
        let (warn, wait) = r.failed("the events stream ended".into(), Some(EVENTS_HEALTHY_AFTER));
        assert!(warn);
        assert_eq!(wait, Reconnect::FIRST);
        // An event resets too; a connection refused keeps backing off, warned once per error.
        r.failed("refused".into(), None);
        assert!(r.healthy());
        assert!(!r.healthy());
        assert_eq!(r.failed("refused".into(), None), (true, Reconnect::FIRST));
        assert!(!r.failed("refused".into(), None).0);
    }
}
