//! Locks as leases: one holder until a time stamped by the leader, and a fencing token that
//! changes every time the lock changes hands, so that a holder whose lease ran out can be
//! refused (see [`crate::rules::fence`]).

use crate::command::Rejection;
use crate::rules::ttl;

/// A lock as stored. A released or expired lock keeps its row and its last token, with no
/// holder.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct LockState {
    pub name: String,
    pub holder: Option<String>,
    pub token: u64,
    pub expires_at_ms: Option<i64>,
}

impl LockState {
    /// The holder whose lease still runs at `now_ms`, if any.
    pub fn holder_at(&self, now_ms: i64) -> Option<&str> {
        self.holder
            .as_deref()
            .filter(|_| !ttl::is_expired(self.expires_at_ms, now_ms))
    }

    /// The lock as a reader sees it at `now_ms`: an expired lease shows as not held.
    pub fn seen_at(mut self, now_ms: i64) -> LockState {
        if ttl::is_expired(self.expires_at_ms, now_ms) {
            self.holder = None;
            self.expires_at_ms = None;
        }
        self
    }
}

/// A lease as granted or renewed: the token that fences the holder's writes, and when it ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Lease {
    pub token: u64,
    pub expires_at_ms: i64,
}

impl Lease {
    /// The lock as stored while `holder` holds this lease.
    pub fn held_by(self, name: &str, holder: &str) -> LockState {
        LockState {
            name: name.to_string(),
            holder: Some(holder.to_string()),
            token: self.token,
            expires_at_ms: Some(self.expires_at_ms),
        }
    }
}

/// What an acquire that succeeds does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Acquisition {
    /// The lock was free (never held, released, or its lease ran out): it changes hands, with
    /// the new token.
    Granted(Lease),
    /// The holder already held it: it keeps its token, and the lease runs again from now.
    Extended(Lease),
}

impl Acquisition {
    pub fn lease(self) -> Lease {
        match self {
            Acquisition::Granted(lease) | Acquisition::Extended(lease) => lease,
        }
    }
}

/// Decides an acquire of lock `name` (stored as `current`, `None` if never held) by `holder`
/// for `ttl_ms` at `now_ms`. `new_token` is the token the lock gets if it changes hands: it
/// must be greater than every token issued before, for any lock.
pub fn acquire(
    current: Option<&LockState>,
    name: &str,
    holder: &str,
    ttl_ms: u64,
    now_ms: i64,
    new_token: u64,
) -> Result<Acquisition, Rejection> {
    let expires_at_ms = ttl::deadline(now_ms, ttl_ms);
    let held = current.and_then(|lock| lock.holder_at(now_ms).map(|h| (lock, h)));
    match held {
        Some((lock, current_holder)) if current_holder != holder => {
            Err(Rejection::conflict(format!(
                "lock {name:?} is held by {current_holder:?} until {}",
                lock.expires_at_ms.unwrap_or_default()
            )))
        }
        Some((lock, _)) => Ok(Acquisition::Extended(Lease {
            token: lock.token,
            expires_at_ms,
        })),
        None => Ok(Acquisition::Granted(Lease {
            token: new_token,
            expires_at_ms,
        })),
    }
}

/// Whether `holder` holds lock `name` (stored as `current`) with `token` at `now_ms`: what
/// renewing and releasing require.
pub fn check_holder(
    current: Option<&LockState>,
    name: &str,
    holder: &str,
    token: u64,
    now_ms: i64,
) -> Result<(), Rejection> {
    let held = current.and_then(|lock| lock.holder_at(now_ms).map(|h| (lock, h)));
    match held {
        Some((lock, current_holder)) if current_holder == holder && lock.token == token => Ok(()),
        Some((lock, current_holder)) => Err(Rejection::conflict(format!(
            "lock {name:?} is held by {current_holder:?} with token {}, not by {holder:?} with token {token}",
            lock.token
        ))),
        None => Err(Rejection::conflict(format!(
            "lock {name:?} is not held (its lease expired or it was released); acquire it again"
        ))),
    }
}

/// Decides a renewal: the holder keeps its token, and the lease runs `ttl_ms` from `now_ms`.
pub fn renew(
    current: Option<&LockState>,
    name: &str,
    holder: &str,
    token: u64,
    ttl_ms: u64,
    now_ms: i64,
) -> Result<Lease, Rejection> {
    check_holder(current, name, holder, token, now_ms)?;
    Ok(Lease {
        token,
        expires_at_ms: ttl::deadline(now_ms, ttl_ms),
    })
}

/// Decides a release, answering the lock as stored afterwards: no holder, and the token kept.
pub fn release(
    current: Option<&LockState>,
    name: &str,
    holder: &str,
    token: u64,
    now_ms: i64,
) -> Result<LockState, Rejection> {
    check_holder(current, name, holder, token, now_ms)?;
    Ok(LockState {
        name: name.to_string(),
        holder: None,
        token,
        expires_at_ms: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::RejectionKind;

    const NOW: i64 = 10_000;

    fn held(holder: &str, token: u64, expires_at_ms: i64) -> LockState {
        LockState {
            name: "jobs".into(),
            holder: Some(holder.into()),
            token,
            expires_at_ms: Some(expires_at_ms),
        }
    }

    fn free(token: u64) -> LockState {
        LockState {
            name: "jobs".into(),
            holder: None,
            token,
            expires_at_ms: None,
        }
    }

    #[test]
    fn a_lease_is_held_until_its_stamp() {
        assert_eq!(held("a", 1, NOW + 1).holder_at(NOW), Some("a"));
        assert_eq!(held("a", 1, NOW).holder_at(NOW), None);
        assert_eq!(held("a", 1, NOW - 1).holder_at(NOW), None);
        assert_eq!(free(3).holder_at(NOW), None);
    }

    #[test]
    fn a_reader_sees_an_expired_lease_as_free() {
        assert_eq!(held("a", 4, NOW).seen_at(NOW), free(4));
        assert_eq!(held("a", 4, NOW + 1).seen_at(NOW), held("a", 4, NOW + 1));
        assert_eq!(free(4).seen_at(NOW), free(4));
    }

    #[test]
    fn acquiring_a_lock_never_held_grants_the_new_token() {
        let acquired = acquire(None, "jobs", "a", 500, NOW, 1).unwrap();
        assert_eq!(
            acquired,
            Acquisition::Granted(Lease {
                token: 1,
                expires_at_ms: NOW + 500
            })
        );
        assert_eq!(
            acquired.lease().held_by("jobs", "a"),
            held("a", 1, NOW + 500)
        );
    }

    #[test]
    fn acquiring_a_released_or_expired_lock_grants_a_new_token() {
        for current in [free(4), held("b", 4, NOW), held("a", 4, NOW)] {
            let acquired = acquire(Some(&current), "jobs", "a", 500, NOW, 9).unwrap();
            assert_eq!(
                acquired,
                Acquisition::Granted(Lease {
                    token: 9,
                    expires_at_ms: NOW + 500
                })
            );
        }
    }

    #[test]
    fn the_holder_acquiring_again_keeps_its_token() {
        let current = held("a", 4, NOW + 1);
        let acquired = acquire(Some(&current), "jobs", "a", 500, NOW, 9).unwrap();
        assert_eq!(
            acquired,
            Acquisition::Extended(Lease {
                token: 4,
                expires_at_ms: NOW + 500
            })
        );
    }

    #[test]
    fn acquiring_a_lock_another_holds_is_a_conflict() {
        let current = held("b", 4, NOW + 1);
        let refused = acquire(Some(&current), "jobs", "a", 500, NOW, 9).unwrap_err();
        assert_eq!(refused.kind, RejectionKind::Conflict);
        assert_eq!(
            refused.message,
            format!("lock \"jobs\" is held by \"b\" until {}", NOW + 1)
        );
    }

    #[test]
    fn a_lease_without_an_end_is_held_and_shown_ending_at_zero() {
        let current = LockState {
            expires_at_ms: None,
            ..held("b", 4, 0)
        };
        assert_eq!(current.holder_at(NOW), Some("b"));
        let refused = acquire(Some(&current), "jobs", "a", 500, NOW, 9).unwrap_err();
        assert_eq!(refused.message, "lock \"jobs\" is held by \"b\" until 0");
    }

    #[test]
    fn the_holder_with_its_token_may_renew_and_release() {
        let current = held("a", 4, NOW + 1);
        assert_eq!(
            renew(Some(&current), "jobs", "a", 4, 500, NOW),
            Ok(Lease {
                token: 4,
                expires_at_ms: NOW + 500
            })
        );
        assert_eq!(release(Some(&current), "jobs", "a", 4, NOW), Ok(free(4)));
    }

    #[test]
    fn another_holder_or_another_token_may_not_renew_or_release() {
        let current = held("b", 4, NOW + 1);
        let wrong_holder = "lock \"jobs\" is held by \"b\" with token 4, not by \"a\" with token 4";
        let refused = renew(Some(&current), "jobs", "a", 4, 500, NOW).unwrap_err();
        assert_eq!(refused.kind, RejectionKind::Conflict);
        assert_eq!(refused.message, wrong_holder);
        let refused = release(Some(&current), "jobs", "a", 4, NOW).unwrap_err();
        assert_eq!(refused.message, wrong_holder);
        let refused = release(Some(&current), "jobs", "b", 3, NOW).unwrap_err();
        assert_eq!(
            refused.message,
            "lock \"jobs\" is held by \"b\" with token 4, not by \"b\" with token 3"
        );
    }

    #[test]
    fn a_lock_not_held_may_not_be_renewed_or_released() {
        let not_held =
            "lock \"jobs\" is not held (its lease expired or it was released); acquire it again";
        for current in [None, Some(free(4)), Some(held("a", 4, NOW))] {
            let refused = renew(current.as_ref(), "jobs", "a", 4, 500, NOW).unwrap_err();
            assert_eq!(refused.kind, RejectionKind::Conflict);
            assert_eq!(refused.message, not_held);
            let refused = release(current.as_ref(), "jobs", "a", 4, NOW).unwrap_err();
            assert_eq!(refused.message, not_held);
        }
    }

    #[test]
    fn token_zero_is_never_a_holder_s_token() {
        let current = held("a", 4, NOW + 1);
        assert!(check_holder(Some(&current), "jobs", "a", 0, NOW).is_err());
        assert!(check_holder(None, "jobs", "a", 0, NOW).is_err());
    }
}
