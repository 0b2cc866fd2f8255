//! When an entry with a time to live expires. Times are milliseconds stamped by the leader, so
//! every replica reaches the same answer.

/// The time `after_ms` past `now_ms`, held at the end of time rather than wrapping.
pub fn deadline(now_ms: i64, after_ms: u64) -> i64 {
    now_ms.saturating_add(after_ms as i64)
}

/// When an entry written at `now_ms` with `ttl_ms` expires; `None` lives until deleted.
pub fn expires_at(now_ms: i64, ttl_ms: Option<u64>) -> Option<i64> {
    ttl_ms.map(|ttl| deadline(now_ms, ttl))
}

/// Whether an entry expiring at `expires_at_ms` is gone at `now_ms`. It is gone from the very
/// millisecond it expires at.
pub fn is_expired(expires_at_ms: Option<i64>, now_ms: i64) -> bool {
    expires_at_ms.is_some_and(|at| at <= now_ms)
}

/// The latest expiry time that has passed at `now_ms`: a store that removes expired entries by
/// a range of its expiry index removes every one expiring at or before this.
pub fn expired_through(now_ms: i64) -> i64 {
    now_ms
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entry_expires_at_its_stamp_not_before() {
        assert!(!is_expired(Some(1_000), 999));
        assert!(is_expired(Some(1_000), 1_000));
        assert!(is_expired(Some(1_000), 1_001));
    }

    #[test]
    fn an_entry_without_expiry_never_expires() {
        assert!(!is_expired(None, i64::MIN));
        assert!(!is_expired(None, i64::MAX));
    }

    #[test]
    fn expiry_is_the_stamp_plus_the_ttl() {
        assert_eq!(expires_at(1_000, Some(250)), Some(1_250));
        assert_eq!(expires_at(1_000, None), None);
        assert!(is_expired(expires_at(1_000, Some(250)), 1_250));
        assert!(!is_expired(expires_at(1_000, Some(250)), 1_249));
    }

    #[test]
    fn a_deadline_past_the_end_of_time_stays_there() {
        assert_eq!(deadline(i64::MAX - 1, 10), i64::MAX);
        assert_eq!(deadline(5, 0), 5);
    }

    #[test]
    fn the_expired_range_ends_where_is_expired_does() {
        let now = 42;
        assert!(is_expired(Some(expired_through(now)), now));
        assert!(!is_expired(Some(expired_through(now) + 1), now));
    }
}
