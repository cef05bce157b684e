//! Failing and coming back: the error of a connection or exchange (with the wait the server
//! asked for, if any), the jittered exponential backoff between attempts, and `Retry-After`.

use std::fmt;
use std::time::{Duration, SystemTime};

/// A failed connection or exchange; `retry_after` when the server said when to come back.
#[derive(Debug, Clone)]
pub struct TransportError {
    pub reason: String,
    pub retry_after: Option<Duration>,
}

impl TransportError {
    pub fn new(reason: impl Into<String>) -> Self {
        TransportError {
            reason: reason.into(),
            retry_after: None,
        }
    }
}

impl fmt::Display for TransportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.reason)?;
        if let Some(d) = self.retry_after {
            write!(f, " (retry after {}s)", d.as_secs())?;
        }
        Ok(())
    }
}

/// Exponential backoff with jitter: 1 s, 2 s, 4 s … up to the cap, each drawn from the upper
/// half of its step so that a fleet reconnecting after a server restart spreads out. A server's
/// RetryInfo / Retry-After wins (capped at one hour), plus up to 10% jitter.
pub struct Backoff {
    step: Duration,
    max: Duration,
}

const FIRST_STEP: Duration = Duration::from_secs(1);
const RETRY_AFTER_CAP: Duration = Duration::from_secs(3600);

impl Backoff {
    pub fn new(max: Duration) -> Self {
        Backoff {
            step: FIRST_STEP,
            max: max.max(FIRST_STEP),
        }
    }

    pub fn reset(&mut self) {
        self.step = FIRST_STEP;
    }

    pub fn next(&mut self, retry_after: Option<Duration>) -> Duration {
        let step = self.step;
        self.step = (self.step * 2).min(self.max);
        match retry_after {
            Some(r) => {
                let r = r.min(RETRY_AFTER_CAP);
                r + r.mul_f64(fastrand::f64() * 0.1)
            }
            None => step / 2 + step.mul_f64(fastrand::f64() * 0.5),
        }
    }
}

/// `Retry-After`: delay-seconds or an HTTP date.
pub fn parse_retry_after(v: &str) -> Option<Duration> {
    let v = v.trim();
    if let Ok(s) = v.parse::<u64>() {
        return Some(Duration::from_secs(s));
    }
    let at = httpdate::parse_http_date(v).ok()?;
    Some(
        at.duration_since(SystemTime::now())
            .unwrap_or(Duration::ZERO),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_forms() {
        assert_eq!(parse_retry_after("120"), Some(Duration::from_secs(120)));
        let later = SystemTime::now() + Duration::from_secs(90);
        let d = parse_retry_after(&httpdate::fmt_http_date(later)).unwrap();
        assert!(
            d > Duration::from_secs(85) && d <= Duration::from_secs(90),
            "{d:?}"
        );
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon"), None);
    }

    #[test]
    fn backoff_grows_with_jitter_to_the_cap_and_honours_the_server() {
        let mut b = Backoff::new(Duration::from_secs(8));
        let waits: Vec<Duration> = (0..6).map(|_| b.next(None)).collect();
        for (w, step) in waits.iter().zip([1, 2, 4, 8, 8, 8]) {
            let step = Duration::from_secs(step);
            assert!(*w >= step / 2 && *w <= step, "{w:?} for step {step:?}");
        }
        let r = b.next(Some(Duration::from_secs(42)));
        assert!(
            r >= Duration::from_secs(42) && r <= Duration::from_millis(46_200),
            "{r:?}"
        );
        let r = b.next(Some(Duration::from_secs(1_000_000)));
        assert!(r <= Duration::from_secs(3960));
        b.reset();
        assert!(b.next(None) <= Duration::from_secs(1));
    }
}
