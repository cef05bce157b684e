//! When the loops run: jittered pauses, cut short by shutdown.

use std::time::Duration;
use tokio::sync::watch;

/// A pause drawn uniformly from `[min, max]`, so a fleet started together does not sample in step.
pub(crate) fn jittered(range: (Duration, Duration)) -> Duration {
    let (min, max) = range;
    min + (max - min).mul_f64(fastrand::f64())
}

/// Sleeps for `d`, or returns `true` early when shutdown is signalled.
pub(crate) async fn sleep_or_shutdown(d: Duration, shutdown: &mut watch::Receiver<bool>) -> bool {
    if *shutdown.borrow() {
        return true;
    }
    tokio::select! {
        _ = tokio::time::sleep(d) => *shutdown.borrow(),
        _ = shutdown.changed() => true,
    }
}
