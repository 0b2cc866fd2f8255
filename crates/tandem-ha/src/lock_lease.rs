//! The active role held as a lease on an external lock (a PostgreSQL row, an etcd key): what a
//! node concludes from each attempt to take or renew the lock, and when it tries next. Plain
//! decisions over the attempt's outcome and a monotonic clock, so that they are tested without
//! a database; the backends only carry out the attempts.
//!
//! The safety rule: the lock service dates a renewal from when it executes it, which is never
//! before the node sent it, so a node that counts its lease from the moment it *sent* the
//! renewal stops acting before any other node can take the lock.

use std::time::Duration;

use tokio::time::Instant;

use crate::{ActiveNode, ActiveView};

/// What one attempt to take or renew the lock found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Attempt {
    /// This node holds the lock with this fencing token.
    Holding { token: u64 },
    /// Another node holds it (`None`: nobody does, yet this node did not get it either), and
    /// its lease ends in `expires_in`.
    Other {
        active: Option<ActiveNode>,
        token: u64,
        expires_in: Duration,
    },
    /// The lock service did not answer in time, or answered an error.
    Failed,
}

/// How long this node may act on its last renewal.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tenure {
    pub token: u64,
    pub until: Instant,
}

/// One node's lease on the lock, as it understands it.
#[derive(Clone, Debug)]
pub struct LockLease {
    me: ActiveNode,
    ttl: Duration,
    tenure: Option<Tenure>,
    view: ActiveView,
    /// When the current holder's lease ends, as the lock service last said.
    others_expiry: Option<Instant>,
}

impl LockLease {
    pub fn new(me: ActiveNode, ttl: Duration) -> LockLease {
        LockLease {
            me,
            ttl,
            tenure: None,
            view: ActiveView::default(),
            others_expiry: None,
        }
    }

    /// Renewals go out every third of the TTL: two can fail before the lease runs out.
    pub fn renew_every(&self) -> Duration {
        self.ttl / 3
    }

    /// The view the node shows now.
    pub fn view(&self) -> &ActiveView {
        &self.view
    }

    pub fn tenure(&self) -> Option<Tenure> {
        self.tenure
    }

    /// Takes in what an attempt sent at `sent_at` found, and answers the view it leads to.
    pub fn record(&mut self, attempt: Attempt, sent_at: Instant, now: Instant) -> &ActiveView {
        match attempt {
            Attempt::Holding { token } => {
                self.tenure = Some(Tenure {
                    token,
                    until: sent_at + self.ttl,
                });
                self.others_expiry = None;
                self.view = ActiveView {
                    active: Some(self.me.clone()),
                    fencing_token: token,
                    is_self: true,
                    stepping_down: false,
                };
            }
            Attempt::Other {
                active,
                token,
                expires_in,
            } => {
                self.tenure = None;
                self.others_expiry = Some(now + expires_in);
                self.view = ActiveView {
                    // A row naming this node's id under another holder is an earlier run of
                    // this node, whose lease is running out: no one to forward to.
                    active: active.filter(|node| node.id != self.me.id),
                    fencing_token: token,
                    is_self: false,
                    stepping_down: false,
                };
            }
            Attempt::Failed => {
                self.expire(now);
            }
        }
        &self.view
    }

    /// Drops the role once the last renewal's lease has run out; answers whether it did.
    pub fn expire(&mut self, now: Instant) -> bool {
        match self.tenure {
            Some(tenure) if now < tenure.until => false,
            Some(_) => {
                self.tenure = None;
                self.view.active = None;
                self.view.is_self = false;
                true
            }
            None => {
                // Nothing heard from the lock service: the last active node known may be gone.
                if self.others_expiry.is_some_and(|at| now >= at) {
                    self.view.active = None;
                }
                false
            }
        }
    }

    /// This node gave the lock up (a step-down): it acts no more on its last renewal.
    pub fn released(&mut self) {
        self.tenure = None;
        self.view.active = None;
        self.view.is_self = false;
    }

    /// When to attempt next: every third of the TTL, but a standby tries again just after the
    /// holder's lease ends, so that a dead holder is replaced within one TTL.
    pub fn next_attempt(&self, now: Instant) -> Instant {
        let regular = now + self.renew_every();
        match (self.tenure, self.others_expiry) {
            (None, Some(expiry)) => regular.min(expiry.max(now) + EXPIRY_SLACK),
            _ => regular,
        }
    }

    /// How long an attempt sent now may take: a holder must hear back before its lease ends.
    pub fn attempt_timeout(&self, now: Instant) -> Duration {
        let regular = self.renew_every();
        match self.tenure {
            Some(tenure) => regular.min(tenure.until.saturating_duration_since(now)),
            None => regular,
        }
    }
}

/// Waited past a holder's expiry before trying to take the lock, so that the lock service's
/// clock has passed it too; also the quickest a standby asks again while a lease is ending
/// (etcd tells the time left in whole seconds, so a lease may end up to a second after it
/// says).
pub const EXPIRY_SLACK: Duration = Duration::from_millis(50);

#[cfg(test)]
mod tests {
    use super::*;

    fn node(id: u64) -> ActiveNode {
        ActiveNode {
            id,
            api_addr: format!("127.0.0.1:82{id:02}"),
            cluster_addr: format!("127.0.0.1:81{id:02}"),
        }
    }

    const TTL: Duration = Duration::from_secs(3);

    #[test]
    fn a_renewal_counts_from_when_it_was_sent() {
        let start = Instant::now();
        let mut lease = LockLease::new(node(1), TTL);
        let sent = start;
        let answered = start + Duration::from_millis(900);
        let view = lease
            .record(Attempt::Holding { token: 4 }, sent, answered)
            .clone();
        assert!(view.is_self);
        assert_eq!(view.fencing_token, 4);
        assert_eq!(view.active, Some(node(1)));
        assert_eq!(lease.tenure().unwrap().until, sent + TTL);
        // Failures keep the role only until the lease sent at `sent` runs out.
        lease.record(Attempt::Failed, start, start + Duration::from_millis(2999));
        assert!(lease.view().is_self);
        lease.record(Attempt::Failed, start, start + TTL);
        assert!(!lease.view().is_self);
        assert_eq!(lease.view().active, None);
        assert_eq!(
            lease.view().fencing_token,
            4,
            "the last token is still known"
        );
    }

    #[test]
    fn a_timer_alone_drops_the_role() {
        let start = Instant::now();
        let mut lease = LockLease::new(node(1), TTL);
        lease.record(Attempt::Holding { token: 1 }, start, start);
        assert!(!lease.expire(start + Duration::from_secs(2)));
        assert!(lease.expire(start + TTL));
        assert!(!lease.view().is_self);
    }

    #[test]
    fn a_standby_follows_the_holder_and_tries_just_after_its_lease() {
        let start = Instant::now();
        let mut lease = LockLease::new(node(2), TTL);
        let view = lease
            .record(
                Attempt::Other {
                    active: Some(node(1)),
                    token: 7,
                    expires_in: Duration::from_millis(400),
                },
                start,
                start,
            )
            .clone();
        assert!(!view.is_self);
        assert_eq!(view.other_active(), Some(&node(1)));
        assert_eq!(view.fencing_token, 7);
        assert_eq!(
            lease.next_attempt(start),
            start + Duration::from_millis(400) + EXPIRY_SLACK
        );
        // A long lease ahead: the regular third of the TTL.
        lease.record(
            Attempt::Other {
                active: Some(node(1)),
                token: 7,
                expires_in: TTL,
            },
            start,
            start,
        );
        assert_eq!(lease.next_attempt(start), start + TTL / 3);
        // The lock service unreachable past the holder's lease: the holder is no longer named.
        lease.record(Attempt::Failed, start, start + TTL);
        assert_eq!(lease.view().active, None);
    }

    #[test]
    fn a_holder_never_waits_past_its_lease_for_an_answer() {
        let start = Instant::now();
        let mut lease = LockLease::new(node(1), TTL);
        assert_eq!(lease.attempt_timeout(start), TTL / 3);
        lease.record(Attempt::Holding { token: 1 }, start, start);
        assert_eq!(
            lease.attempt_timeout(start + Duration::from_millis(2500)),
            Duration::from_millis(500)
        );
        assert_eq!(lease.attempt_timeout(start + TTL), Duration::ZERO);
    }

    #[test]
    fn a_released_lock_is_no_longer_acted_on() {
        let start = Instant::now();
        let mut lease = LockLease::new(node(1), TTL);
        lease.record(Attempt::Holding { token: 3 }, start, start);
        lease.released();
        assert!(!lease.view().is_self);
        assert_eq!(lease.tenure(), None);
    }
}
