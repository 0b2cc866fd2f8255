//! Says when this server's async tasks were held up. A timer task that should wake every
//! [`TICK`] notes how late it woke: a late wake-up means every task on the runtime, Raft's
//! heartbeats among them, waited as long. That is the usual cause of an election no fault
//! explains (a machine starved of CPU, the process swapped out or paused), and the warning lets
//! an operator, or a failing test's log, tell such a stall from a network fault.

use std::time::Duration;

use tokio::time::Instant;

/// How often the watch wakes.
const TICK: Duration = Duration::from_millis(50);

/// How late a wake-up was, if it was late by `threshold` or more: `elapsed` since the last one,
/// which was due `tick` after it.
pub fn held_up(tick: Duration, elapsed: Duration, threshold: Duration) -> Option<Duration> {
    let late = elapsed.saturating_sub(tick);
    (late >= threshold).then_some(late)
}

/// Runs for as long as the server does; warns of each wake-up late by `threshold` or more (two
/// heartbeats: as long as a follower waits before it may suspect the leader).
pub async fn watch_for_stalls(threshold: Duration) {
    // Served from the start, so an alert on its increase has a series to watch.
    let stalls = metrics::counter!("tandem_runtime_stalls_total");
    stalls.increment(0);
    let mut last = Instant::now();
    loop {
        tokio::time::sleep(TICK).await;
        let now = Instant::now();
        if let Some(late) = held_up(TICK, now - last, threshold) {
            stalls.increment(1);
            tracing::warn!(
                held_up_ms = late.as_millis() as u64,
                "this server's tasks were held up (CPU starvation, swapping, or the process was paused); heartbeats waited as long, so peers may have called an election"
            );
        }
        last = now;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wake_up_is_held_up_once_it_is_late_by_the_threshold() {
        let ms = Duration::from_millis;
        assert_eq!(held_up(ms(50), ms(52), ms(200)), None);
        assert_eq!(held_up(ms(50), ms(249), ms(200)), None);
        assert_eq!(held_up(ms(50), ms(250), ms(200)), Some(ms(200)));
        assert_eq!(held_up(ms(50), ms(650), ms(200)), Some(ms(600)));
        // A clock read before the tick was due never underflows.
        assert_eq!(held_up(ms(50), ms(10), ms(200)), None);
    }
}
