use super::*;
use crate::export::stats::{DropReason, Settled};
use parking_lot::Mutex;

fn lane(memory: u64, spool: bool) -> Lane {
    lane_with(memory, false, spool)
}

fn lane_with(memory: u64, auto: bool, spool: bool) -> Lane {
    let mut l = Lane::new(
        Signal::Metrics,
        LaneBudget {
            memory_bytes: memory,
            memory_auto: auto,
            spool_max_bytes: 1 << 20,
        },
        spool,
        Arc::default(),
    );
    if spool {
        l.recovered(Vec::new(), Instant::now());
    }
    l
}

fn rec(i: u8) -> Bytes {
    Bytes::from(vec![i; 100])
}

fn balanced(l: &mut Lane) {
    l.check();
    let c = l.snapshot();
    assert!(c.balanced(), "{c:?}");
}

/// Writes everything that wants writing, at fake places.
fn write_all(l: &mut Lane, now: Instant) -> Vec<u64> {
    let mut seqs = Vec::new();
    while let Some((seq, p, _, b)) = l.next_write() {
        let off = seqs.len() as u64 * 200;
        l.stored(seq, 1, off, p.len() as u64 + 16, b, now);
        seqs.push(seq);
    }
    seqs
}

/// The first byte of each batch of the attempt.
fn attempt(l: &Lane) -> Vec<u8> {
    l.request().chunks(100).map(|c| c[0]).collect()
}

#[test]
fn prompt_delivery_touches_no_disk() {
    let now = Instant::now();
    let mut l = lane(10_000, true);
    for i in 0..3 {
        l.push(rec(i), Bytes::new(), 1, None, now);
    }
    assert!(l.next_write().is_none(), "memory is the fast path");
    assert_eq!(l.take(1000), Take::Ready);
    assert_eq!(attempt(&l), vec![0, 1, 2]);
    l.attempt_sent(now);
    assert!(l.is_empty());
    assert_eq!(l.snapshot().sent, 3);
    balanced(&mut l);
}

#[test]
fn a_failure_writes_everything_ahead_in_order_and_hooks_hear_spooled() {
    let now = Instant::now();
    let mut l = lane(10_000, true);
    let heard = Arc::new(Mutex::new(Vec::new()));
    for i in 0..3 {
        let h = heard.clone();
        l.push(
            rec(i),
            Bytes::new(),
            1,
            Some(Box::new(move |s| h.lock().push((i, s)))),
            now,
        );
    }
    assert_eq!(l.take(150), Take::Ready);
    assert_eq!(attempt(&l), vec![0]);
    l.attempt_failed(now);
    // The in-flight batch first, then the rest, then every new one at once.
    assert_eq!(
        write_all(&mut l, now),
        vec![FIRST_NEW_SEQ, FIRST_NEW_SEQ + 1, FIRST_NEW_SEQ + 2]
    );
    l.push(rec(3), Bytes::new(), 1, None, now);
    assert_eq!(write_all(&mut l, now), vec![FIRST_NEW_SEQ + 3]);
    for fx in l.take_effects().hooks {
        (fx.0)(fx.1);
    }
    assert_eq!(
        *heard.lock(),
        (0..3).map(|i| (i, Settled::Spooled)).collect::<Vec<_>>()
    );
    assert_eq!(l.unprotected(), 0);
    // Delivered: the commit covers exactly what was sent.
    l.attempt_sent(now);
    assert_eq!(l.plan_commit(), Some(Some((1, 200))));
    balanced(&mut l);
}

#[test]
fn memory_budget_evicts_spooled_batches_and_reads_them_back_in_order() {
    let now = Instant::now();
    let mut l = lane(350, true);
    l.failing = true;
    for i in 0..10 {
        l.push(rec(i), Bytes::new(), 1, None, now);
        write_all(&mut l, now);
        l.settle_state(now);
        balanced(&mut l);
        assert!(l.snapshot().memory_bytes <= 350);
    }
    let c = l.snapshot();
    assert_eq!((c.memory_batches, c.disk_batches), (3, 7));
    let mut got = Vec::new();
    loop {
        match l.take(250) {
            Take::Ready => {
                got.extend(attempt(&l));
                l.attempt_sent(now);
                let _ = l.plan_commit();
            }
            Take::NeedRead => {
                let plan = l.plan_read();
                assert!(!plan.is_empty());
                let results = plan
                    .iter()
                    .map(|r| (*r, Ok(rec((r.seq - FIRST_NEW_SEQ) as u8))))
                    .collect();
                l.read_done(results, now);
            }
            Take::Wait => break,
        }
        balanced(&mut l);
    }
    assert_eq!(got, (0..10).collect::<Vec<u8>>());
    assert_eq!(l.snapshot().sent, 10);
    assert!(l.disk.is_empty());
}

#[test]
fn without_a_spool_the_oldest_are_dropped_and_counted() {
    let now = Instant::now();
    let mut l = lane(350, false);
    let heard = Arc::new(Mutex::new(Vec::new()));
    for i in 0..6 {
        let h = heard.clone();
        l.push(
            rec(i),
            Bytes::new(),
            1,
            Some(Box::new(move |s| h.lock().push((i, s)))),
            now,
        );
        balanced(&mut l);
    }
    for fx in l.take_effects().hooks {
        (fx.0)(fx.1);
    }
    let d = Settled::Dropped(DropReason::QueueFull);
    assert_eq!(*heard.lock(), vec![(0, d), (1, d), (2, d)]);
    assert_eq!(l.snapshot().dropped_total(), 3);
    assert_eq!(l.take(1000), Take::Ready);
    assert_eq!(attempt(&l), vec![3, 4, 5]);
}

#[test]
fn a_stalled_disk_holds_batches_within_twice_the_budget_then_drops() {
    let now = Instant::now();
    let mut l = lane(1000, true);
    l.failing = true;
    for i in 0..30 {
        l.push(rec(i), Bytes::new(), 1, None, now);
        assert!(l.snapshot().memory_bytes <= 2000);
        balanced(&mut l);
    }
    // Nothing was written (the writer is stuck); past twice the budget the oldest went.
    assert_eq!(l.snapshot().dropped[DropReason::QueueFull as usize], 10);
}

#[test]
fn lost_segments_count_what_only_they_held() {
    let now = Instant::now();
    let mut l = lane(250, true);
    l.failing = true;
    for i in 0..6 {
        l.push(rec(i), Bytes::new(), 1, None, now);
        write_all(&mut l, now);
        l.settle_state(now);
    }
    let c = l.snapshot();
    assert_eq!((c.memory_batches, c.disk_batches), (2, 4));
    // The directory vanishes: 4 disk-only batches are lost, the 2 cached ones written again.
    assert_eq!(l.vanished(None, "gone", now), 4);
    assert_eq!(l.snapshot().dropped[DropReason::Unreadable as usize], 4);
    assert_eq!(write_all(&mut l, now).len(), 2);
    balanced(&mut l);
    // Then the budget drops the segment holding them: they are the oldest waiting, and go with
    // it although memory has a copy.
    assert_eq!(l.drop_segment(1, "full", now), 2);
    assert_eq!(l.snapshot().dropped[DropReason::SpoolFull as usize], 2);
    assert_eq!(l.snapshot().memory_batches, 0);
    assert!(write_all(&mut l, now).is_empty());
    l.push(rec(9), Bytes::new(), 1, None, now);
    l.push(rec(10), Bytes::new(), 1, None, now);
    assert_eq!(write_all(&mut l, now).len(), 2);
    balanced(&mut l);
}

#[test]
fn a_split_batch_counts_once_and_a_refused_half_drops_it() {
    let now = Instant::now();
    let mut l = lane(10_000, false);
    l.push(Bytes::from_static(b"aabb"), Bytes::new(), 1, None, now);
    l.push(Bytes::from_static(b"ccdd"), Bytes::new(), 1, None, now);
    let halves = |p: &Bytes| {
        Some((
            Bytes::copy_from_slice(&p[..2]),
            Bytes::copy_from_slice(&p[2..]),
        ))
    };
    assert_eq!(l.take(4), Take::Ready);
    assert!(l.split_single(halves));
    assert_eq!(l.request().as_ref(), b"aa");
    l.attempt_sent(now);
    assert_eq!(l.snapshot().sent, 0, "half a batch is not a batch");
    assert_eq!(l.request().as_ref(), b"bb");
    l.attempt_sent(now);
    assert_eq!(l.snapshot().sent, 1);
    balanced(&mut l);
    assert_eq!(l.take(4), Take::Ready);
    assert!(l.split_single(halves));
    l.attempt_dropped(1, DropReason::Rejected, "bad half", now);
    l.attempt_sent(now);
    let c = l.snapshot();
    assert_eq!((c.sent, c.dropped_total()), (1, 1));
    balanced(&mut l);
}

#[test]
fn random_operations_keep_the_books_balanced() {
    let mut rng = fastrand::Rng::with_seed(7);
    for round in 0..50 {
        let now = Instant::now();
        let mut l = lane(rng.u64(200..2000), rng.bool());
        for step in 0..300 {
            match rng.u8(0..11) {
                0..=2 => {
                    let payload = Bytes::from(vec![step as u8; 100 * rng.usize(1..4)]);
                    l.push(payload, Bytes::new(), rng.u64(1..3), None, now)
                }
                3 => {
                    if let Some((seq, p, _, b)) = l.next_write() {
                        if rng.bool() {
                            l.stored(seq, 1 + step / 20, step * 200, p.len() as u64 + 16, b, now);
                        } else {
                            l.write_failed(seq, "EIO".into(), now);
                        }
                    }
                }
                4 => {
                    let t = l.take(rng.usize(100..600));
                    if t == Take::NeedRead {
                        let plan = l.plan_read();
                        let res = plan
                            .iter()
                            .map(|r| {
                                (
                                    *r,
                                    if rng.u8(0..5) == 0 {
                                        Err(crate::export::spool::record::ReadBack::Missing {
                                            seg: r.seg,
                                            dir: "/spool".into(),
                                        })
                                    } else {
                                        Ok(rec(1))
                                    },
                                )
                            })
                            .collect();
                        l.read_done(res, now);
                    }
                }
                5 if !l.inflight.is_empty() => l.attempt_sent(now),
                6 if !l.inflight.is_empty() => l.attempt_failed(now),
                7 if !l.inflight.is_empty() => {
                    let n = rng.usize(1..=l.active.max(1));
                    l.attempt_dropped(n, DropReason::Rejected, "no", now)
                }
                8 => {
                    let _ = l.plan_commit();
                }
                9 => match rng.u8(0..3) {
                    0 => {
                        let seg = l.disk.front().map(|r| r.seg);
                        if let Some(s) = seg {
                            l.drop_segment(s, "full", now);
                        }
                    }
                    1 => {
                        l.vanished(None, "gone", now);
                    }
                    _ => l.failing = !l.failing,
                },
                10 if !l.inflight.is_empty() => {
                    let _ = l.split_single(halves);
                }
                _ => {}
            }
            l.check();
            let c = l.snapshot();
            assert!(c.balanced(), "round {round} step {step}: {c:?}");
        }
        let (_, _) = l.finish_shutdown(now);
        let c = l.snapshot();
        assert!(c.balanced(), "after shutdown: {c:?}");
        assert_eq!(c.memory_batches, 0);
    }
}

/// Splits a payload of 100-byte records in two at a record boundary.
fn halves(p: &Bytes) -> Option<(Bytes, Bytes)> {
    let n = p.len() / 100;
    (n > 1).then(|| {
        let at = n / 2 * 100;
        (
            Bytes::copy_from_slice(&p[..at]),
            Bytes::copy_from_slice(&p[at..]),
        )
    })
}

/// A spooling lane whose one batch (four 100-byte parts, returned) is in flight, split in two.
fn split_in_flight(now: Instant) -> (Lane, Bytes) {
    let mut l = lane(100_000, true);
    let big: Bytes = (0..4u8)
        .flat_map(|i| vec![i; 100])
        .collect::<Vec<_>>()
        .into();
    l.push(big.clone(), Bytes::new(), 1, None, now);
    assert_eq!(l.take(1000), Take::Ready);
    assert!(l.split_single(halves));
    (l, big)
}

#[test]
fn a_batch_split_before_the_collector_failed_is_spooled_whole() {
    // The batch is larger than the request cap, so it goes in parts from the first attempt; the
    // collector then fails: the disk must get the whole batch, not nothing (it used to be marked
    // "never written" and was lost at shutdown).
    let now = Instant::now();
    let (mut l, big) = split_in_flight(now);
    assert_eq!(attempt(&l), vec![0, 1]);
    l.attempt_failed(now);
    let (seq, payload, _, batches) = l.next_write().expect("the batch wants writing");
    assert_eq!((payload, batches), (big, 1));
    assert!(
        l.next_write().is_none(),
        "one record for the batch, not one per part"
    );
    l.stored(seq, 1, 0, 416, batches, now);
    l.closing = true;
    let (kept, lost) = l.finish_shutdown(now);
    assert_eq!((kept, lost), (1, 0));
    balanced(&mut l);
}

#[test]
fn after_its_first_part_is_delivered_only_the_rest_of_a_split_batch_is_spooled() {
    let now = Instant::now();
    let (mut l, _) = split_in_flight(now);
    // Split the first half again: parts [0], [1], [2, 3].
    assert!(l.split_single(halves));
    assert_eq!(attempt(&l), vec![0]);
    l.attempt_sent(now);
    l.attempt_failed(now);
    let (seq, payload, _, batches) = l.next_write().expect("the rest wants writing");
    assert_eq!(
        payload.chunks(100).map(|c| c[0]).collect::<Vec<_>>(),
        vec![1, 2, 3],
        "the delivered part is not stored again"
    );
    assert!(l.next_write().is_none());
    l.stored(seq, 1, 0, 316, batches, now);
    balanced(&mut l);
    // The second part goes too: only the last remains, and it is on disk already.
    l.attempt_sent(now);
    assert!(l.next_write().is_none());
    l.attempt_sent(now);
    assert!(l.is_empty() || l.inflight.is_empty());
    assert_eq!(l.snapshot().sent, 1);
    balanced(&mut l);
}

/// A node whose one sample is larger than the default budget (5,000 containers: ~9 MB against
/// 4 MiB) has every sample queued and sent: the default grows to three samples, said once.
#[test]
fn a_default_budget_grows_to_three_samples_and_an_operators_does_not() {
    let now = Instant::now();
    let big = Bytes::from(vec![1u8; 1_500_000]);
    let mut l = lane_with(1 << 20, true, true);
    for _ in 0..3 {
        l.push(big.clone(), Bytes::new(), 1, None, now);
    }
    let fx = l.take_effects();
    assert_eq!(
        l.budget.memory_bytes,
        8 << 20,
        "three samples, a power of two"
    );
    assert_eq!(fx.notes.len(), 1, "{:?}", fx.notes);
    assert!(matches!(&fx.notes[0], Note::Grown(m) if m.contains("queue_memory_bytes")));
    assert!(fx.lines.is_empty(), "nothing dropped");
    assert_eq!(l.snapshot().dropped_total(), 0);
    balanced(&mut l);
    // Never past the cap.
    let mut l = lane_with(1 << 20, true, true);
    l.fit_budget(AUTO_MEMORY_MAX);
    assert_eq!(l.budget.memory_bytes, AUTO_MEMORY_MAX);

    // An operator's limit stays: a batch over it is said once, with the value that would do.
    let mut l = lane_with(1 << 20, false, false);
    for _ in 0..3 {
        l.push(big.clone(), Bytes::new(), 1, None, now);
    }
    let fx = l.take_effects();
    assert_eq!(l.budget.memory_bytes, 1 << 20);
    assert_eq!(fx.notes.len(), 1, "{:?}", fx.notes);
    assert!(
        matches!(&fx.notes[0], Note::TooSmall(m) if m.contains("set queue_memory_bytes to at least 5 MiB")),
        "{:?}",
        fx.notes
    );
    assert_eq!(
        l.snapshot().dropped_total(),
        3,
        "no spool: dropped and counted"
    );
}

/// The disk writer's side of a small spool, as `disk.rs` does it: segments of `per_seg` records,
/// at most `max` records in all, the oldest whole segment deleted (`drop_segment`) to make room
/// for the next write, the segments before the `ack` deleted when it moves.
struct FakeSpool {
    per_seg: u64,
    max: u64,
    /// (segment id, records in it), oldest first.
    segs: VecDeque<(u64, u64)>,
    next_id: u64,
}

impl FakeSpool {
    fn new(per_seg: u64, max: u64) -> FakeSpool {
        FakeSpool {
            per_seg,
            max,
            segs: VecDeque::new(),
            next_id: 1,
        }
    }

    /// Writes the oldest batch that wants writing, making room first. False when none wants it.
    fn write_one(&mut self, l: &mut Lane, now: Instant) -> bool {
        let Some((seq, p, _, b)) = l.next_write() else {
            return false;
        };
        while self.segs.iter().map(|s| s.1).sum::<u64>() + 1 > self.max {
            let (old, _) = self.segs.pop_front().expect("a segment to drop");
            l.drop_segment(old, "full", now);
        }
        if self.segs.back().is_none_or(|s| s.1 >= self.per_seg) {
            self.segs.push_back((self.next_id, 0));
            self.next_id += 1;
        }
        let tail = self.segs.back_mut().expect("tail");
        let off = tail.1 * 200;
        tail.1 += 1;
        l.stored(seq, tail.0, off, p.len() as u64 + 16, b, now);
        true
    }

    /// Moves the `ack` as the writer does after a delivery.
    fn commit(&mut self, l: &mut Lane) {
        match l.plan_commit() {
            Some(Some((seg, _))) => self.segs.retain(|s| s.0 >= seg),
            Some(None) => self.segs.clear(),
            None => {}
        }
    }

    /// Serves the sender's read, if it asked for one.
    fn read(&mut self, l: &mut Lane, now: Instant) {
        if l.read_want.is_some() {
            let plan = l.plan_read();
            let results = plan
                .iter()
                .map(|r| (*r, Ok(rec((r.seq - FIRST_NEW_SEQ) as u8))))
                .collect();
            l.read_done(results, now);
        }
    }
}

/// The first byte of each batch still waiting: in memory (not in flight) or only on disk.
fn waiting(l: &Lane) -> Vec<u8> {
    let mut w: Vec<u8> = l
        .list
        .iter()
        .map(|i| i.seq)
        .chain(l.disk.iter().filter(|r| !r.cached).map(|r| r.seq))
        .map(|s| (s - FIRST_NEW_SEQ) as u8)
        .collect();
    w.sort_unstable();
    w.dedup();
    w
}

/// Of the batches pushed so far (`0..pushed`), those neither waiting, in flight nor delivered
/// (`got`) were dropped: their count must be the lane's, and the newest of them older than
/// every batch still waiting. `ctx` names the step in a failure.
fn assert_oldest_dropped(l: &mut Lane, pushed: u8, got: &[u8], ctx: &str) {
    let w = waiting(l);
    let inflight = l.inflight.iter().map(|i| (i.seq - FIRST_NEW_SEQ) as u8);
    let held: Vec<u8> = w.iter().chain(got).copied().chain(inflight).collect();
    let dropped: Vec<u8> = (0..pushed).filter(|b| !held.contains(b)).collect();
    assert_eq!(
        l.snapshot().dropped_total(),
        dropped.len() as u64,
        "{ctx}: the count is exact"
    );
    if let (Some(d), Some(oldest)) = (dropped.last(), w.first()) {
        assert!(d < oldest, "{ctx}: dropped {dropped:?} while {w:?} waits");
    }
}

/// An outage long enough to fill a 6-record spool (segments of two) while batch 0 waits in
/// flight: the first segment goes to make room, batch 1 with it; batch 0 is kept (its fate is
/// its attempt's). Returns the lane, its spool and the batches pushed.
fn full_spool_after_an_outage(now: Instant) -> (Lane, FakeSpool, u8) {
    full_spool_after_an_outage_in(250, now)
}

/// [`full_spool_after_an_outage`] with a memory budget of `memory` bytes.
fn full_spool_after_an_outage_in(memory: u64, now: Instant) -> (Lane, FakeSpool, u8) {
    let mut l = lane(memory, true);
    let mut spool = FakeSpool::new(2, 6);
    l.push(rec(0), Bytes::new(), 1, None, now);
    assert_eq!(l.take(100), Take::Ready);
    l.attempt_failed(now);
    for i in 1..8 {
        l.push(rec(i), Bytes::new(), 1, None, now);
        while spool.write_one(&mut l, now) {}
        balanced(&mut l);
    }
    assert_eq!(attempt(&l), vec![0]);
    assert_eq!(waiting(&l), vec![2, 3, 4, 5, 6, 7]);
    assert_eq!(l.snapshot().dropped[DropReason::SpoolFull as usize], 1);
    (l, spool, 8)
}

/// The full-spool integration test once saw `[1, 29, 31, 32, …]`: the spool is still at its
/// budget when the collector comes back, and a sample arrives while the backlog is caught up.
/// Making room for it deletes the oldest segment, whose first batch was just delivered (or is on
/// the wire); the rest of that segment is then the oldest data waiting, and goes. Both orders of
/// that race, step by step: the drop takes the oldest, and delivery stays in order.
#[test]
fn a_spool_full_during_catch_up_drops_the_oldest_waiting_batch() {
    for delivered_first in [true, false] {
        let now = Instant::now();
        let (mut l, mut spool, next) = full_spool_after_an_outage(now);
        let mut got = attempt(&l);
        l.attempt_sent(now);
        spool.commit(&mut l);
        // The backlog: batch 2 is read back and sent (its segment-mate 3 stays on disk).
        assert_eq!(l.take(100), Take::NeedRead);
        spool.read(&mut l, now);
        assert_eq!(l.take(100), Take::Ready);
        assert_eq!(attempt(&l), vec![2]);
        if delivered_first {
            got.extend(attempt(&l));
            l.attempt_sent(now);
            spool.commit(&mut l);
        }
        // A sample arrives; writing it needs the room of the oldest segment, [2, 3].
        l.push(rec(next), Bytes::new(), 1, None, now);
        assert!(spool.write_one(&mut l, now));
        assert_eq!(
            l.snapshot().dropped[DropReason::SpoolFull as usize],
            2,
            "batch 3, the oldest waiting, went with the segment"
        );
        assert_eq!(waiting(&l), vec![4, 5, 6, 7, 8]);
        if !delivered_first {
            // On the wire: it arrives, ahead of the gap.
            got.extend(attempt(&l));
            l.attempt_sent(now);
            spool.commit(&mut l);
        }
        loop {
            match l.take(100) {
                Take::Ready => {
                    got.extend(attempt(&l));
                    l.attempt_sent(now);
                    spool.commit(&mut l);
                }
                Take::NeedRead => spool.read(&mut l, now),
                Take::Wait => break,
            }
        }
        assert_eq!(
            got,
            vec![0, 2, 4, 5, 6, 7, 8],
            "delivered_first={delivered_first}"
        );
        let c = l.snapshot();
        assert_eq!((c.sent, c.dropped_total()), (7, 2));
        balanced(&mut l);
    }
}

/// The same, in every order the sender, the disk writer and new samples can take: whenever
/// something is dropped, it is older than every batch still waiting, in memory or on disk (only
/// the request in flight may be older); what arrives is in order, and the count is exact.
#[test]
fn drops_while_catching_up_are_always_older_than_what_waits() {
    let mut rng = fastrand::Rng::with_seed(11);
    for round in 0..300 {
        let now = Instant::now();
        // A memory budget under the spool's, and one that holds all of it.
        let memory = if round % 2 == 0 { 250 } else { 1000 };
        let (mut l, mut spool, mut next) = full_spool_after_an_outage_in(memory, now);
        let mut got: Vec<u8> = Vec::new();
        let mut on_wire: Vec<u8> = attempt(&l);
        // Some rounds sample faster than the sender catches up, others slower.
        let sender_bias = (round % 8) as u8;
        for step in 0..200 {
            let op = match rng.u8(0..5 + sender_bias) {
                o if o < 5 => o,
                o => 1 + o % 4,
            };
            match op {
                // A sample arrives; the disk writer takes it (a healthy disk keeps up).
                0 if next < 200 => {
                    l.push(rec(next), Bytes::new(), 1, None, now);
                    next += 1;
                    while spool.write_one(&mut l, now) {}
                }
                // The sender takes the next request.
                1 if on_wire.is_empty() && l.take(rng.usize(100..300)) == Take::Ready => {
                    on_wire = attempt(&l);
                }
                // The collector answers it.
                2 if !on_wire.is_empty() => {
                    got.append(&mut on_wire);
                    l.attempt_sent(now);
                }
                3 => spool.read(&mut l, now),
                4 => spool.commit(&mut l),
                _ => {}
            }
            balanced(&mut l);
            // In flight (on the wire, or read back for the sender's next request) counts as held.
            assert_oldest_dropped(
                &mut l,
                next,
                &got,
                &format!("round {round} step {step} (memory {memory})"),
            );
            assert!(
                got.windows(2).all(|p| p[0] < p[1]),
                "round {round} step {step}: {got:?}"
            );
        }
    }
}

/// A memory budget that holds the whole spool keeps a copy of its oldest segment's batches. When
/// that segment has to go, the copies go with it: kept, they were older than what the next
/// segments to go hold (the budget evicts the newest copies to make room for new batches, and
/// those were then dropped with their segments while older ones waited in memory).
#[test]
fn a_full_spool_drops_its_oldest_batches_even_when_memory_holds_a_copy() {
    let now = Instant::now();
    let mut l = lane(1000, true);
    let mut spool = FakeSpool::new(2, 6);
    l.push(rec(0), Bytes::new(), 1, None, now);
    assert_eq!(l.take(100), Take::Ready);
    l.attempt_failed(now);
    for i in 1..14u8 {
        l.push(rec(i), Bytes::new(), 1, None, now);
        while spool.write_one(&mut l, now) {}
        balanced(&mut l);
        assert_oldest_dropped(&mut l, i + 1, &[], &format!("after {i}"));
    }
    // What waits is the spool's six newest, and the request in flight, whose attempt settles it.
    assert_eq!(waiting(&l), (8..14).collect::<Vec<u8>>());
    assert_eq!(attempt(&l), vec![0]);
    assert_eq!(l.snapshot().dropped[DropReason::SpoolFull as usize], 7);
}
