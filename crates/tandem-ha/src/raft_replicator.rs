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
use crate::raft::matched_index;
use crate::read_index::ReadIndex;
use crate::{MemberStatus, ReplicateError, ReplicationStatus, Replicator};

/// How long a snapshot asked for by an operator may take.
const SNAPSHOT_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a joining server may go without answering the active node (appends, heartbeats,
/// snapshot chunks) before an add gives up on it: twice the time one snapshot chunk may take to
/// install, so a server busy with a large snapshot is not given up on.
const JOINER_SILENCE_LIMIT: Duration = Duration::from_secs(20);
/// How long an add waits in all for a server that keeps answering to catch up.
const CATCH_UP_LIMIT: Duration = Duration::from_secs(600);
/// How long a request waits for another membership change that is under way.
const UNDERWAY_WAIT: Duration = Duration::from_secs(60);
/// How often the wait for a joining server looks again when the Raft metrics do not change.
const JOIN_POLL: Duration = Duration::from_millis(250);

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

/// Where the wait for a joining server stands.
#[derive(Debug, PartialEq, Eq)]
enum JoinWait {
    /// It has every entry the log held when the wait began.
    CaughtUp,
    Waiting,
    /// It has not answered for [`JOINER_SILENCE_LIMIT`].
    Silent,
    /// It answers but has not caught up within [`CATCH_UP_LIMIT`].
    TooLong,
}

/// Whether a joining server that has replicated up to `matched` has caught up with `target`, the
/// end of the log when the wait began, after `waited` in all, the server last heard from
/// `last_heard` ago (never: `None`). A server that keeps answering is waited for, however long a
/// large state takes to reach it, up to [`CATCH_UP_LIMIT`]; one that does not answer is given up
/// on after [`JOINER_SILENCE_LIMIT`], not after the whole limit. Silence counts from the wait's
/// start at most: a server never heard from, or heard from before (the same id, removed and now
/// added again), has had that long to answer.
fn join_wait(
    matched: Option<u64>,
    target: Option<u64>,
    last_heard: Option<Duration>,
    waited: Duration,
) -> JoinWait {
    let silent_for = last_heard.map_or(waited, |ago| ago.min(waited));
    if matched >= target {
        JoinWait::CaughtUp
    } else if silent_for >= JOINER_SILENCE_LIMIT {
        JoinWait::Silent
    } else if waited >= CATCH_UP_LIMIT {
        JoinWait::TooLong
    } else {
        JoinWait::Waiting
    }
}

/// Waits (on the leader) until joining server `id` has every entry the log holds now, while it
/// keeps answering; see [`join_wait`].
async fn wait_for_joiner(
    raft: &Raft,
    contacts: &PeerContacts,
    id: NodeId,
) -> Result<(), ReplicateError> {
    let started = tokio::time::Instant::now();
    let mut metrics = raft.metrics();
    let target = metrics.borrow().last_log_index;
    loop {
        let matched = matched_index(&metrics.borrow(), id);
        let waited = started.elapsed();
        let last_heard = contacts.millis_since(id).map(Duration::from_millis);
        let retry = "then run the same add again to finish (or remove it)";
        match join_wait(matched, target, last_heard, waited) {
            JoinWait::CaughtUp => return Ok(()),
            JoinWait::Silent => {
                return Err(ReplicateError::Unavailable(format!(
                    "node {id} joined as a learner but has not answered the active node for {} s; check that it runs with --join and the cluster secret and that its cluster address is reachable from the active node, {retry}",
                    JOINER_SILENCE_LIMIT.as_secs()
                )))
            }
            JoinWait::TooLong => {
                return Err(ReplicateError::Unavailable(format!(
                    "node {id} joined as a learner and answers, but has not caught up within {} s; {retry}",
                    CATCH_UP_LIMIT.as_secs()
                )))
            }
            JoinWait::Waiting => {
                if let Ok(Err(_)) = tokio::time::timeout(JOIN_POLL, metrics.changed()).await {
                    return Err(ReplicateError::Unavailable(
                        "Raft stopped on this node while a server was joining".into(),
                    ));
                }
            }
        }
    }
}

/// Carries out an allowed membership change with Raft: a new server is a learner until it has
/// caught up, then becomes a voter through joint consensus; a removed one leaves the same way.
async fn carry_out(
    raft: &Raft,
    contacts: &PeerContacts,
    change: &MemberChange,
    step: &MembershipStep,
) -> Result<(), ReplicateError> {
    let failed = |e: &dyn std::fmt::Display| {
        ReplicateError::Unavailable(format!("{change} did not go through: {e}"))
    };
    // A learner votes only once it has caught up, whether it was added now or by an earlier
    // request that stopped half-way.
    let catch_up_then_promote = |id: NodeId| async move {
        wait_for_joiner(raft, contacts, id).await?;
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
                MembershipStep::Underway if started.elapsed() < UNDERWAY_WAIT => {
                    tokio::time::sleep(Duration::from_millis(50)).await
                }
                MembershipStep::Underway
                | MembershipStep::AlreadyDone
                | MembershipStep::StepDownFirst => return Ok(step),
                _ => break step,
            }
        };
        // Its own task: a client that goes away does not stop a change half-way.
        let (raft, contacts, running) = (
            self.raft.clone(),
            self.contacts.clone(),
            self.membership_change.clone(),
        );
        let task = tokio::spawn(async move {
            let outcome = carry_out(&raft, &contacts, &change, &step).await;
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
        let matched = |id: &NodeId| matched_index(&m, *id);
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
    use std::time::Duration;

    use super::{entries_behind, join_wait, JoinWait, CATCH_UP_LIMIT, JOINER_SILENCE_LIMIT};

    const SECOND: Duration = Duration::from_secs(1);

    #[test]
    fn a_joiner_that_has_the_log_as_it_stood_has_caught_up() {
        let heard = Some(SECOND);
        assert_eq!(
            join_wait(Some(10), Some(10), heard, SECOND),
            JoinWait::CaughtUp
        );
        assert_eq!(
            join_wait(Some(12), Some(10), heard, SECOND),
            JoinWait::CaughtUp
        );
        assert_eq!(
            join_wait(None, None, None, SECOND),
            JoinWait::CaughtUp,
            "an empty log"
        );
        // Even when it then fell silent: it has what the promotion needs.
        let long = JOINER_SILENCE_LIMIT + CATCH_UP_LIMIT;
        assert_eq!(
            join_wait(Some(10), Some(10), Some(long), long),
            JoinWait::CaughtUp
        );
    }

    #[test]
    fn a_joiner_that_keeps_answering_is_waited_for_past_the_silence_limit() {
        let answering = Some(SECOND);
        let waited = JOINER_SILENCE_LIMIT * 5;
        assert_eq!(
            join_wait(None, Some(10), answering, waited),
            JoinWait::Waiting
        );
        assert_eq!(
            join_wait(Some(3), Some(10), answering, waited),
            JoinWait::Waiting
        );
        assert_eq!(
            join_wait(Some(3), Some(10), answering, CATCH_UP_LIMIT),
            JoinWait::TooLong
        );
    }

    #[test]
    fn a_joiner_silent_for_the_limit_is_given_up_on_before_the_whole_wait() {
        let below = JOINER_SILENCE_LIMIT - SECOND;
        assert_eq!(join_wait(None, Some(10), None, below), JoinWait::Waiting);
        assert_eq!(
            join_wait(None, Some(10), None, JOINER_SILENCE_LIMIT),
            JoinWait::Silent,
            "never heard from"
        );
        assert_eq!(
            join_wait(
                Some(4),
                Some(10),
                Some(JOINER_SILENCE_LIMIT),
                CATCH_UP_LIMIT
            ),
            JoinWait::Silent,
            "silence is named before the whole wait"
        );
    }

    #[test]
    fn silence_counts_from_the_start_of_the_wait_at_most() {
        // The same id heard from an hour ago, before it was removed and added again.
        let an_hour = Some(Duration::from_secs(3600));
        assert_eq!(
            join_wait(None, Some(10), an_hour, SECOND),
            JoinWait::Waiting
        );
        assert_eq!(
            join_wait(None, Some(10), an_hour, JOINER_SILENCE_LIMIT),
            JoinWait::Silent
        );
    }

    #[test]
    fn lag_counts_the_entries_a_member_lacks() {
        assert_eq!(entries_behind(Some(10), Some(10)), 0);
        assert_eq!(entries_behind(Some(10), Some(7)), 3);
        assert_eq!(entries_behind(Some(10), None), 11, "nothing replicated yet");
        assert_eq!(entries_behind(None, None), 0);
        assert_eq!(entries_behind(Some(3), Some(5)), 0);
    }
}
