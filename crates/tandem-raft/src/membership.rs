//! Which membership change is allowed, and how it is carried out, decided from the membership as
//! it stands: plain functions, apart from the Raft calls that execute them.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use crate::{ClusterNode, NodeId};

/// The membership as the leader sees it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MembershipView {
    pub voters: BTreeSet<NodeId>,
    pub learners: BTreeSet<NodeId>,
    pub nodes: BTreeMap<NodeId, ClusterNode>,
    /// A change is under way: the cluster is in joint consensus, or its last membership is not
    /// committed yet.
    pub changing: bool,
}

impl MembershipView {
    pub fn from_stored(stored: &crate::StoredMembership, committed: bool) -> MembershipView {
        let membership = stored.membership();
        MembershipView {
            voters: membership.voter_ids().collect(),
            learners: membership.learner_ids().collect(),
            nodes: membership
                .nodes()
                .map(|(id, node)| (*id, node.clone()))
                .collect(),
            changing: membership.get_joint_config().len() > 1 || !committed,
        }
    }
}

/// A change an operator asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MemberChange {
    Add { id: NodeId, node: ClusterNode },
    Remove { id: NodeId },
}

impl fmt::Display for MemberChange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MemberChange::Add { id, node } => write!(f, "adding node {id} ({node})"),
            MemberChange::Remove { id } => write!(f, "removing node {id}"),
        }
    }
}

/// How an allowed change is carried out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MembershipStep {
    /// The cluster already is as asked (a request sent again): nothing to do.
    AlreadyDone,
    /// This very change is being carried out (the joining server and an operator both asked):
    /// wait for it.
    Underway,
    /// Add the node as a learner, let it catch up, then make it a voter.
    AddLearnerThenPromote,
    /// The node is a learner already (an earlier add stopped half-way): make it a voter once it
    /// has caught up.
    Promote,
    /// The node to remove is the leader: it hands the role over first, and the new leader
    /// removes it.
    StepDownFirst,
    /// Take the node out of the membership (through joint consensus when it votes).
    Remove,
}

/// Why a change is refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum MembershipRefusal {
    #[error("node id {id} is already in use by {node}; pick another id, or remove node {id} first (tandem cluster remove {id})")]
    IdInUse { id: NodeId, node: ClusterNode },
    #[error("{what} {addr} is already used by node {id}; each server needs its own addresses")]
    AddressInUse {
        what: &'static str,
        addr: String,
        id: NodeId,
    },
    #[error("node {id} is not a member of this cluster (members: {members}); see GET /v1/cluster")]
    UnknownMember { id: NodeId, members: String },
    #[error("node {id} is the last voter; a cluster cannot remove its last voter (add another server first)")]
    LastVoter { id: NodeId },
    #[error("another membership change is in progress ({0}); wait until it finishes, then retry")]
    InProgress(String),
}

/// Decides whether `change` may go ahead on the leader `leader`, and how, given the membership
/// and the change this leader is carrying out now, if any.
pub fn plan_change(
    view: &MembershipView,
    change: &MemberChange,
    leader: NodeId,
    in_progress: Option<&MemberChange>,
) -> Result<MembershipStep, MembershipRefusal> {
    let members = || {
        view.nodes
            .keys()
            .map(|id| id.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let step = match change {
        MemberChange::Add { id, node } => match view.nodes.get(id) {
            Some(known) if known != node => {
                return Err(MembershipRefusal::IdInUse {
                    id: *id,
                    node: known.clone(),
                })
            }
            Some(_) if view.voters.contains(id) => return Ok(MembershipStep::AlreadyDone),
            Some(_) => MembershipStep::Promote,
            None => MembershipStep::AddLearnerThenPromote,
        },
        MemberChange::Remove { id } => {
            if !view.nodes.contains_key(id) {
                return Err(MembershipRefusal::UnknownMember {
                    id: *id,
                    members: members(),
                });
            }
            if view.voters.contains(id) && view.voters.len() == 1 {
                return Err(MembershipRefusal::LastVoter { id: *id });
            }
            if *id == leader {
                MembershipStep::StepDownFirst
            } else {
                MembershipStep::Remove
            }
        }
    };
    if let MemberChange::Add { id, node } = change {
        for (other, known) in view.nodes.iter().filter(|(other, _)| *other != id) {
            for (what, asked, used) in [
                ("cluster address", &node.cluster_addr, &known.cluster_addr),
                ("API address", &node.api_addr, &known.api_addr),
            ] {
                if asked == used {
                    return Err(MembershipRefusal::AddressInUse {
                        what,
                        addr: asked.clone(),
                        id: *other,
                    });
                }
            }
        }
    }
    if let Some(running) = in_progress {
        if running == change {
            return Ok(MembershipStep::Underway);
        }
        return Err(MembershipRefusal::InProgress(running.to_string()));
    }
    if view.changing {
        return Err(MembershipRefusal::InProgress(
            "the cluster is between two memberships".into(),
        ));
    }
    Ok(step)
}

/// What to tell an operator whose node list names other servers than the membership stored in
/// the log, which is the one in force; `None` when they agree.
pub fn node_list_drift(configured: &BTreeSet<NodeId>, stored: &MembershipView) -> Option<String> {
    let members: BTreeSet<NodeId> = stored.nodes.keys().copied().collect();
    if members.is_empty() || *configured == members {
        return None;
    }
    let list = |ids: &BTreeSet<NodeId>| {
        ids.iter()
            .map(|id| id.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    };
    Some(format!(
        "the node list names nodes {} but the cluster's stored membership is nodes {}; the stored membership is used (the node list is read on first start only). Change membership with `tandem cluster add` / `tandem cluster remove`, and update the node list to match",
        list(configured),
        list(&members)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(n: u64) -> ClusterNode {
        ClusterNode {
            cluster_addr: format!("10.0.0.{n}:8100"),
            api_addr: format!("10.0.0.{n}:8200"),
        }
    }

    fn view(voters: &[u64], learners: &[u64]) -> MembershipView {
        MembershipView {
            voters: voters.iter().copied().collect(),
            learners: learners.iter().copied().collect(),
            nodes: voters
                .iter()
                .chain(learners)
                .map(|&n| (n, node(n)))
                .collect(),
            changing: false,
        }
    }

    fn add(id: u64) -> MemberChange {
        MemberChange::Add { id, node: node(id) }
    }

    fn remove(id: u64) -> MemberChange {
        MemberChange::Remove { id }
    }

    #[test]
    fn a_new_server_joins_as_a_learner_then_votes() {
        let three = view(&[1, 2, 3], &[]);
        assert_eq!(
            plan_change(&three, &add(4), 1, None),
            Ok(MembershipStep::AddLearnerThenPromote)
        );
        assert_eq!(
            plan_change(&view(&[1, 2, 3], &[4]), &add(4), 1, None),
            Ok(MembershipStep::Promote),
            "an add that stopped half-way is finished"
        );
        assert_eq!(
            plan_change(&view(&[1, 2, 3, 4], &[]), &add(4), 1, None),
            Ok(MembershipStep::AlreadyDone),
            "the same add sent again"
        );
    }

    #[test]
    fn an_id_or_address_in_use_is_refused() {
        let three = view(&[1, 2, 3], &[]);
        let other_addresses = MemberChange::Add {
            id: 2,
            node: node(9),
        };
        assert!(matches!(
            plan_change(&three, &other_addresses, 1, None),
            Err(MembershipRefusal::IdInUse { id: 2, .. })
        ));
        let taken = MemberChange::Add {
            id: 4,
            node: ClusterNode {
                cluster_addr: "10.0.0.9:8100".into(),
                api_addr: node(3).api_addr,
            },
        };
        let refusal = plan_change(&three, &taken, 1, None).unwrap_err();
        assert_eq!(
            refusal.to_string(),
            "API address 10.0.0.3:8200 is already used by node 3; each server needs its own addresses"
        );
    }

    #[test]
    fn removing_an_unknown_node_or_the_last_voter_is_refused() {
        let three = view(&[1, 2, 3], &[]);
        assert_eq!(
            plan_change(&three, &remove(7), 1, None)
                .unwrap_err()
                .to_string(),
            "node 7 is not a member of this cluster (members: 1, 2, 3); see GET /v1/cluster"
        );
        assert_eq!(
            plan_change(&view(&[1], &[2]), &remove(1), 1, None),
            Err(MembershipRefusal::LastVoter { id: 1 })
        );
        assert_eq!(
            plan_change(&view(&[1], &[2]), &remove(2), 1, None),
            Ok(MembershipStep::Remove),
            "a learner may go"
        );
        assert_eq!(
            plan_change(&view(&[1, 2], &[]), &remove(2), 1, None),
            Ok(MembershipStep::Remove)
        );
    }

    #[test]
    fn the_leader_steps_down_before_it_is_removed() {
        assert_eq!(
            plan_change(&view(&[1, 2, 3], &[]), &remove(1), 1, None),
            Ok(MembershipStep::StepDownFirst)
        );
    }

    #[test]
    fn one_change_at_a_time() {
        let three = view(&[1, 2, 3], &[]);
        assert_eq!(
            plan_change(&three, &remove(3), 1, Some(&add(4)))
                .unwrap_err()
                .to_string(),
            "another membership change is in progress (adding node 4 (cluster=10.0.0.4:8100 api=10.0.0.4:8200)); wait until it finishes, then retry"
        );
        let joint = MembershipView {
            changing: true,
            ..three.clone()
        };
        assert!(matches!(
            plan_change(&joint, &add(4), 1, None),
            Err(MembershipRefusal::InProgress(_))
        ));
        assert_eq!(
            plan_change(&three, &add(4), 1, Some(&add(4))),
            Ok(MembershipStep::Underway),
            "the joining server and the operator both asked"
        );
        assert!(
            matches!(
                plan_change(&joint, &add(2), 1, None),
                Ok(MembershipStep::AlreadyDone)
            ),
            "a request already carried out is answered even while another change runs"
        );
    }

    #[test]
    fn a_node_list_that_differs_from_the_membership_is_named() {
        let members = view(&[1, 2, 3], &[4]);
        let same: BTreeSet<u64> = [1, 2, 3, 4].into();
        assert_eq!(node_list_drift(&same, &members), None);
        assert_eq!(node_list_drift(&same, &MembershipView::default()), None);
        let drift = node_list_drift(&[1, 2, 3].into(), &members).unwrap();
        assert!(
            drift.starts_with(
                "the node list names nodes 1, 2, 3 but the cluster's stored membership is nodes 1, 2, 3, 4"
            ),
            "{drift}"
        );
    }
}
