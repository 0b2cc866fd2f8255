//! The built-in backend: the Raft leader is the active node and the term is the fencing token.
//! Leadership changes reach every node with Raft's own heartbeats, so the view is pushed.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tandem_raft::openraft::{RaftMetrics, ServerState};
use tandem_raft::{ClusterClient, ClusterNode, LogStore, NodeId, PeerContacts, Raft};
use tokio::sync::watch;

use crate::{ActiveNode, ActiveView, HaBackend, HaError};

/// How long a successor may take to catch up with the leader's log before a step-down.
const CATCH_UP: Duration = Duration::from_secs(2);
/// How long the new leader may take to be elected after a step-down (the lease lapses first).
const HANDOVER: Duration = Duration::from_secs(3);

pub struct RaftHa {
    pub(crate) raft: Raft,
    pub(crate) id: NodeId,
    view: watch::Sender<ActiveView>,
    stepping_down: Arc<AtomicBool>,
    /// Speaks to the other nodes' cluster ports.
    pub(crate) cluster: ClusterClient,
    /// When this node last heard from each peer: a successor must be in touch, and a silent
    /// leader is noticed.
    pub(crate) contacts: PeerContacts,
    /// This node's log, to compare how up to date it is with the other standbys.
    pub(crate) log: LogStore,
}

/// The view a node has of the active role, from its Raft metrics.
pub fn view_from(
    metrics: &RaftMetrics<NodeId, ClusterNode>,
    id: NodeId,
    stepping_down: bool,
) -> ActiveView {
    let active = metrics.current_leader.and_then(|leader| {
        let node = metrics.membership_config.membership().get_node(&leader)?;
        Some(ActiveNode {
            id: leader,
            api_addr: node.api_addr.clone(),
            cluster_addr: node.cluster_addr.clone(),
        })
    });
    if metrics.running_state.is_err() {
        // Raft has stopped on this node: it is active for nobody and knows no active node.
        return ActiveView {
            active: None,
            fencing_token: metrics.current_term,
            is_self: false,
            stepping_down,
        };
    }
    let is_self = metrics.state == ServerState::Leader && metrics.current_leader == Some(id);
    ActiveView {
        // While stepping down, this node must not be sent anything that needs the active role.
        active: if stepping_down && is_self {
            None
        } else {
            active
        },
        fencing_token: metrics.current_term,
        is_self: is_self && !stepping_down,
        stepping_down,
    }
}

/// The index up to which member `id` has replicated the log, as the leader's metrics show it
/// (`None` on other nodes, and for a member that has matched nothing yet).
pub(crate) fn matched_index(metrics: &RaftMetrics<NodeId, ClusterNode>, id: NodeId) -> Option<u64> {
    metrics
        .replication
        .as_ref()
        .and_then(|r| r.get(&id).cloned().flatten())
        .map(|l| l.index)
}

/// Waits (on the leader) until member `id` has replicated the whole log as it stands now.
pub(crate) async fn caught_up(raft: &Raft, id: NodeId, timeout: Duration) -> Result<(), String> {
    let last = raft.metrics().borrow().last_log_index;
    raft.wait(Some(timeout))
        .metrics(|m| matched_index(m, id) >= last, "member caught up")
        .await
        .map(|_| ())
        .map_err(|e| e.to_string())
}

impl RaftHa {
    /// Starts following the Raft metrics; the returned backend pushes a new view on every change.
    pub fn start(
        raft: Raft,
        id: NodeId,
        cluster: ClusterClient,
        contacts: PeerContacts,
        log: LogStore,
    ) -> Arc<RaftHa> {
        let initial = view_from(&raft.metrics().borrow(), id, false);
        let (view, _) = watch::channel(initial);
        let ha = Arc::new(RaftHa {
            raft,
            id,
            view,
            stepping_down: Arc::new(AtomicBool::new(false)),
            cluster,
            contacts,
            log,
        });
        tokio::spawn(ha.clone().watch_for_silent_leader());
        let follower = ha.clone();
        tokio::spawn(async move {
            let mut metrics = follower.raft.metrics();
            loop {
                follower.publish();
                if metrics.changed().await.is_err() {
                    return;
                }
            }
        });
        ha
    }

    fn publish(&self) {
        let next = view_from(
            &self.raft.metrics().borrow(),
            self.id,
            self.stepping_down.load(Ordering::SeqCst),
        );
        self.view.send_if_modified(|current| {
            if *current == next {
                false
            } else {
                if current.active != next.active {
                    tracing::info!(active = ?next.active.as_ref().map(|a| a.id), term = next.fencing_token, "active node changed");
                }
                *current = next;
                true
            }
        });
    }

    /// The voter, other than this node and in touch with it, that has replicated the most of
    /// the log.
    fn best_successor(&self) -> Option<(NodeId, u64)> {
        let metrics = self.raft.metrics().borrow().clone();
        let in_touch = Duration::from_millis(self.raft.config().election_timeout_max);
        let membership = metrics.membership_config.membership();
        let replication = metrics.replication.as_ref()?;
        membership
            .voter_ids()
            .filter(|id| *id != self.id)
            .filter(|id| {
                self.contacts
                    .millis_since(*id)
                    .is_some_and(|ms| ms <= in_touch.as_millis() as u64)
            })
            .map(|id| {
                let matched = replication
                    .get(&id)
                    .cloned()
                    .flatten()
                    .map(|l| l.index)
                    .unwrap_or(0);
                (id, matched)
            })
            .max_by_key(|(_, matched)| *matched)
    }

    async fn hand_over(&self) -> Result<(), HaError> {
        let (target, _) = self.best_successor().ok_or_else(|| {
            HaError::NoSuccessor("no other voter is in touch with this node".into())
        })?;
        caught_up(&self.raft, target, CATCH_UP)
            .await
            .map_err(|e| HaError::NoSuccessor(format!("node {target} did not catch up: {e}")))?;
        // Followers refuse to vote while this leader's lease (the longest election timeout since
        // they last heard from it) holds. Going quiet lets it lapse; then the most up-to-date
        // standby — the one just waited for — calls the election (see silent_leader.rs).
        self.raft.runtime_config().heartbeat(false);
        self.raft.runtime_config().elect(false);
        let id = self.id;
        self.raft
            .wait(Some(HANDOVER))
            .metrics(
                |m| m.current_leader.is_some_and(|l| l != id),
                "another node leads",
            )
            .await
            .map_err(|e| HaError::Timeout(e.to_string()))?;
        tracing::info!(successor = target, "handed the active role over");
        Ok(())
    }
}

#[async_trait::async_trait]
impl HaBackend for RaftHa {
    fn name(&self) -> &'static str {
        "raft"
    }

    fn ha_available(&self) -> bool {
        self.raft
            .metrics()
            .borrow()
            .membership_config
            .membership()
            .voter_ids()
            .count()
            > 1
    }

    fn watch(&self) -> watch::Receiver<ActiveView> {
        self.view.subscribe()
    }

    /// Raft itself runs every voter for leadership (elections, and the silent-leader watch
    /// that calls one at once), so acquiring is waiting until this node has won one.
    async fn acquire(&self) -> Result<u64, HaError> {
        let mut view = self.watch();
        let held = view
            .wait_for(|v| v.is_self)
            .await
            .map_err(|_| HaError::Stopped("the Raft metrics ended".into()))?;
        Ok(held.fencing_token)
    }

    async fn step_down(&self) -> Result<(), HaError> {
        if !self.view().is_self {
            return Ok(());
        }
        self.stepping_down.store(true, Ordering::SeqCst);
        self.publish();
        let result = self.hand_over().await;
        self.raft.runtime_config().heartbeat(true);
        self.raft.runtime_config().elect(true);
        self.stepping_down.store(false, Ordering::SeqCst);
        self.publish();
        result
    }
}
