//! Fencing: a write that names a lock and a token goes ahead only while that token is the
//! lock's current one and its lease still runs.

use crate::command::{Fence, Rejection};
use crate::rules::lease::LockState;

/// Whether a write fenced by `fence` may go ahead at `now_ms`, given the fence's lock as stored
/// (`None`: never held).
pub fn check_current(
    fence: &Fence,
    lock: Option<&LockState>,
    now_ms: i64,
) -> Result<(), Rejection> {
    match lock.filter(|lock| lock.holder_at(now_ms).is_some()) {
        Some(lock) if lock.token == fence.token => Ok(()),
        Some(lock) => Err(Rejection::fenced(format!(
            "fencing token {} for lock {:?} is no longer current (current token: {}); the lease was lost",
            fence.token, fence.lock, lock.token
        ))),
        None => Err(Rejection::fenced(format!(
            "fencing token {} for lock {:?} is no longer current: the lock is not held",
            fence.token, fence.lock
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::RejectionKind;

    const NOW: i64 = 10_000;

    fn fence(token: u64) -> Fence {
        Fence {
            lock: "jobs".into(),
            token,
        }
    }

    fn lock(holder: Option<&str>, token: u64, expires_at_ms: Option<i64>) -> LockState {
        LockState {
            name: "jobs".into(),
            holder: holder.map(String::from),
            token,
            expires_at_ms,
        }
    }

    #[test]
    fn the_current_token_of_a_held_lock_passes() {
        let held = lock(Some("a"), 7, Some(NOW + 1));
        assert_eq!(check_current(&fence(7), Some(&held), NOW), Ok(()));
    }

    #[test]
    fn an_older_or_newer_token_is_fenced() {
        let held = lock(Some("a"), 7, Some(NOW + 1));
        for token in [0, 6, 8] {
            let refused = check_current(&fence(token), Some(&held), NOW).unwrap_err();
            assert_eq!(refused.kind, RejectionKind::Fenced);
            assert_eq!(
                refused.message,
                format!(
                    "fencing token {token} for lock \"jobs\" is no longer current (current token: 7); the lease was lost"
                )
            );
        }
    }

    #[test]
    fn a_lock_not_held_fences_every_token() {
        let not_held = [
            None,
            Some(lock(None, 7, None)),
            Some(lock(Some("a"), 7, Some(NOW))),
            Some(lock(Some("a"), 7, Some(NOW - 1))),
        ];
        for current in not_held {
            for token in [0, 7] {
                let refused = check_current(&fence(token), current.as_ref(), NOW).unwrap_err();
                assert_eq!(refused.kind, RejectionKind::Fenced);
                assert_eq!(
                    refused.message,
                    format!(
                        "fencing token {token} for lock \"jobs\" is no longer current: the lock is not held"
                    )
                );
            }
        }
    }
}
