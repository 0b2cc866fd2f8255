//! The built-in replication: commands go through the Raft log, reads are confirmed with a
//! quorum (shared read index), and the Raft metrics tell how the group stands.

use std::time::Duration;

use tandem_raft::openraft::{ChangeMembers, ServerState};
use tandem_raft::{ClusterNode, LogStore, NodeId, PeerContacts, Raft};
use tandem_store::{Applied, Command};

use crate::proposals::ProposalQueue;
use crate::read_index::ReadIndex;
use crate::{MemberStatus, ReplicateError, ReplicationStatus, Replicator};

/// How long a snapshot asked for by an operator may take.
const SNAPSHOT_TIMEOUT: Duration = Duration::from_secs(60);

pub struct RaftReplicator {
    raft: Raft,
    id: NodeId,
    log: LogStore,
    contacts: PeerContacts,
    /// Commands on their way into the Raft log, several to an entry when they arrive together.
    proposals: ProposalQueue,
    /// Leadership confirmations that concurrent linearizable reads share.
    read_index: ReadIndex,
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
            proposals: ProposalQueue::start(raft.clone(), timeout),
            read_index: ReadIndex::new(raft.clone(), timeout),
            raft,
            id,
            log,
            contacts,
        }
    }
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
        let members = membership
            .nodes()
            .map(|(id, n)| MemberStatus {
                id: *id,
                cluster_addr: n.cluster_addr.clone(),
                api_addr: n.api_addr.clone(),
                voter: voters.contains(id),
                leads: m.current_leader == Some(*id),
                matched_index: m
                    .replication
                    .as_ref()
                    .and_then(|r| r.get(id).cloned())
                    .flatten()
                    .map(|log_id| log_id.index),
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
