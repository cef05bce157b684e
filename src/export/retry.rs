//! How a lane's sender adapts to its collector: backoff between failed attempts, a request
//! timeout that grows (bounded) when the collector is slower than it, and a merge limit that
//! shrinks when the collector says a request is too large.
//!
//! A timed-out request may still have been processed by the collector, so repeating it can
//! duplicate data. Each timeout therefore makes the next attempt more likely to finish: the
//! timeout doubles up to [`max_attempt_timeout`] and a merged request is cut in half, so a
//! collector that answers within the bound makes progress after at most
//! `log2(max/base) + log2(parts)` repeated attempts. Once requests finish in under a quarter of
//! the timeout it comes back down.

use super::signal::max_attempt_timeout;
use std::time::Duration;

const BACKOFF_START: Duration = Duration::from_millis(500);

#[derive(Debug, Clone)]
pub(crate) struct Policy {
    backoff: Duration,
    backoff_max: Duration,
    base_timeout: Duration,
    max_timeout: Duration,
    /// The timeout of the next attempt.
    pub(crate) timeout: Duration,
    /// Largest request built by merging queued batches; a single batch larger than this is sent
    /// in parts once the collector has refused one as too large.
    pub(crate) merge_cap: usize,
}

/// Exponential backoff with jitter: a random time in [backoff/2, backoff].
fn jittered(backoff: Duration) -> Duration {
    let half = backoff.as_secs_f64() / 2.0;
    Duration::from_secs_f64(half + fastrand::f64() * half)
}

impl Policy {
    pub(crate) fn new(timeout: Duration, backoff_max: Duration, merge_cap: usize) -> Policy {
        Policy {
            backoff: BACKOFF_START.min(backoff_max),
            backoff_max,
            base_timeout: timeout,
            max_timeout: max_attempt_timeout(timeout),
            timeout,
            merge_cap: merge_cap.max(1),
        }
    }

    pub(crate) fn on_success(&mut self, took: Duration) {
        self.backoff = BACKOFF_START.min(self.backoff_max);
        if self.timeout > self.base_timeout && took < self.timeout / 4 {
            self.timeout = (self.timeout / 2).max(self.base_timeout);
        }
    }

    /// An attempt timed out: the next one gets longer. Returns the new timeout when it grew.
    pub(crate) fn on_timeout(&mut self) -> Option<Duration> {
        let next = (self.timeout * 2).min(self.max_timeout);
        (next > self.timeout).then(|| {
            self.timeout = next;
            next
        })
    }

    /// The pause before the next attempt after a retryable failure.
    pub(crate) fn pause(&mut self, retry_after: Option<Duration>) -> Duration {
        let wait = retry_after
            .unwrap_or_else(|| jittered(self.backoff))
            .min(self.backoff_max);
        self.backoff = (self.backoff * 2).min(self.backoff_max);
        wait
    }

    /// The collector refused a request of `size` bytes as too large: merge at most half of it
    /// from now on. Returns the new limit when it shrank.
    pub(crate) fn too_large(&mut self, size: usize) -> Option<usize> {
        let cap = (size / 2).max(1);
        (cap < self.merge_cap).then(|| {
            self.merge_cap = cap;
            cap
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeout_grows_to_its_bound_and_comes_back() {
        let mut p = Policy::new(Duration::from_secs(2), Duration::from_secs(60), 1 << 20);
        assert_eq!(p.on_timeout(), Some(Duration::from_secs(4)));
        assert_eq!(p.on_timeout(), Some(Duration::from_secs(8)));
        assert_eq!(p.on_timeout(), None, "bounded at 4x");
        p.on_success(Duration::from_secs(3));
        assert_eq!(p.timeout, Duration::from_secs(8), "slow answers keep it");
        p.on_success(Duration::from_millis(100));
        p.on_success(Duration::from_millis(100));
        assert_eq!(p.timeout, Duration::from_secs(2));
        assert_eq!(p.too_large(100_000), Some(50_000));
        assert_eq!(p.too_large(200_000), None);
        for _ in 0..20 {
            assert!(p.pause(None) <= Duration::from_secs(60));
        }
        assert_eq!(
            p.pause(Some(Duration::from_secs(600))),
            Duration::from_secs(60)
        );
    }
}
