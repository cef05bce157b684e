//! When the loops run: jittered pauses, cut short by shutdown and re-planned when the live
//! settings change (a remote configuration that shortens an interval takes effect now, not after
//! the old pause).

use crate::state::{Context, Live};
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

/// Pauses for `pick(live settings)`, counted from now; when the live settings change the pause
/// is picked again, still counted from the same start (so it ends at once if the new one is
/// already over). Returns `true` early when shutdown is signalled.
pub(crate) async fn pause(
    ctx: &Context,
    pick: impl Fn(&Live) -> Duration,
    shutdown: &mut watch::Receiver<bool>,
) -> bool {
    if *shutdown.borrow() {
        return true;
    }
    let from = tokio::time::Instant::now();
    let mut changes = ctx.live_changes();
    let mut until = from + pick(&ctx.live());
    loop {
        tokio::select! {
            _ = tokio::time::sleep_until(until) => return *shutdown.borrow(),
            _ = shutdown.changed() => return true,
            Ok(()) = changes.changed() => until = from + pick(&ctx.live()),
        }
    }
}
