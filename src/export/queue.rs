//! The delivery queue: a bounded FIFO in memory and the sender task.

use super::{SendError, Transport};
use bytes::Bytes;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Notify;

/// One queued request.
#[derive(Debug, Clone)]
pub struct Batch {
    pub seq: u64,
    pub payload: Bytes,
}

/// Counters the agent reports about its own delivery.
#[derive(Debug, Default)]
pub struct ExportStats {
    pub sent: AtomicU64,
    pub retried: AtomicU64,
    pub dropped: AtomicU64,
    pub queued_batches: AtomicU64,
    pub queued_bytes: AtomicU64,
    /// Unix seconds of the last successful send (0 = never).
    pub last_success: AtomicU64,
}

struct Shared {
    queue: Mutex<State>,
    wake: Notify,
    drained: Notify,
    stats: Arc<ExportStats>,
}

struct State {
    batches: VecDeque<Batch>,
    bytes: u64,
    next_seq: u64,
    closed: bool,
}

/// Hands batches to the sender task. Cloning shares the queue.
#[derive(Clone)]
pub struct Exporter {
    shared: Arc<Shared>,
    max_bytes: u64,
}

impl Exporter {
    /// Starts the sender task on the current runtime.
    pub fn start(transport: Transport, max_bytes: u64, backoff_max: Duration) -> Self {
        let shared = Arc::new(Shared {
            queue: Mutex::new(State {
                batches: VecDeque::new(),
                bytes: 0,
                next_seq: 0,
                closed: false,
            }),
            wake: Notify::new(),
            drained: Notify::new(),
            stats: Arc::new(ExportStats::default()),
        });
        tokio::spawn(sender(shared.clone(), transport, backoff_max));
        Exporter { shared, max_bytes }
    }

    pub fn stats(&self) -> Arc<ExportStats> {
        self.shared.stats.clone()
    }

    /// Queues an encoded request; never blocks on delivery. Past the byte budget the oldest
    /// batches are dropped and counted.
    pub fn enqueue(&self, payload: Bytes) {
        let stats = &self.shared.stats;
        let mut q = self.shared.queue.lock().expect("queue lock");
        let len = payload.len() as u64;
        while q.bytes + len > self.max_bytes && !q.batches.is_empty() {
            let old = q.batches.pop_front().expect("not empty");
            q.bytes -= old.payload.len() as u64;
            stats.dropped.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(
                seq = old.seq,
                "delivery queue full: dropped the oldest batch"
            );
        }
        let seq = q.next_seq;
        q.next_seq += 1;
        q.bytes += len;
        q.batches.push_back(Batch { seq, payload });
        stats
            .queued_batches
            .store(q.batches.len() as u64, Ordering::Relaxed);
        stats.queued_bytes.store(q.bytes, Ordering::Relaxed);
        drop(q);
        self.shared.wake.notify_one();
    }

    /// Waits until the queue is empty or `grace` has passed; returns the batches left.
    pub async fn drain(&self, grace: Duration) -> usize {
        let deadline = tokio::time::Instant::now() + grace;
        loop {
            let drained = self.shared.drained.notified();
            let left = self.shared.queue.lock().expect("queue lock").batches.len();
            if left == 0 {
                return 0;
            }
            if tokio::time::timeout_at(deadline, drained).await.is_err() {
                return self.shared.queue.lock().expect("queue lock").batches.len();
            }
        }
    }

    /// Stops the sender after the current attempt.
    pub fn close(&self) {
        self.shared.queue.lock().expect("queue lock").closed = true;
        self.shared.wake.notify_one();
    }
}

fn front(shared: &Shared) -> Option<Batch> {
    shared
        .queue
        .lock()
        .expect("queue lock")
        .batches
        .front()
        .cloned()
}

fn pop(shared: &Shared, seq: u64) {
    let mut q = shared.queue.lock().expect("queue lock");
    if q.batches.front().is_some_and(|b| b.seq == seq) {
        let b = q.batches.pop_front().expect("checked");
        q.bytes -= b.payload.len() as u64;
    }
    shared
        .stats
        .queued_batches
        .store(q.batches.len() as u64, Ordering::Relaxed);
    shared.stats.queued_bytes.store(q.bytes, Ordering::Relaxed);
    if q.batches.is_empty() {
        shared.drained.notify_waiters();
    }
}

/// Full jitter on top of exponential backoff: sleep a random time in [backoff/2, backoff].
fn jittered(backoff: Duration) -> Duration {
    let half = backoff.as_secs_f64() / 2.0;
    Duration::from_secs_f64(half + fastrand::f64() * half)
}

async fn sender(shared: Arc<Shared>, transport: Transport, backoff_max: Duration) {
    const BACKOFF_START: Duration = Duration::from_millis(500);
    let mut backoff = BACKOFF_START;
    let mut last_error: Option<String> = None;
    loop {
        let Some(batch) = front(&shared) else {
            if shared.queue.lock().expect("queue lock").closed {
                return;
            }
            shared.wake.notified().await;
            continue;
        };
        match transport.send(batch.payload.clone()).await {
            Ok(()) => {
                pop(&shared, batch.seq);
                shared.stats.sent.fetch_add(1, Ordering::Relaxed);
                shared
                    .stats
                    .last_success
                    .store(crate::otlp::now_nanos() / 1_000_000_000, Ordering::Relaxed);
                if last_error.take().is_some() {
                    tracing::info!("collector reachable again; delivering queued batches");
                }
                backoff = BACKOFF_START;
            }
            Err(SendError::Permanent { reason }) => {
                pop(&shared, batch.seq);
                shared.stats.dropped.fetch_add(1, Ordering::Relaxed);
                tracing::error!(seq = batch.seq, %reason, "collector refused a batch; dropped (not retryable)");
            }
            Err(SendError::Retryable {
                reason,
                retry_after,
            }) => {
                shared.stats.retried.fetch_add(1, Ordering::Relaxed);
                if last_error.as_deref() != Some(reason.as_str()) {
                    tracing::warn!(%reason, "export failed; retrying with backoff");
                    last_error = Some(reason);
                }
                let wait = retry_after
                    .unwrap_or_else(|| jittered(backoff))
                    .min(backoff_max);
                backoff = (backoff * 2).min(backoff_max);
                let closed = shared.queue.lock().expect("queue lock").closed;
                if closed {
                    return;
                }
                let sleep = tokio::time::sleep(wait);
                tokio::pin!(sleep);
                loop {
                    tokio::select! {
                        _ = &mut sleep => break,
                        // New batches do not cut the backoff short; a close does.
                        _ = shared.wake.notified() => {
                            if shared.queue.lock().expect("queue lock").closed {
                                return;
                            }
                        }
                    }
                }
            }
        }
    }
}
