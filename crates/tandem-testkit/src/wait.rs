//! Polling with a deadline: the only way tests synchronise with the cluster.

use std::time::Duration;

use tokio::time::Instant;

/// A generous default for anything a healthy cluster does (elect, replicate, catch up) on a
/// loaded two-core machine.
pub const DEADLINE: Duration = Duration::from_secs(30);

const POLL_INTERVAL: Duration = Duration::from_millis(50);

/// Calls `check` until it answers `Some`, and answers that value; panics naming `what` when the
/// deadline passes first.
pub async fn wait_for<T>(
    deadline: Duration,
    what: &str,
    mut check: impl AsyncFnMut() -> Option<T>,
) -> T {
    let started = Instant::now();
    let mut attempts = 0u32;
    loop {
        attempts += 1;
        if let Some(value) = check().await {
            return value;
        }
        if started.elapsed() >= deadline {
            panic!("timed out after {deadline:?} ({attempts} checks) waiting for: {what}");
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

/// Calls `check` until it answers true; panics naming `what` when the deadline passes first.
pub async fn wait_until(deadline: Duration, what: &str, mut check: impl AsyncFnMut() -> bool) {
    wait_for(deadline, what, async || check().await.then_some(())).await
}
