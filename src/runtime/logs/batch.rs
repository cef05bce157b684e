//! The batcher: gathers the followers' records into one request per flush interval (or sooner
//! when it reaches its size), hands it to the sink, and turns the sink's acknowledgements into
//! cursor writes.
//!
//! Records from all containers share a batch (one Resource per container inside it), so a
//! thousand quiet containers cost one request per interval, not a thousand. The memory charged
//! for the records is given back once the sink has the batch. A batch with no records (only
//! positions moved: replays skipped, lines dropped over budget) needs no sink and is
//! acknowledged here, in order with the others. Positions of a destroyed container are never
//! written back (its cursor was deleted).

use super::acks::{InFlight, Tracker, fold};
use crate::export::logs::{Ack, LogBatch, LogSink, Outcome};
use crate::sources::logs::Counters;
use crate::sources::logs::budget::{Charge, Memory};
use crate::sources::logs::cursor::{CursorWriter, Position};
use crate::sources::logs::follow::{Chunk, Followed, Record};
use opentelemetry_proto::tonic::common::v1::KeyValue;
use parking_lot::{Mutex, RwLock};
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::{mpsc, watch};

/// State the batcher, the acknowledgement task and the supervisor share.
pub(crate) struct Delivery {
    pub tracker: Mutex<Tracker>,
    pub acks: mpsc::UnboundedSender<(u64, Outcome)>,
    /// The latest acknowledged position per container (what the cursor files say, or are about
    /// to).
    pub acked: Mutex<HashMap<String, Position>>,
    /// Containers destroyed: their positions are not written back.
    pub destroyed: Mutex<HashMap<String, std::time::Instant>>,
    pub followed: Mutex<HashMap<String, Arc<Followed>>>,
    pub writer: CursorWriter,
    pub batches: AtomicU64,
    pub records: AtomicU64,
}

#[derive(Default)]
struct Pending {
    groups: Vec<(Arc<Followed>, Vec<Record>)>,
    index: HashMap<String, usize>,
    positions: HashMap<String, Position>,
    charge: Option<Charge>,
    records: usize,
}

impl Pending {
    fn add(&mut self, c: Chunk) {
        let Chunk {
            who,
            records,
            charge,
            pos,
        } = c;
        self.positions.insert(who.id.clone(), pos);
        self.records += records.len();
        match &mut self.charge {
            Some(total) => total.absorb(charge),
            None => self.charge = Some(charge),
        }
        if records.is_empty() {
            return;
        }
        match self.index.get(&who.id) {
            Some(&i) => self.groups[i].1.extend(records),
            None => {
                self.index.insert(who.id.clone(), self.groups.len());
                self.groups.push((who, records));
            }
        }
    }

    fn bytes(&self) -> usize {
        self.charge.as_ref().map_or(0, Charge::bytes)
    }

    fn is_empty(&self) -> bool {
        self.positions.is_empty()
    }
}

fn submit(d: &Delivery, sink: &dyn LogSink, node: &[KeyValue], p: Pending) {
    let counts: Vec<(String, u64)> = p
        .groups
        .iter()
        .map(|(f, r)| (f.id.clone(), r.len() as u64))
        .collect();
    let idents: Vec<_> = p
        .groups
        .iter()
        .map(|(f, _)| f.identity.lock().clone())
        .collect();
    let positions: Vec<(String, Position)> = p.positions.into_iter().collect();
    let seq = d.tracker.lock().register(InFlight {
        positions: positions.clone(),
        records: counts,
        outcome: None,
    });
    let ack = Ack::new(seq, d.acks.clone());
    if p.records == 0 {
        ack.durable();
        return;
    }
    let groups = idents
        .iter()
        .map(|i| &**i)
        .zip(p.groups.into_iter().map(|(_, r)| r))
        .collect();
    let request = crate::otlp::logs::request(node, groups);
    d.batches.fetch_add(1, Ordering::Relaxed);
    d.records.fetch_add(p.records as u64, Ordering::Relaxed);
    sink.submit(LogBatch {
        request,
        records: p.records,
        positions,
        ack,
    });
    drop(p.charge);
}

/// Runs until `stop`, then flushes what it has.
pub(crate) async fn batcher(
    d: Arc<Delivery>,
    sink: Arc<dyn LogSink>,
    node: Arc<RwLock<Vec<KeyValue>>>,
    mut rx: mpsc::UnboundedReceiver<Chunk>,
    interval: Duration,
    max_bytes: usize,
    mut stop: watch::Receiver<bool>,
) {
    let mut p = Pending::default();
    // Armed by the first chunk of a batch: a batch waits at most `interval`, and a quiet node
    // has no timer ticking twice a second for nothing.
    let flush = tokio::time::sleep(interval);
    tokio::pin!(flush);
    loop {
        tokio::select! {
            c = rx.recv() => match c {
                Some(c) => {
                    if p.is_empty() {
                        flush.as_mut().reset(tokio::time::Instant::now() + interval);
                    }
                    p.add(c);
                    if p.bytes() >= max_bytes {
                        submit(&d, &*sink, &node.read(), std::mem::take(&mut p));
                    }
                }
                None => break,
            },
            _ = &mut flush, if !p.is_empty() => {
                submit(&d, &*sink, &node.read(), std::mem::take(&mut p));
            }
            _ = stop.changed() => break,
        }
    }
    while let Ok(c) = rx.try_recv() {
        p.add(c);
    }
    if !p.is_empty() {
        submit(&d, &*sink, &node.read(), p);
    }
}

/// Applies the sink's answers: released batches move the acknowledged positions and the cursor
/// files; dropped ones count against their containers.
pub(crate) async fn acknowledgements(
    d: Arc<Delivery>,
    mut rx: mpsc::UnboundedReceiver<(u64, Outcome)>,
) {
    while let Some((seq, outcome)) = rx.recv().await {
        let released = d.tracker.lock().answer(seq, outcome);
        if released.is_empty() {
            continue;
        }
        {
            let followed = d.followed.lock();
            for f in &released {
                for (id, n) in &f.records {
                    if let Some(c) = followed.get(id) {
                        if f.outcome == Some(Outcome::Dropped) {
                            Counters::add(&c.counters.dropped_sink, *n);
                        } else {
                            Counters::add(&c.counters.sent, *n);
                        }
                    }
                }
            }
        }
        let moved = fold(&released);
        let destroyed = d.destroyed.lock();
        let mut acked = d.acked.lock();
        let mut writes = Vec::new();
        for (id, pos) in moved {
            if destroyed.contains_key(&id) || acked.get(&id) == Some(&pos) {
                continue;
            }
            acked.insert(id.clone(), pos.clone());
            writes.push((id, Some(pos)));
        }
        drop((acked, destroyed));
        if !writes.is_empty() {
            d.writer.submit(writes);
        }
    }
}

/// The memory figures for reports.
pub(crate) fn memory_report(m: &Memory) -> (usize, usize, usize) {
    (m.used(), m.peak(), m.limit())
}
