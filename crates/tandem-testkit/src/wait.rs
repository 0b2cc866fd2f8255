//! Polling with a deadline: the only way tests synchronise with the cluster.

use std::time::Duration;

use tokio::time::Instant;

/// A generous default for anything a healthy cluster does (elect, replicate, catch up) on a
/// loaded two-core machine.
pub const DEADLINE: Duration = Duration::from_secs(30);

/// The pause between two checks of [`wait_for`] and [`wait_until`].
pub const POLL_INTERVAL: Duration = Duration::from_millis(50);

/// The deadline of [`poll_for`] passed before its check succeeded.
#[derive(Debug)]
pub struct TimedOut {
    pub deadline: Duration,
    pub attempts: u32,
}

impl std::fmt::Display for TimedOut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "timed out after {:?} ({} checks)",
            self.deadline, self.attempts
        )
    }
}

impl std::error::Error for TimedOut {}

/// Calls `check` every `interval` until it answers `Some`, and answers that value; answers
/// [`TimedOut`] when the deadline passes first.
pub async fn poll_for<T>(
    deadline: Duration,
    interval: Duration,
    mut check: impl AsyncFnMut() -> Option<T>,
) -> Result<T, TimedOut> {
    let started = Instant::now();
    let mut attempts = 0u32;
    loop {
        attempts += 1;
        if let Some(value) = check().await {
            return Ok(value);
        }
        if started.elapsed() >= deadline {
            return Err(TimedOut { deadline, attempts });
        }
        tokio::time::sleep(interval).await;
    }
}

/// Calls `check` until it answers `Some`, and answers that value; panics naming `what` when the
/// deadline passes first.
pub async fn wait_for<T>(
    deadline: Duration,
    what: &str,
    check: impl AsyncFnMut() -> Option<T>,
) -> T {
    poll_for(deadline, POLL_INTERVAL, check)
        .await
        .unwrap_or_else(|timed_out| panic!("{timed_out} waiting for: {what}"))
}

/// Calls `check` until it answers true; panics naming `what` when the deadline passes first.
pub async fn wait_until(deadline: Duration, what: &str, mut check: impl AsyncFnMut() -> bool) {
    wait_for(deadline, what, async || check().await.then_some(())).await
}
