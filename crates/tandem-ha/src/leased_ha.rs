//! The active role held as a lease on a lock in an external service ([`LockService`]: a
//! PostgreSQL row, an etcd key). One task per server runs for the lock, renews it, follows
//! whoever holds it, and drops the role the moment its lease runs out, even while the service
//! does not answer; what it concludes is [`LockLease`]'s. Every call to the service is bounded
//! in time, so a step-down never hangs on an unreachable service.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch, Notify};
use tokio::time::Instant;

use crate::lock_lease::{Attempt, LockLease, EXPIRY_SLACK};
use crate::{ActiveNode, ActiveView, HaBackend, HaError};

/// A lock in an external service, as one server sees it.
#[async_trait::async_trait]
pub trait LockService: Send + 'static {
    /// One attempt: take or renew the lock when `take`, else only read who holds it.
    async fn attempt(&mut self, take: bool) -> Result<Attempt, String>;

    /// Gives up the lock held with `token`, so that a standby takes it at once.
    async fn release(&mut self, token: u64) -> Result<(), String>;

    /// Forgets connections after a failed or timed-out call; the next attempt makes new ones.
    fn reset(&mut self);

    /// Signalled when the lock may have changed hands (a watch on it), so that the next
    /// attempt goes out at once rather than at its time; `None` when the service only polls.
    fn changes(&self) -> Option<Arc<Notify>> {
        None
    }
}

/// What the server asks of the lock's task.
enum Request {
    /// Release the lock and stay out of the running for one TTL; answers when released.
    StandAside(oneshot::Sender<Result<(), HaError>>),
}

/// An [`HaBackend`] whose active node is the holder of a leased lock.
pub struct LeasedHa {
    name: &'static str,
    view: watch::Receiver<ActiveView>,
    requests: mpsc::Sender<Request>,
    ttl: Duration,
    task: tokio::task::JoinHandle<()>,
}

impl LeasedHa {
    /// Starts running for `service`'s lock as `me`, with leases of `ttl`.
    pub fn start(
        name: &'static str,
        service: impl LockService,
        me: ActiveNode,
        ttl: Duration,
    ) -> Arc<LeasedHa> {
        let (view_tx, view) = watch::channel(ActiveView::default());
        let (requests, requests_rx) = mpsc::channel(4);
        let runner = LockRunner {
            name,
            lease: LockLease::new(me, ttl),
            service,
            ttl,
            view: view_tx,
            stand_aside_until: None,
        };
        let task = tokio::spawn(runner.run(requests_rx));
        Arc::new(LeasedHa {
            name,
            view,
            requests,
            ttl,
            task,
        })
    }

    fn stopped(&self) -> HaError {
        HaError::Stopped(format!("the {} lock task ended", self.name))
    }
}

impl Drop for LeasedHa {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[async_trait::async_trait]
impl HaBackend for LeasedHa {
    fn name(&self) -> &'static str {
        self.name
    }

    /// Any server that reaches the lock service can take over.
    fn ha_available(&self) -> bool {
        true
    }

    fn watch(&self) -> watch::Receiver<ActiveView> {
        self.view.clone()
    }

    async fn acquire(&self) -> Result<u64, HaError> {
        let mut view = self.view.clone();
        let held = view.wait_for(|v| v.is_self).await;
        held.map(|v| v.fencing_token).map_err(|_| self.stopped())
    }

    async fn step_down(&self) -> Result<(), HaError> {
        if !self.view.borrow().is_self {
            return Ok(());
        }
        let (done, released) = oneshot::channel();
        self.requests
            .send(Request::StandAside(done))
            .await
            .map_err(|_| self.stopped())?;
        released.await.map_err(|_| self.stopped())??;
        // A standby takes the released lock at its next attempt, within a third of the TTL.
        let mut view = self.view.clone();
        let moved = view.wait_for(|v| v.other_active().is_some());
        let handed_over = tokio::time::timeout(self.ttl, moved)
            .await
            .map(|moved| moved.is_ok());
        match handed_over {
            Ok(true) => Ok(()),
            Ok(false) => Err(self.stopped()),
            Err(_) => Err(HaError::NoSuccessor(format!(
                "no other server took the {} lock within {:?}",
                self.name, self.ttl
            ))),
        }
    }
}

/// The task that holds or follows the lock.
struct LockRunner<S> {
    name: &'static str,
    lease: LockLease,
    service: S,
    ttl: Duration,
    view: watch::Sender<ActiveView>,
    /// After a step-down this node leaves the lock to the others until then.
    stand_aside_until: Option<Instant>,
}

impl<S: LockService> LockRunner<S> {
    async fn run(mut self, mut requests: mpsc::Receiver<Request>) {
        let mut next = Instant::now();
        let changes = self.service.changes();
        loop {
            // The role ends when the lease does, even while an attempt is still pending.
            let lease_end = self.lease.tenure().map(|t| t.until);
            tokio::select! {
                _ = tokio::time::sleep_until(next) => {
                    self.attempt().await;
                    next = self.lease.next_attempt(Instant::now());
                }
                _ = sleep_until_some(lease_end) => {
                    if self.lease.expire(Instant::now()) {
                        tracing::warn!(backend = self.name, "the lock could not be renewed in time; this node is no longer active");
                        self.publish();
                    }
                }
                _ = notified_or_pending(changes.as_deref()) => {
                    // Not sooner than a standby would try after an expiry, however often the
                    // lock changes.
                    next = next.min(Instant::now() + EXPIRY_SLACK);
                }
                request = requests.recv() => match request {
                    Some(Request::StandAside(done)) => {
                        let _ = done.send(self.stand_aside().await);
                        next = Instant::now() + self.lease.renew_every();
                    }
                    None => return,
                },
            }
        }
    }

    async fn attempt(&mut self) {
        let sent_at = Instant::now();
        let timeout = self.lease.attempt_timeout(sent_at);
        let take = self.stand_aside_until.is_none_or(|until| sent_at >= until);
        let attempt = match tokio::time::timeout(timeout, self.service.attempt(take)).await {
            Ok(Ok(attempt)) => attempt,
            Ok(Err(e)) => {
                tracing::debug!(backend = self.name, error = %e, "lock attempt failed");
                self.service.reset();
                Attempt::Failed
            }
            Err(_) => {
                tracing::debug!(backend = self.name, ?timeout, "lock attempt timed out");
                self.service.reset();
                Attempt::Failed
            }
        };
        let was_self = self.lease.view().is_self;
        self.lease.record(attempt, sent_at, Instant::now());
        if was_self && !self.lease.view().is_self {
            tracing::warn!(backend = self.name, "this node lost the lock");
        }
        self.publish();
    }

    async fn stand_aside(&mut self) -> Result<(), HaError> {
        let Some(tenure) = self.lease.tenure() else {
            return Ok(());
        };
        self.stand_aside_until = Some(Instant::now() + self.ttl);
        // From here this node acts no more, whether or not the release reaches the service.
        self.lease.released();
        self.publish();
        let release = self.service.release(tenure.token);
        match tokio::time::timeout(self.lease.renew_every(), release).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => {
                self.service.reset();
                Err(HaError::Timeout(format!(
                    "the {} lock was not released ({e}); a standby takes it when it expires",
                    self.name
                )))
            }
            Err(_) => {
                self.service.reset();
                Err(HaError::Timeout(format!(
                    "the {} lock service did not answer the release; a standby takes the lock when it expires",
                    self.name
                )))
            }
        }
    }

    fn publish(&self) {
        let view = self.lease.view().clone();
        self.view.send_if_modified(|current| {
            let changed = *current != view;
            *current = view;
            changed
        });
    }
}

async fn notified_or_pending(changes: Option<&Notify>) {
    match changes {
        Some(changes) => changes.notified().await,
        None => std::future::pending().await,
    }
}

async fn sleep_until_some(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    /// How the stand-in lock service answers.
    #[derive(Clone, Copy, Debug)]
    enum Mode {
        /// This node holds the lock with this token.
        Grants(u64),
        /// Never answers, as an unreachable database.
        Hangs,
    }

    struct StandIn(Arc<Mutex<Mode>>);

    impl StandIn {
        fn mode(&self) -> Mode {
            *self.0.lock().unwrap_or_else(|p| p.into_inner())
        }
    }

    #[async_trait::async_trait]
    impl LockService for StandIn {
        async fn attempt(&mut self, _take: bool) -> Result<Attempt, String> {
            match self.mode() {
                Mode::Grants(token) => Ok(Attempt::Holding { token }),
                Mode::Hangs => std::future::pending().await,
            }
        }

        async fn release(&mut self, _token: u64) -> Result<(), String> {
            match self.mode() {
                Mode::Grants(_) => Ok(()),
                Mode::Hangs => std::future::pending().await,
            }
        }

        fn reset(&mut self) {}
    }

    const TTL: Duration = Duration::from_secs(3);

    fn started(mode: Mode) -> (Arc<LeasedHa>, Arc<Mutex<Mode>>) {
        let shared = Arc::new(Mutex::new(mode));
        let me = ActiveNode {
            id: 1,
            api_addr: "127.0.0.1:8200".into(),
            cluster_addr: "127.0.0.1:8100".into(),
        };
        let ha = LeasedHa::start("stand-in", StandIn(shared.clone()), me, TTL);
        (ha, shared)
    }

    #[tokio::test(start_paused = true)]
    async fn the_role_ends_with_the_last_lease_while_the_service_hangs() {
        let (ha, mode) = started(Mode::Grants(7));
        assert_eq!(ha.acquire().await.unwrap(), 7);
        let renewed_by = Instant::now();
        *mode.lock().unwrap() = Mode::Hangs;
        let mut view = ha.watch();
        view.wait_for(|v| !v.is_self).await.unwrap();
        // The last renewal went out at most a third of the TTL before the service hung.
        let held_for = renewed_by.elapsed();
        assert!(
            held_for <= TTL && held_for >= TTL - TTL / 3,
            "held the role {held_for:?} past the last answer"
        );
        assert_eq!(ha.view().active, None);
        // It comes back when the service does.
        *mode.lock().unwrap() = Mode::Grants(8);
        assert_eq!(ha.acquire().await.unwrap(), 8);
    }

    #[tokio::test(start_paused = true)]
    async fn a_step_down_never_hangs_on_the_service() {
        let (ha, mode) = started(Mode::Grants(3));
        ha.acquire().await.unwrap();
        *mode.lock().unwrap() = Mode::Hangs;
        let asked = Instant::now();
        let stepped = ha.step_down().await;
        assert!(matches!(stepped, Err(HaError::Timeout(_))), "{stepped:?}");
        assert!(asked.elapsed() <= TTL / 3, "took {:?}", asked.elapsed());
        assert!(
            !ha.view().is_self,
            "acts no more once it asked to step down"
        );
    }
}
