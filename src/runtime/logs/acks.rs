//! The order of the sink's answers: cursors move only over a prefix of batches that are all
//! answered, whatever order the answers come in.

use crate::export::logs::Outcome;
use crate::sources::logs::Position;
use std::collections::{BTreeMap, HashMap};

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
    use crate::sources::logs::Stream;

    fn inflight(id: &str, ts: u64) -> InFlight {
        let mut p = Position::default();
        p.advance(Stream::Stdout, ts);
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
}
