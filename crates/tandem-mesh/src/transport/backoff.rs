//! How long to wait before dialing a lost peer again, as a pure function of the attempt number
//! and a random number the caller draws, with Muti Metroo's settings names.

use std::time::Duration;

/// Reconnect delays: `initial_delay`, times `multiplier` per failed attempt, capped at
/// `max_delay`, spread by ±`jitter` (a fraction) so that agents that lost the same peer do not
/// dial it in lockstep. `max_retries` = 0 retries forever.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Backoff {
    pub initial_delay: Duration,
    pub max_delay: Duration,
    pub multiplier: f64,
    pub jitter: f64,
    pub max_retries: u32,
}

/// A backoff setting out of its range.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum BackoffError {
    #[error("reconnect multiplier {0} must be at least 1 (and finite)")]
    Multiplier(f64),
    #[error("reconnect jitter {0} must be between 0 and 1 (a fraction of the delay)")]
    Jitter(f64),
    #[error(
        "reconnect initial_delay {initial:?} must be above zero and at most max_delay {max:?}"
    )]
    Delays { initial: Duration, max: Duration },
}

impl Default for Backoff {
    /// 1 s, doubling up to 60 s, ±20 %, forever.
    fn default() -> Self {
        Self {
            initial_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(60),
            multiplier: 2.0,
            jitter: 0.2,
            max_retries: 0,
        }
    }
}

impl Backoff {
    /// Refuses settings that would make [`Backoff::delay`] meaningless.
    pub fn check(&self) -> Result<(), BackoffError> {
        if !self.multiplier.is_finite() || self.multiplier < 1.0 {
            return Err(BackoffError::Multiplier(self.multiplier));
        }
        if !(0.0..=1.0).contains(&self.jitter) {
            return Err(BackoffError::Jitter(self.jitter));
        }
        if self.initial_delay.is_zero() || self.initial_delay > self.max_delay {
            return Err(BackoffError::Delays {
                initial: self.initial_delay,
                max: self.max_delay,
            });
        }
        Ok(())
    }

    /// The wait before retry number `attempt` (0 for the first retry after a failure), or `None`
    /// once `max_retries` retries were made. `random` is a uniform draw from [0, 1]; the result
    /// lies within ±`jitter` of the exponential delay and never exceeds `max_delay`.
    pub fn delay(&self, attempt: u32, random: f64) -> Option<Duration> {
        if self.max_retries != 0 && attempt >= self.max_retries {
            return None;
        }
        let max = self.max_delay.as_secs_f64();
        let exponent = i32::try_from(attempt).unwrap_or(i32::MAX);
        let base =
            (self.initial_delay.as_secs_f64() * self.multiplier.max(1.0).powi(exponent)).min(max);
        let random = if random.is_finite() {
            random.clamp(0.0, 1.0)
        } else {
            0.5
        };
        let jitter = self.jitter.clamp(0.0, 1.0);
        let spread = base * (1.0 + jitter * (2.0 * random - 1.0));
        Some(Duration::from_secs_f64(spread.clamp(0.0, max)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn backoff(max_retries: u32) -> Backoff {
        Backoff {
            initial_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(1),
            multiplier: 2.0,
            jitter: 0.5,
            max_retries,
        }
    }

    #[test]
    fn delays_grow_by_the_multiplier_up_to_the_cap() {
        let b = backoff(0);
        let middle: Vec<_> = (0..6).map(|n| b.delay(n, 0.5).expect("retry")).collect();
        let ms: Vec<u128> = middle.iter().map(Duration::as_millis).collect();
        assert_eq!(ms, [100, 200, 400, 800, 1000, 1000]);
        assert_eq!(b.delay(u32::MAX, 0.5), Some(Duration::from_secs(1)));
    }

    #[test]
    fn jitter_spreads_around_the_delay_and_never_past_the_cap() {
        let b = backoff(0);
        assert_eq!(b.delay(1, 0.0), Some(Duration::from_millis(100)));
        assert_eq!(b.delay(1, 1.0), Some(Duration::from_millis(300)));
        assert_eq!(b.delay(10, 1.0), Some(Duration::from_secs(1)));
        assert_eq!(b.delay(10, 0.0), Some(Duration::from_millis(500)));
        // Out-of-range draws are clamped, not trusted.
        assert_eq!(b.delay(1, 7.0), b.delay(1, 1.0));
        assert_eq!(b.delay(1, f64::NAN), b.delay(1, 0.5));
    }

    #[test]
    fn retries_stop_after_max_retries_and_zero_means_forever() {
        let b = backoff(3);
        assert!(b.delay(2, 0.5).is_some());
        assert_eq!(b.delay(3, 0.5), None);
        assert!(backoff(0).delay(1_000_000, 0.5).is_some());
    }

    #[test]
    fn settings_out_of_range_are_refused() {
        assert_eq!(Backoff::default().check(), Ok(()));
        let mut b = backoff(0);
        b.multiplier = 0.5;
        assert_eq!(b.check(), Err(BackoffError::Multiplier(0.5)));
        let mut b = backoff(0);
        b.jitter = 1.5;
        assert_eq!(b.check(), Err(BackoffError::Jitter(1.5)));
        let mut b = backoff(0);
        b.initial_delay = Duration::from_secs(5);
        assert!(matches!(b.check(), Err(BackoffError::Delays { .. })));
    }
}
