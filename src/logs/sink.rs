//! The seam between the logs source and delivery.
//!
//! The source hands the sink a [`LogBatch`]: one OTLP request (one Resource per container) and
//! the position each container's log reaches once this batch is safe. The sink must take it at
//! once (no waiting on the network or the disk in [`LogSink::submit`]: the source never slows
//! down reading Docker's streams) and later answer through the batch's [`Ack`]:
//! [`Ack::durable`] once the records are delivered or spooled, [`Ack::dropped`] when it gave up on
//! them (it counts and logs that loss itself). Only then may the cursors move past them. An `Ack`
//! dropped unanswered (the sink or the process going away) holds the cursors back: those lines
//! are read again after a restart.
//!
//! Acks may come in any order; the source advances over the longest prefix of batches that are
//! all answered. For exactly-once across a `kill -9` a sink that keeps batches on disk stores each
//! batch's `positions` with it and hands the newest positions of its durable prefix back to
//! [`super::LogsSource::start`] (`recovered`): the cursor files are written right after each
//! acknowledgement, but a kill between the sink's write and the cursor's would otherwise read
//! that batch again.

use super::cursor::Position;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use std::collections::{BTreeMap, HashMap};
use tokio::sync::mpsc;

/// Where batches of log records go.
pub trait LogSink: Send + Sync + 'static {
    /// Takes one batch; returns at once.
    fn submit(&self, batch: LogBatch);
}

/// One batch: the request, the container positions it completes, and its acknowledgement.
pub struct LogBatch {
    pub request: ExportLogsServiceRequest,
    /// Log records in `request`.
    pub records: usize,
    /// Container ID → the position its log reaches when this batch (and every earlier one) is
    /// safe.
    pub positions: Vec<(String, Position)>,
    pub ack: Ack,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    Durable,
    Dropped,
    Abandoned,
}

/// Answers one batch. See the module docs.
pub struct Ack {
    seq: u64,
    tx: Option<mpsc::UnboundedSender<(u64, Outcome)>>,
}

impl Ack {
    pub(crate) fn new(seq: u64, tx: mpsc::UnboundedSender<(u64, Outcome)>) -> Ack {
        Ack { seq, tx: Some(tx) }
    }

    /// The batch's sequence number (increasing in submission order).
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// Delivered or spooled: the cursors may move past this batch.
    pub fn durable(mut self) {
        self.send(Outcome::Durable);
    }

    /// The sink gave up on this batch (and counted it): the cursors move on.
    pub fn dropped(mut self) {
        self.send(Outcome::Dropped);
    }

    fn send(&mut self, o: Outcome) {
        if let Some(tx) = self.tx.take() {
            let _ = tx.send((self.seq, o));
        }
    }
}

impl Drop for Ack {
    fn drop(&mut self) {
        self.send(Outcome::Abandoned);
    }
}

impl std::fmt::Debug for Ack {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Ack({})", self.seq)
    }
}

/// A submitted batch waiting for its answer.
pub(crate) struct InFlight {
    pub positions: Vec<(String, Position)>,
    /// Records per container, to count a dropped batch against them.
    pub records: Vec<(String, u64)>,
    pub outcome: Option<Outcome>,
}

/// Orders acknowledgements: what is released is always a prefix of the batches submitted.
#[derive(Default)]
pub(crate) struct Tracker {
    next: u64,
    waiting: BTreeMap<u64, InFlight>,
    stuck_logged: bool,
}

impl Tracker {
    pub(crate) fn register(&mut self, f: InFlight) -> u64 {
        let seq = self.next;
        self.next += 1;
        self.waiting.insert(seq, f);
        seq
    }

    /// Records an answer; returns the batches now released, in order.
    pub(crate) fn answer(&mut self, seq: u64, o: Outcome) -> Vec<InFlight> {
        if let Some(f) = self.waiting.get_mut(&seq)
            && f.outcome.is_none()
        {
            f.outcome = Some(o);
        }
        let mut out = Vec::new();
        while let Some(entry) = self.waiting.first_entry() {
            match entry.get().outcome {
                Some(Outcome::Durable | Outcome::Dropped) => out.push(entry.remove()),
                Some(Outcome::Abandoned) => {
                    if !self.stuck_logged {
                        tracing::warn!(
                            batch = *entry.key(),
                            "a log batch was never acknowledged by the sink: cursors are held there and those lines will be read again after a restart"
                        );
                        self.stuck_logged = true;
                    }
                    break;
                }
                None => break,
            }
        }
        out
    }

    pub(crate) fn in_flight(&self) -> usize {
        self.waiting.len()
    }

    /// Batches not answered yet (abandoned ones count: they never will be).
    pub(crate) fn unanswered(&self) -> usize {
        self.waiting
            .values()
            .filter(|f| f.outcome.is_none())
            .count()
    }
}

/// Folds released batches into the latest position per container.
pub(crate) fn fold(released: &[InFlight]) -> HashMap<String, Position> {
    let mut m: HashMap<String, Position> = HashMap::new();
    for f in released {
        for (id, p) in &f.positions {
            m.insert(id.clone(), p.clone());
        }
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inflight(id: &str, ts: u64) -> InFlight {
        let mut p = Position::default();
        p.advance(super::super::decode::Stream::Stdout, ts);
        InFlight {
            positions: vec![(id.into(), p)],
            records: vec![(id.into(), 1)],
            outcome: None,
        }
    }

    #[test]
    fn releases_only_answered_prefixes() {
        let mut t = Tracker::default();
        let a = t.register(inflight("a", 1));
        let b = t.register(inflight("a", 2));
        let c = t.register(inflight("a", 3));
        assert!(t.answer(b, Outcome::Durable).is_empty());
        let r = t.answer(a, Outcome::Dropped);
        assert_eq!(r.len(), 2);
        assert_eq!(fold(&r)["a"].stdout.ts, 2);
        assert!(t.answer(c, Outcome::Abandoned).is_empty());
        assert_eq!(t.in_flight(), 1);
        assert_eq!(t.unanswered(), 0);
    }

    #[test]
    fn ack_answers_once_and_drop_abandons() {
        let (tx, mut rx) = mpsc::unbounded_channel();
        Ack::new(1, tx.clone()).durable();
        drop(Ack::new(2, tx.clone()));
        Ack::new(3, tx).dropped();
        assert_eq!(rx.try_recv().unwrap(), (1, Outcome::Durable));
        assert_eq!(rx.try_recv().unwrap(), (2, Outcome::Abandoned));
        assert_eq!(rx.try_recv().unwrap(), (3, Outcome::Dropped));
        assert!(rx.try_recv().is_err());
    }
}
