//! The seam between the logs signal and delivery (the agent's queue and spool plug in here).
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
//! `runtime::logs::LogsSource::start` (`recovered`): the cursor files are written right after each
//! acknowledgement, but a kill between the sink's write and the cursor's would otherwise read
//! that batch again.

use crate::sources::logs::Position;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
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

#[cfg(test)]
mod tests {
    use super::*;

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
