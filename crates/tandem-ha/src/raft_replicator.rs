//! The built-in replication: commands go through the Raft log, reads are confirmed with a
//! quorum (shared read index), and the Raft metrics tell how the group stands.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tandem_raft::openraft::{ChangeMembers, ServerState};
use tandem_raft::{
    plan_change, ClusterNode, LogStore, MemberChange, MembershipStep, MembershipView, NodeId,
    PeerContacts, Raft,
};
use tandem_store::{Applied, Command};

use crate::proposals::ProposalQueue;
use crate::raft::caught_up;
use crate::read_index::ReadIndex;
use crate::{MemberStatus, ReplicateError, ReplicationStatus, Replicator};

/// How long a snapshot asked for by an operator may take.
const SNAPSHOT_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a joining server may take to catch up (the log or a snapshot) before it votes.
const CATCH_UP_TIMEOUT: Duration = Duration::from_secs(60);

pub struct RaftReplicator {
    raft: Raft,
    id: NodeId,
    log: LogStore,
    contacts: PeerContacts,
    /// Commands on their way into the Raft log, several to an entry when they arrive together.
    proposals: ProposalQueue,
    /// Leadership confirmations that concurrent linearizable reads share.
    read_index: ReadIndex,
    /// The membership change this node is carrying out, if any: one at a time.
    membership_change: Arc<Mutex<Option<MemberChange>>>,
}

impl RaftReplicator {
    /// `timeout` bounds each write (queueing included) and each read confirmation.
    pub fn start(
        raft: Raft,
        id: NodeId,
        log: LogStore,
        contacts: PeerContacts,
        timeout: Duration,
    ) -> RaftReplicator {
        RaftReplicator {
            proposals: ProposalQueue::start(raft.clone(), timeout, log.commit_clock()),
            read_index: ReadIndex::new(raft.clone(), timeout),
            raft,
            id,
            log,
            contacts,
            membership_change: Arc::default(),
        }
    }

    fn membership_view(&self) -> MembershipView {
        let stored = self.raft.metrics().borrow().membership_config.clone();
        let committed = stored.log_id().map(|l| l.index) <= self.log.committed_index();
        MembershipView::from_stored(&stored, committed)
    }
}

/// Carries out an allowed membership change with Raft: a new server is a learner until it has
/// caught up, then becomes a voter through joint consensus; a removed one leaves the same way.
async fn carry_out(
    raft: &Raft,
    change: &MemberChange,
    step: &MembershipStep,
) -> Result<(), ReplicateError> {
    let failed = |e: &dyn std::fmt::Display| {
        ReplicateError::Unavailable(format!("{change} did not go through: {e}"))
    };
    // A learner votes only once it has caught up, whether it was added now or by an earlier
    // request that stopped half-way.
    let catch_up_then_promote = |id: NodeId| async move {
        caught_up(raft, id, CATCH_UP_TIMEOUT)
            .await
            .map_err(|_| {
                ReplicateError::Unavailable(format!(
                    "node {id} joined as a learner but did not catch up within {CATCH_UP_TIMEOUT:?}; check that it runs with --join and the cluster secret, then run the same add again to finish (or remove it)"
                ))
            })?;
        raft.change_membership(ChangeMembers::AddVoterIds([id].into()), false)
            .await
            .map(|_| ())
            .map_err(|e| failed(&e))
    };
    match (change, step) {
        (MemberChange::Add { id, node }, MembershipStep::AddLearnerThenPromote) => {
            raft.add_learner(*id, node.clone(), false)
                .await
                .map_err(|e| failed(&e))?;
            catch_up_then_promote(*id).await
        }
        (MemberChange::Add { id, .. }, MembershipStep::Promote) => catch_up_then_promote(*id).await,
        (MemberChange::Remove { id }, MembershipStep::Remove) => {
            let voter = raft
                .metrics()
                .borrow()
                .membership_config
                .membership()
                .voter_ids()
                .any(|v| v == *id);
            let members = if voter {
                ChangeMembers::RemoveVoters([*id].into())
            } else {
                ChangeMembers::RemoveNodes([*id].into())
            };
            raft.change_membership(members, false)
                .await
                .map(|_| ())
                .map_err(|e| failed(&e))
        }
        _ => Ok(()),
    }
}

/// Entries of a log that ends at `last` that a member which matched up to `matched` lacks.
fn entries_behind(last: Option<u64>, matched: Option<u64>) -> u64 {
    let count = |index: Option<u64>| index.map_or(0, |i| i + 1);
    count(last).saturating_sub(count(matched))
}

fn role_name(state: ServerState) -> &'static str {
    match state {
        ServerState::Leader => "leader",
        ServerState::Follower => "follower",
        ServerState::Candidate => "candidate",
        ServerState::Learner => "learner",
        ServerState::Shutdown => "shutdown",
    }
}

#[async_trait::async_trait]
impl Replicator for RaftReplicator {
    async fn propose(&self, command: Command) -> Result<Applied, ReplicateError> {
        self.proposals.propose(command).await
    }

    async fn confirm_read(&self) -> Result<(), ReplicateError> {
        self.read_index.confirm().await
    }

    async fn snapshot(&self) -> Result<Option<u64>, ReplicateError> {
        let applied = self.raft.metrics().borrow().last_applied.map(|l| l.index);
        self.raft
            .trigger()
            .snapshot()
            .await
            .map_err(|e| ReplicateError::Unavailable(e.to_string()))?;
        let done = self
            .raft
            .wait(Some(SNAPSHOT_TIMEOUT))
            .metrics(|m| m.snapshot.map(|l| l.index) >= applied, "snapshot")
            .await
            .map_err(|e| ReplicateError::Unavailable(format!("snapshot did not finish: {e}")))?;
        Ok(done.snapshot.map(|l| l.index))
    }

    async fn record_addresses(
        &self,
        id: u64,
        cluster_addr: String,
        api_addr: String,
    ) -> Result<(), ReplicateError> {
        if self.recorded_addresses(id).is_none() {
            return Err(ReplicateError::Refused(format!(
                "node {id} is not a member of this cluster"
            )));
        }
        let node = ClusterNode {
            cluster_addr,
            api_addr,
        };
        self.raft
            .change_membership(ChangeMembers::SetNodes([(id, node)].into()), false)
            .await
            .map(|_| ())
            .map_err(|e| ReplicateError::Unavailable(format!("cannot record the addresses: {e}")))
    }

    async fn change_members(&self, change: MemberChange) -> Result<MembershipStep, ReplicateError> {
        let started = tokio::time::Instant::now();
        let step = loop {
            let step = {
                let mut running = self
                    .membership_change
                    .lock()
                    .unwrap_or_else(|p| p.into_inner());
                let step =
                    plan_change(&self.membership_view(), &change, self.id, running.as_ref())?;
                let carried_out_here = matches!(
                    step,
                    MembershipStep::AddLearnerThenPromote
                        | MembershipStep::Promote
                        | MembershipStep::Remove
                );
                if carried_out_here {
                    *running = Some(change.clone());
                }
                step
            };
            match step {
                MembershipStep::Underway if started.elapsed() < CATCH_UP_TIMEOUT => {
                    tokio::time::sleep(Duration::from_millis(50)).await
                }
                MembershipStep::Underway
                | MembershipStep::AlreadyDone
                | MembershipStep::StepDownFirst => return Ok(step),
                _ => break step,
            }
        };
        // Its own task: a client that goes away does not stop a change half-way.
        let (raft, running) = (self.raft.clone(), self.membership_change.clone());
        let task = tokio::spawn(async move {
            let outcome = carry_out(&raft, &change, &step).await;
            *running.lock().unwrap_or_else(|p| p.into_inner()) = None;
            outcome.map(|()| step)
        });
        task.await
            .map_err(|e| ReplicateError::Internal(format!("the membership change failed: {e}")))?
    }

    fn recorded_addresses(&self, id: u64) -> Option<(String, String)> {
        self.raft
            .metrics()
            .borrow()
            .membership_config
            .membership()
            .get_node(&id)
            .map(|n| (n.cluster_addr.clone(), n.api_addr.clone()))
    }

    fn status(&self) -> ReplicationStatus {
        let m = self.raft.metrics().borrow().clone();
        let membership = m.membership_config.membership();
        let voters: std::collections::BTreeSet<_> = membership.voter_ids().collect();
        let matched = |id: &NodeId| {
            m.replication
                .as_ref()
                .and_then(|r| r.get(id).cloned())
                .flatten()
                .map(|log_id| log_id.index)
        };
        let members = membership
            .nodes()
            .map(|(id, n)| MemberStatus {
                id: *id,
                cluster_addr: n.cluster_addr.clone(),
                api_addr: n.api_addr.clone(),
                voter: voters.contains(id),
                leads: m.current_leader == Some(*id),
                matched_index: matched(id),
                lag: match (&m.replication, *id == self.id) {
                    (Some(_), true) => Some(0),
                    (Some(_), false) => Some(entries_behind(m.last_log_index, matched(id))),
                    (None, _) => None,
                },
                last_contact_ms: if *id == self.id {
                    Some(0)
                } else {
                    self.contacts.millis_since(*id)
                },
            })
            .collect();
        ReplicationStatus {
            role: role_name(m.state),
            term: m.current_term,
            leader_id: m.current_leader,
            commit_index: self.log.committed_index(),
            applied_index: m.last_applied.map(|l| l.index),
            last_log_index: m.last_log_index,
            snapshot_index: m.snapshot.map(|l| l.index),
            purged_index: m.purged.map(|l| l.index),
            millis_since_quorum_ack: m.millis_since_quorum_ack,
            members,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::entries_behind;

    #[test]
    fn lag_counts_the_entries_a_member_lacks() {
        assert_eq!(entries_behind(Some(10), Some(10)), 0);
        assert_eq!(entries_behind(Some(10), Some(7)), 3);
        assert_eq!(entries_behind(Some(10), None), 11, "nothing replicated yet");
        assert_eq!(entries_behind(None, None), 0);
        assert_eq!(entries_behind(Some(3), Some(5)), 0);
    }
}
