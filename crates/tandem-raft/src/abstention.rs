//! A server that starts without its data (a wiped or replaced disk, the same node id) may once
//! have been part of the majority that committed entries it no longer holds. If it voted now,
//! it could elect a peer that lacks those entries, and the new leader would overwrite them:
//! acknowledged writes lost. So such a server abstains from elections until it has caught up with
//! a leader: once it has applied an entry of the current leader's term, its log holds every
//! entry the leader holds before that one, which includes everything ever committed.
//!
//! A server on its first start abstains too, until it knows whether the cluster it belongs to
//! already has a history: when it has none, every member is new and all must vote to form it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use openraft::RaftMetrics;

use crate::wire::ProbeReply;
use crate::{ClusterNode, NodeId};

/// Whether this node refuses to vote for now; shared by the vote handler and the task that ends
/// the abstention.
#[derive(Clone, Debug, Default)]
pub struct VoteAbstention(Arc<AtomicBool>);

impl VoteAbstention {
    /// `abstain`: the node started with an empty log.
    pub fn new(abstain: bool) -> VoteAbstention {
        VoteAbstention(Arc::new(AtomicBool::new(abstain)))
    }

    pub fn is_abstaining(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }

    /// The node votes again from now on.
    pub fn end(&self) {
        self.0.store(false, Ordering::Release);
    }
}

/// True when a peer's answer shows a cluster that has already elected a leader: its log goes
/// past the initial membership (index 0), so entries may have been committed.
pub fn has_history(peer: &ProbeReply) -> bool {
    peer.initialized && peer.last_log_id.is_some_and(|id| id.index > 0)
}

/// True once a node that started without its data holds everything ever committed: a leader is
/// known and the node has applied an entry (or installed a snapshot) of that leader's term.
pub fn caught_up(metrics: &RaftMetrics<NodeId, ClusterNode>) -> bool {
    metrics.current_leader.is_some()
        && metrics
            .last_applied
            .is_some_and(|applied| applied.leader_id.term == metrics.current_term)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::LogId;
    use openraft::{CommittedLeaderId, Vote};

    fn log_id(term: u64, index: u64) -> LogId {
        LogId::new(CommittedLeaderId::new(term, 1), index)
    }

    fn metrics(
        leader: Option<NodeId>,
        term: u64,
        applied: Option<LogId>,
    ) -> RaftMetrics<NodeId, ClusterNode> {
        let mut metrics = RaftMetrics::new_initial(3);
        metrics.current_leader = leader;
        metrics.current_term = term;
        metrics.vote = Vote::new_committed(term, 1);
        metrics.last_applied = applied;
        metrics
    }

    #[test]
    fn a_cluster_has_history_once_its_log_goes_past_the_initial_membership() {
        let probe = |initialized, last_log_id| ProbeReply {
            node_id: 1,
            initialized,
            last_log_id,
            membership: None,
        };
        assert!(!has_history(&probe(false, None)));
        assert!(!has_history(&probe(true, Some(log_id(0, 0)))));
        assert!(has_history(&probe(true, Some(log_id(1, 1)))));
    }

    #[test]
    fn a_node_has_caught_up_once_it_applied_an_entry_of_the_current_leaders_term() {
        // Nothing applied yet, or only entries of an earlier term: it may lack committed ones.
        assert!(!caught_up(&metrics(Some(1), 2, None)));
        assert!(!caught_up(&metrics(Some(1), 2, Some(log_id(1, 40)))));
        // No leader known: nothing says the log is complete.
        assert!(!caught_up(&metrics(None, 2, Some(log_id(2, 41)))));
        assert!(caught_up(&metrics(Some(1), 2, Some(log_id(2, 41)))));
    }

    #[test]
    fn abstention_ends_once() {
        let abstention = VoteAbstention::new(true);
        let seen_by_handler = abstention.clone();
        assert!(seen_by_handler.is_abstaining());
        abstention.end();
        assert!(!seen_by_handler.is_abstaining());
        assert!(!VoteAbstention::new(false).is_abstaining());
    }
}
