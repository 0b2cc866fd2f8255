//! Watches for this server's removal from the cluster (see `tandem_raft::removed_by`): while it
//! is out of touch with the active node, it asks its peers every second for the membership they
//! have committed, and says so, in its log and in its health, once they leave it out. It keeps
//! asking, so a server added back is a member again as soon as a peer lists it.

use std::time::Duration;

use tandem_raft::{removed_by, ClusterClient, NodeId, Raft};
use tokio::sync::watch;

use crate::health::{NodeHealth, Removal, Standing, REMOVED_MESSAGE};

const CHECK_EVERY: Duration = Duration::from_secs(1);
const PROBE_TIMEOUT: Duration = Duration::from_millis(500);

pub async fn watch_for_removal(
    node_id: NodeId,
    raft: Raft,
    cluster: ClusterClient,
    health: NodeHealth,
    removal: watch::Sender<Option<Removal>>,
) {
    let mut every = tokio::time::interval(CHECK_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        let heard = match health.member_standing() {
            // In touch with the active node (or it): a member.
            Standing::Active | Standing::Standby => Some(None),
            _ => ask_peers(node_id, &raft, &cluster).await,
        };
        // No peer answered: nothing learned.
        let Some(now) = heard else { continue };
        let before = removal.send_replace(now);
        match (before, now) {
            (None, Some(removed)) => tracing::error!(
                by = removed.by,
                at_index = removed.at_index,
                "{REMOVED_MESSAGE}"
            ),
            (Some(_), None) => {
                tracing::info!("this server is a member of the cluster again")
            }
            _ => {}
        }
    }
}

/// What the peers in this server's membership say: `Some(Some(_))` when one has committed a
/// membership that removed it, `Some(None)` when one lists it as a member, `None` when none of
/// them answered either way.
async fn ask_peers(
    node_id: NodeId,
    raft: &Raft,
    cluster: &ClusterClient,
) -> Option<Option<Removal>> {
    let (mine, peers) = {
        let metrics = raft.metrics();
        let metrics = metrics.borrow();
        let stored = &metrics.membership_config;
        let peers: Vec<String> = stored
            .membership()
            .nodes()
            .filter(|(id, _)| **id != node_id)
            .map(|(_, node)| node.cluster_addr.clone())
            .collect();
        (*stored.log_id(), peers)
    };
    let mut listed = false;
    for addr in peers {
        let Some((peer, membership)) = cluster
            .probe(&addr, PROBE_TIMEOUT)
            .await
            .and_then(|reply| Some((reply.node_id, reply.membership?)))
        else {
            continue;
        };
        if removed_by(node_id, mine, &membership) {
            return Some(Some(Removal {
                by: peer,
                at_index: membership.log_id.index,
            }));
        }
        listed |= membership.members.contains(&node_id);
    }
    listed.then_some(None)
}
