//! How a server learns that it was removed from the cluster. Once its removal is committed, the
//! leader stops sending it anything, so it may never see the entry that removed it; it only falls
//! silent. A server out of touch with the active node therefore asks its peers for the membership
//! they have committed: one that leaves it out, and is no older than the membership it holds
//! itself, means it was removed. A server that was never a member (one waiting to be added) has
//! no membership and is never judged removed; one added back is a member again as soon as a peer
//! says so.

use std::collections::BTreeSet;

use openraft::RaftMetrics;
use serde::{Deserialize, Serialize};

use crate::{ClusterNode, LogId, NodeId};

/// A membership a node has committed (applied): the entry that set it, and every member in it,
/// voters and learners.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommittedMembership {
    pub log_id: LogId,
    pub members: BTreeSet<NodeId>,
}

impl CommittedMembership {
    /// The node's membership as `metrics` show it, when the entry that set it has been applied.
    pub fn of(metrics: &RaftMetrics<NodeId, ClusterNode>) -> Option<CommittedMembership> {
        let stored = &metrics.membership_config;
        let log_id = *stored.log_id();
        match (log_id, metrics.last_applied) {
            (Some(log_id), Some(applied)) if log_id.index <= applied.index => {
                Some(CommittedMembership {
                    log_id,
                    members: stored.membership().nodes().map(|(id, _)| *id).collect(),
                })
            }
            _ => None,
        }
    }
}

/// Whether `peer`'s committed membership says node `me`, which holds the membership set by
/// `mine`, was removed.
pub fn removed_by(me: NodeId, mine: Option<LogId>, peer: &CommittedMembership) -> bool {
    match mine {
        Some(mine) => !peer.members.contains(&me) && peer.log_id >= mine,
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use openraft::CommittedLeaderId;

    use super::*;

    fn at(index: u64) -> LogId {
        LogId::new(CommittedLeaderId::new(2, 1), index)
    }

    fn committed(index: u64, members: &[NodeId]) -> CommittedMembership {
        CommittedMembership {
            log_id: at(index),
            members: members.iter().copied().collect(),
        }
    }

    #[test]
    fn only_a_membership_as_new_as_ours_that_leaves_us_out_removes_us() {
        // Node 3 holds the membership of entry 10 ({1, 2, 3}); a peer committed {1, 2} at 14.
        assert!(removed_by(3, Some(at(10)), &committed(14, &[1, 2])));
        // It saw the entry that removed it: the same membership.
        assert!(removed_by(3, Some(at(14)), &committed(14, &[1, 2])));
        // A peer behind it, which has not committed the change that added it.
        assert!(!removed_by(4, Some(at(20)), &committed(14, &[1, 2, 3])));
        // Still a member, as a voter or a learner.
        assert!(!removed_by(3, Some(at(10)), &committed(14, &[1, 2, 3])));
        // Waiting to be added: no membership of its own.
        assert!(!removed_by(4, None, &committed(14, &[1, 2, 3])));
    }
}
