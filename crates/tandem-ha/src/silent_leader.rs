//! Crash failover without waiting for luck. When the active node falls silent, every standby's
//! Raft timer would wait out the leader's lease plus a random election timeout, and a standby a
//! few entries behind the others may fire first and lose, costing another timeout. Instead, once
//! the lease has lapsed, the standbys compare their logs and the most up-to-date one calls the
//! election at once. Raft's own timers stay armed as the fallback.

use std::sync::Arc;
use std::time::Duration;

use futures::future::join_all;

use tandem_raft::openraft::ServerState;
use tandem_raft::{LogId, NodeId};

use crate::raft::RaftHa;

/// Should `me`, whose log ends at `mine`, call the election, given what the other standbys that
/// answered report? Yes when no one has a longer log; among equals the lowest id runs, so only
/// one does.
pub fn runs_first(me: NodeId, mine: Option<LogId>, others: &[(NodeId, Option<LogId>)]) -> bool {
    others
        .iter()
        .all(|(id, theirs)| mine > *theirs || (mine == *theirs && me < *id))
}

impl RaftHa {
    /// Watches for a silent leader on a standby, and runs for it when this node is the best
    /// successor. Ends when Raft stops.
    pub(crate) async fn watch_for_silent_leader(self: Arc<Self>) {
        let config = self.raft.config().clone();
        let tick = Duration::from_millis(config.heartbeat_interval);
        // Every standby heard the leader last at about the same time, so once this node's lease
        // copy has lapsed (plus half a heartbeat of margin) theirs has too, and they will vote.
        let lapsed_ms = config.election_timeout_max + config.heartbeat_interval / 2;
        loop {
            tokio::time::sleep(tick).await;
            let metrics = self.raft.metrics().borrow().clone();
            if metrics.running_state.is_err() {
                return;
            }
            let Some(leader) = metrics.current_leader else {
                continue;
            };
            if metrics.state != ServerState::Follower || leader == self.id {
                continue;
            }
            let silent_ms = match self.contacts.millis_since(leader) {
                Some(ms) if ms >= lapsed_ms => ms,
                _ => continue,
            };
            let membership = metrics.membership_config.membership();
            if !membership.voter_ids().any(|id| id == self.id) {
                continue;
            }
            let peers: Vec<_> = membership
                .voter_ids()
                .filter(|id| *id != self.id && *id != leader)
                .filter_map(|id| Some((id, membership.get_node(&id)?.cluster_addr.clone())))
                .collect();
            let Ok(mine) = self.log.last_log_id().await else {
                continue;
            };
            let answers =
                join_all(peers.iter().map(|(_, addr)| self.cluster.probe(addr, tick))).await;
            let others: Vec<(NodeId, Option<LogId>)> = peers
                .iter()
                .zip(answers)
                .filter_map(|((id, _), answer)| Some((*id, answer?.last_log_id)))
                .collect();
            if !runs_first(self.id, mine, &others) {
                // A better successor exists; give it a lease's time before looking again.
                tokio::time::sleep(Duration::from_millis(config.election_timeout_max)).await;
                continue;
            }
            tracing::info!(leader, silent_ms, "the active node is silent past its lease; calling an election as the most up-to-date standby");
            if self.raft.trigger().elect().await.is_err() {
                return;
            }
            let id = self.id;
            let _ = self
                .raft
                .wait(Some(Duration::from_millis(2 * config.election_timeout_max)))
                .metrics(
                    |m| {
                        m.current_leader.is_some_and(|l| l != leader)
                            || m.current_leader == Some(id)
                    },
                    "a new leader",
                )
                .await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tandem_raft::openraft::CommittedLeaderId;

    fn log(term: u64, index: u64) -> Option<LogId> {
        Some(LogId::new(CommittedLeaderId::new(term, 1), index))
    }

    #[test]
    fn the_longest_log_runs() {
        assert!(runs_first(2, log(3, 10), &[(3, log(3, 9))]));
        assert!(!runs_first(3, log(3, 9), &[(2, log(3, 10))]));
        assert!(
            runs_first(2, log(4, 5), &[(3, log(3, 9))]),
            "a later term beats a longer log"
        );
    }

    #[test]
    fn among_equals_the_lowest_id_runs() {
        assert!(runs_first(2, log(3, 10), &[(3, log(3, 10))]));
        assert!(!runs_first(3, log(3, 10), &[(2, log(3, 10))]));
    }

    #[test]
    fn with_no_answers_this_node_runs() {
        assert!(runs_first(2, None, &[]));
    }
}
