//! One container's follower: reads its log from where it was left, as fast as Docker gives it.
//!
//! A pass inspects the container (TTY or not, running or not), asks for the log from the
//! position's `since`, skips what the position says was taken, and hands every new line to the
//! batcher with the position it reaches. A running container's log is followed until the stream
//! ends (the container stopped, or dockerd closed it); then a pass over the stopped container
//! reads what the follow missed (dockerd ends a follow when the container exits, sometimes before
//! the last text the container held was logged) and, the log being complete, ends the lines still
//! open and records the stop (`drained`) so a restart does not read it again. The follower never
//! waits on anything but Docker: lines over the container's budget or the memory bound are
//! dropped and counted, never held. Errors are retried with backoff and logged once per change.

use super::api;
use super::budget::{Budget, Charge, Counters, Memory};
use super::config::LogsConfig;
use super::cursor::{Position, RAISE_MARGIN, Skip};
use super::decode::{DecodeError, Decoder, Line, Stream};
use super::select::{Identity, Servers};
use crate::sources::containers::docker::Docker;
use crate::sys::clock::now_nanos;
use parking_lot::Mutex;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{Notify, mpsc, watch};

/// A TTY line without newline is ended after this much quiet (its piece being short).
const IDLE: Duration = Duration::from_millis(250);
/// Half a message and then nothing for this long: the stream is broken.
const STALL: Duration = Duration::from_secs(30);
/// After a `die` event, a follow stream still open after this is closed by us.
const DIE_GRACE: Duration = Duration::from_secs(10);
/// Bytes already received that are decoded before the lines are handed on.
const READ_BATCH: usize = 256 * 1024;
/// Memory charged per record on top of its text (the record, its attributes, the batch).
pub(crate) const RECORD_OVERHEAD: usize = 160;

/// One line as the source hands it on.
#[derive(Debug, Clone)]
pub(crate) struct Record {
    pub stream: Stream,
    /// Docker's time of the line, Unix ns.
    pub ts: u64,
    /// When the line was read, Unix ns.
    pub observed: u64,
    /// At most the line bound; bytes, as Docker gave them.
    pub body: Vec<u8>,
    /// Bytes left out past the bound (0: whole).
    pub cut: u64,
}

/// What the follower tells the batcher after each read.
pub(crate) struct Chunk {
    pub who: Arc<Followed>,
    pub records: Vec<Record>,
    pub charge: Charge,
    pub pos: Position,
}

/// Shared by the followers and the batcher.
pub(crate) struct Ctx {
    pub cfg: LogsConfig,
    pub docker: Docker,
    pub mem: Arc<Memory>,
    pub chunks: mpsc::UnboundedSender<Chunk>,
    pub servers: Arc<dyn Servers>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    #[default]
    Starting,
    Following,
    /// Stopped and its log read to the end.
    Drained,
    /// Destroyed (its cursor is gone).
    Gone,
    Retrying(String),
}

/// One container as the source knows it, kept from its first sight until Docker destroys it.
pub(crate) struct Followed {
    pub id: String,
    pub identity: Mutex<Arc<Identity>>,
    pub counters: Counters,
    /// The position of everything handed to the batcher: where the next pass starts.
    pub read_pos: Mutex<Position>,
    pub status: Mutex<Status>,
    budget: Mutex<Budget>,
}

impl Followed {
    pub(crate) fn new(id: &str, pos: Position, cfg: &LogsConfig) -> Followed {
        Followed {
            id: id.to_string(),
            identity: Mutex::new(Arc::new(Identity {
                id: id.to_string(),
                ..Default::default()
            })),
            counters: Counters::default(),
            read_pos: Mutex::new(pos),
            status: Mutex::new(Status::Starting),
            budget: Mutex::new(Budget::new(
                cfg.budget_interval,
                cfg.budget_lines,
                cfg.budget_bytes,
                Instant::now(),
            )),
        }
    }

    fn refresh_identity(&self, i: &api::Inspect, servers: &dyn Servers) {
        let server = servers.server(&self.id, i.name(), &i.config.labels);
        let who = Identity {
            id: self.id.clone(),
            name: i.name().to_string(),
            image: i.config.image.clone(),
            server_uuid: server.as_ref().map(|s| s.0.clone()),
            server_name: server.and_then(|s| s.1),
        };
        let mut cur = self.identity.lock();
        if **cur != who {
            *cur = Arc::new(who);
        }
    }

    fn set_status(&self, s: Status) {
        *self.status.lock() = s;
    }

    fn name(&self) -> String {
        let who = self.identity.lock();
        if who.name.is_empty() {
            self.id.chars().take(12).collect()
        } else {
            who.name.clone()
        }
    }
}

enum Pass {
    /// Asked to stop.
    Stopped,
    /// The container is gone.
    Gone,
    /// The stream ended (`bool`: it brought bytes); `Some` holds the decoder and skip state
    /// when it ended cleanly.
    Ended(Option<Box<(Decoder, Skip)>>, bool),
    Failed(String),
}

/// Sleeps, or returns `true` at once when asked to stop.
async fn wait(d: Duration, stop: &mut watch::Receiver<bool>) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(d) => *stop.borrow(),
        _ = stop.changed() => true,
    }
}

/// Follows one container until it stops (and its log is read), is destroyed, or `stop`.
pub(crate) async fn run(
    ctx: Arc<Ctx>,
    f: Arc<Followed>,
    mut stop: watch::Receiver<bool>,
    die: Arc<Notify>,
) {
    let mut pos = f.read_pos.lock().clone();
    let mut backoff = Duration::from_millis(250);
    let mut last_error: Option<String> = None;
    let fail = |f: &Followed, e: String, last: &mut Option<String>| {
        if last.as_deref() != Some(&e) {
            tracing::warn!(container = %f.name(), error = %e, "cannot read the container's log; retrying");
        }
        f.set_status(Status::Retrying(e.clone()));
        *last = Some(e);
    };
    loop {
        if *stop.borrow() {
            return;
        }
        let ins = match api::inspect(&ctx.docker, &f.id).await {
            Ok(i) => i,
            Err(e) if e.is_not_found() => return f.set_status(Status::Gone),
            Err(e) => {
                fail(&f, e.to_string(), &mut last_error);
                if wait(backoff, &mut stop).await {
                    return;
                }
                backoff = (backoff * 2).min(Duration::from_secs(30));
                continue;
            }
        };
        f.refresh_identity(&ins, &*ctx.servers);
        let finished = ins.state.finished_at.clone();
        if !ins.state.running && !finished.is_empty() && pos.drained.as_deref() == Some(&finished) {
            return f.set_status(Status::Drained);
        }
        let tty = ins.config.tty;
        let drain = !ins.state.running;
        if !drain {
            f.set_status(Status::Following);
        }
        match pass(&ctx, &f, &mut pos, tty, drain, &mut stop, &die).await {
            Pass::Stopped => return,
            Pass::Gone => return f.set_status(Status::Gone),
            Pass::Failed(e) => {
                fail(&f, e, &mut last_error);
                if wait(backoff, &mut stop).await {
                    return;
                }
                backoff = (backoff * 2).min(Duration::from_secs(30));
            }
            Pass::Ended(dec, read_any) => {
                if last_error.take().is_some() {
                    tracing::info!(container = %f.name(), "reading the container's log again");
                }
                let Some(ended) = dec.filter(|_| drain) else {
                    // A follow ended: the next pass says whether the container stopped. One that
                    // keeps ending with nothing read (a daemon closing at once) is not spun on.
                    if read_any {
                        backoff = Duration::from_millis(250);
                    } else {
                        if wait(backoff, &mut stop).await {
                            return;
                        }
                        backoff = (backoff * 2).min(Duration::from_secs(30));
                    }
                    continue;
                };
                let (mut dec, mut skip) = *ended;
                // The stopped container's log was read to its end, unless it started again.
                match api::inspect(&ctx.docker, &f.id).await {
                    Ok(i) if !i.state.running && i.state.finished_at == finished => {
                        let mut lines = Vec::new();
                        if dec.finish(&mut lines) {
                            let chunk = process(&ctx, &f, lines, &mut skip, &mut pos);
                            pos.drained = Some(finished);
                            send(&ctx, &f, chunk, &pos);
                            return f.set_status(Status::Drained);
                        }
                        // The log of a stopped container ended inside a message: read it again,
                        // not in a tight loop.
                        Counters::add(&f.counters.decode_errors, 1);
                        fail(&f, "the log ended inside a message".into(), &mut last_error);
                        if wait(backoff, &mut stop).await {
                            return;
                        }
                        backoff = (backoff * 2).min(Duration::from_secs(30));
                    }
                    Ok(_) => {}
                    Err(e) if e.is_not_found() => return f.set_status(Status::Gone),
                    Err(e) => fail(&f, e.to_string(), &mut last_error),
                }
            }
        }
    }
}

/// One request: reads until the stream ends, fails, or `stop`.
async fn pass(
    ctx: &Ctx,
    f: &Arc<Followed>,
    pos: &mut Position,
    tty: bool,
    drain: bool,
    stop: &mut watch::Receiver<bool>,
    die: &Notify,
) -> Pass {
    let since = if *pos == Position::default() {
        ctx.cfg
            .backfill
            .map(|b| now_nanos().saturating_sub(b.as_nanos() as u64))
            .unwrap_or(0)
    } else {
        pos.since(tty)
    };
    tracing::debug!(container = %f.name(), since, follow = !drain, "reading the log");
    let mut resp = match api::logs(&ctx.docker, &f.id, since, !drain).await {
        Ok(r) => r,
        Err(e) if e.is_not_found() => return Pass::Gone,
        Err(e) => return Pass::Failed(e.to_string()),
    };
    let mut dec = Decoder::new(tty, ctx.cfg.max_line, ctx.mem.clone());
    let mut skip = Skip::new(pos);
    let mut lines: Vec<Line> = Vec::new();
    let mut die_at: Option<tokio::time::Instant> = None;
    let mut errors = 0;
    let mut read_any = false;
    loop {
        let idle = tty && dec.is_open(Stream::Stdout);
        let mid = dec.mid_message();
        let next = api::next_within(&mut resp, mid, STALL);
        tokio::select! {
            biased;
            _ = stop.changed() => return Pass::Stopped,
            _ = die.notified(), if die_at.is_none() => {
                die_at = Some(tokio::time::Instant::now() + DIE_GRACE);
                continue;
            }
            _ = tokio::time::sleep_until(die_at.unwrap_or_else(tokio::time::Instant::now)), if die_at.is_some() => {
                return Pass::Ended(None, read_any);
            }
            r = tokio::time::timeout(if idle { IDLE } else { Duration::MAX }, next) => {
                let mut next = match r {
                    Err(_) => {
                        dec.idle(&mut lines);
                        None
                    }
                    Ok(r) => Some(r),
                };
                // Docker writes one HTTP chunk per message: take what is already there, up to
                // READ_BATCH bytes, before handing the lines on, so a busy container costs one
                // hand-off per batch of lines, not per line.
                let mut room = READ_BATCH;
                while let Some(r) = next.take() {
                    match r {
                        Ok(Some(data)) => {
                            read_any = true;
                            match dec.feed(&data, &mut lines) {
                                Ok(()) => {}
                                Err(DecodeError::Daemon(m)) => {
                                    flush(ctx, f, &mut lines, &mut skip, pos, &dec, tty);
                                    return Pass::Failed(format!("daemon: {m}"));
                                }
                                Err(e) => {
                                    Counters::add(&f.counters.decode_errors, 1);
                                    return Pass::Failed(e.to_string());
                                }
                            }
                            room = room.saturating_sub(data.len());
                            if room > 0 {
                                next = api::ready_data(&mut resp).await;
                            }
                        }
                        Ok(None) => {
                            flush(ctx, f, &mut lines, &mut skip, pos, &dec, tty);
                            return Pass::Ended(Some(Box::new((dec, skip))), read_any);
                        }
                        Err(e) => return Pass::Failed(format!("reading the log stream: {e}")),
                    }
                }
            }
        }
        let e = dec.errors();
        if e > errors {
            Counters::add(&f.counters.decode_errors, e - errors);
            errors = e;
        }
        flush(ctx, f, &mut lines, &mut skip, pos, &dec, tty);
    }
}

/// Turns finished lines into records, moves quiet streams up, and hands the chunk on.
fn flush(
    ctx: &Ctx,
    f: &Arc<Followed>,
    lines: &mut Vec<Line>,
    skip: &mut Skip,
    pos: &mut Position,
    dec: &Decoder,
    tty: bool,
) {
    let before = pos.clone();
    let chunk = process(ctx, f, std::mem::take(lines), skip, pos);
    let max = dec.max_ts();
    if !tty && max > RAISE_MARGIN {
        for s in [Stream::Stdout, Stream::Stderr] {
            if !dec.is_open(s) {
                pos.raise(s, max - RAISE_MARGIN);
            }
        }
    }
    if !chunk.0.is_empty() || *pos != before {
        send(ctx, f, chunk, pos);
    }
}

fn process(
    ctx: &Ctx,
    f: &Followed,
    lines: Vec<Line>,
    skip: &mut Skip,
    pos: &mut Position,
) -> (Vec<Record>, Charge) {
    let mut records = Vec::with_capacity(lines.len());
    let mut charge = Charge::new(&ctx.mem, 0);
    if lines.is_empty() {
        return (records, charge);
    }
    let observed = now_nanos();
    let now = Instant::now();
    let c = &f.counters;
    let name = f.name();
    let mut budget = f.budget.lock();
    for line in lines {
        if skip.skip(line.stream, line.ts) {
            continue;
        }
        pos.advance(line.stream, line.ts);
        let size = line.body.len() as u64 + line.cut;
        Counters::add(&c.lines, 1);
        Counters::add(&c.bytes, size);
        if !budget.admit(size as usize, now, &name) {
            Counters::add(&c.dropped_budget, 1);
            continue;
        }
        let extra = ctx.mem.charge_upto(RECORD_OVERHEAD);
        if (line.body.is_empty() && line.cut > 0) || extra < RECORD_OVERHEAD {
            ctx.mem.release(extra);
            Counters::add(&c.dropped_memory, 1);
            continue;
        }
        charge.absorb(Charge::new(&ctx.mem, extra));
        if line.cut > 0 {
            Counters::add(&c.cut, 1);
        }
        let Line {
            stream,
            ts,
            body,
            cut,
            charge: c,
        } = line;
        charge.absorb(c);
        records.push(Record {
            stream,
            ts,
            observed,
            body,
            cut,
        });
    }
    (records, charge)
}

fn send(ctx: &Ctx, f: &Arc<Followed>, (records, charge): (Vec<Record>, Charge), pos: &Position) {
    *f.read_pos.lock() = pos.clone();
    let _ = ctx.chunks.send(Chunk {
        who: f.clone(),
        records,
        charge,
        pos: pos.clone(),
    });
}
