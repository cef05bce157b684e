//! A lane's sender task: one request at a time, oldest first, with the [`Policy`] deciding how
//! to wait and how to cut requests, and the lane recording every outcome.
//!
//! | outcome | what happens |
//! |---|---|
//! | accepted | the parts are sent; the rest of the request goes next; items a partial success rejected are counted (`rejected`), not retried |
//! | retryable (gRPC `UNAVAILABLE` and the others the OTLP table retries, `RESOURCE_EXHAUSTED` with `RetryInfo`; HTTP 429/502/503/504; connection errors) | the same request after the server's delay (`RetryInfo`, `Retry-After`) or a backoff; the lane writes ahead from now on |
//! | timed out | the same, with a longer timeout (bounded) and half the parts |
//! | too large (413, gRPC message too large) | half the parts, and a smaller merge limit from now on; a single batch is split in two |
//! | invalid (400, gRPC `INVALID_ARGUMENT`) | half the parts until the one refused is alone; only it is dropped |
//! | any other refusal (401, 403, a redirect, gRPC `UNKNOWN`, `RESOURCE_EXHAUSTED` without `RetryInfo`, …) | the parts are dropped, counted (`rejected`) and logged |

use super::retry::Policy;
use super::shared::LaneCell;
use super::split::split_request;
use super::stats::DropReason;
use super::{SendError, Transport};
use crate::sys::clock::now_nanos;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;

fn now_secs() -> u64 {
    now_nanos() / 1_000_000_000
}

/// Notes a failed attempt (retried or not) for `/readyz`, logging a new reason once.
fn failed(cell: &LaneCell, reason: &str, retry: bool) {
    let first = cell.with(|l, now| {
        if retry {
            l.attempt_failed(now);
        } else {
            l.failing = true;
        }
        let first = l.counts.failing_since == 0;
        if first {
            l.counts.failing_since = now_secs();
        }
        first
    });
    let mut last = cell.stats.last_error.lock();
    if retry && (first || last.as_deref() != Some(reason)) {
        tracing::warn!(signal = %cell.stats.signal.name(), %reason, "export failed; retrying with backoff");
    }
    *last = Some(reason.to_string());
}

/// Waits `d` unless the exporter closes first; true when it closed.
async fn pause(d: Duration, closed: &mut watch::Receiver<bool>) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(d) => false,
        _ = closed.wait_for(|c| *c) => true,
    }
}

pub(crate) async fn run(
    cell: Arc<LaneCell>,
    transport: Arc<Transport>,
    mut policy: Policy,
    mut closed: watch::Receiver<bool>,
) {
    let signal = cell.stats.signal;
    loop {
        if *closed.borrow() {
            return;
        }
        let cap = policy.merge_cap;
        let attempt = cell.with(|l, _| match l.take(cap) {
            super::lane::Take::Ready => {
                // A batch larger than the collector was found to accept goes in parts at once.
                while l.active == 1
                    && l.inflight[0].payload.len() > cap
                    && l.split_single(split_request)
                {}
                Some((l.request(), l.active, l.active_batches()))
            }
            _ => None,
        });
        let Some((payload, parts, batches)) = attempt else {
            tokio::select! {
                _ = cell.sender.notified() => {}
                _ = closed.wait_for(|c| *c) => return,
            }
            continue;
        };
        let size = payload.len();
        let timeout = policy.timeout;
        let started = Instant::now();
        let result = tokio::select! {
            r = tokio::time::timeout(timeout, transport.send(signal, payload, timeout)) => r,
            _ = closed.wait_for(|c| *c) => return,
        };
        // A transport's own timeout firing at the bound is a timeout too.
        let result = match result {
            Ok(Err(SendError::Retryable { .. })) if started.elapsed() >= timeout.mul_f64(0.9) => {
                Err(())
            }
            Ok(r) => Ok(r),
            Err(_) => Err(()),
        };
        match result {
            Ok(Ok(accepted)) => {
                policy.on_success(started.elapsed());
                let recovered = cell.with(|l, now| {
                    l.counts.rejected_items += accepted.rejected;
                    l.attempt_sent(now);
                    l.counts.last_success = now_secs();
                    std::mem::take(&mut l.counts.failing_since) != 0
                });
                *cell.stats.last_error.lock() = None;
                if recovered {
                    tracing::info!(
                        signal = %signal.name(),
                        "collector reachable again; delivering queued batches"
                    );
                }
            }
            Err(_) => {
                let grown = policy.on_timeout();
                let halved = cell.with(|l, _| {
                    let before = l.active;
                    l.active = l.active.div_ceil(2).max(1);
                    l.active < before
                });
                let reason = format!(
                    "no answer within {:.1} s ({size} bytes, {batches} batches){}{}",
                    timeout.as_secs_f64(),
                    grown.map_or(String::new(), |t| format!(
                        "; next timeout {:.1} s",
                        t.as_secs_f64()
                    )),
                    if halved {
                        "; sending fewer batches per request"
                    } else {
                        ""
                    },
                );
                tracing::warn!(signal = %signal.name(), %reason, "export timed out; retrying");
                failed(&cell, &reason, true);
                if pause(policy.pause(None), &mut closed).await {
                    return;
                }
            }
            Ok(Err(SendError::Retryable {
                reason,
                retry_after,
            })) => {
                failed(&cell, &reason, true);
                if pause(policy.pause(retry_after), &mut closed).await {
                    return;
                }
            }
            Ok(Err(SendError::TooLarge { reason })) => {
                if let Some(cap) = policy.too_large(size) {
                    tracing::warn!(signal = %signal.name(), %reason, bytes = size, request_limit = cap, "collector refused a request as too large; sending smaller requests from now on");
                }
                if parts > 1 {
                    cell.with(|l, _| l.active = parts / 2);
                } else if !cell.with(|l, _| l.split_single(split_request)) {
                    let cause =
                        format!("too large for the collector and cannot be split: {reason}");
                    cell.with(|l, now| l.attempt_dropped(1, DropReason::Rejected, &cause, now));
                    failed(&cell, &reason, false);
                }
            }
            Ok(Err(SendError::Invalid { reason })) => {
                if parts > 1 {
                    // One of them may be bad: find it by halving instead of failing them all.
                    cell.with(|l, _| l.active = parts / 2);
                } else {
                    let cause = format!("{reason} (not retryable)");
                    cell.with(|l, now| l.attempt_dropped(1, DropReason::Rejected, &cause, now));
                    failed(&cell, &reason, false);
                }
            }
            Ok(Err(SendError::Permanent { reason })) => {
                let cause = format!("{reason} (not retryable)");
                cell.with(|l, now| l.attempt_dropped(parts, DropReason::Rejected, &cause, now));
                failed(&cell, &reason, false);
            }
        }
    }
}
