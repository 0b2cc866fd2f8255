//! `PUT /v1/cluster/members/{id}` adds a server, `DELETE /v1/cluster/members/{id}` removes one.
//! Served on the active node (forwarding takes them there); whether a change is allowed is
//! decided by [`tandem_raft::plan_change`], and the replicator carries it out.

use axum::extract::{Path, State};
use axum::Extension;
use serde::Deserialize;
use serde_json::{json, Value};
use tandem_raft::{ClusterNode, MemberChange, MembershipStep, NodeId};
use tandem_store::{Command, MembershipChange};

use crate::credentials::Caller;
use crate::error::ApiError;
use crate::extract::Json;
use crate::health::NodeHealth;

/// The addresses of the server to add, as its node-list line gives them.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewMember {
    /// Its cluster port (the node list's `addr_raft`).
    #[serde(alias = "cluster_addr")]
    pub raft_addr: String,
    pub api_addr: String,
}

/// A node id from the path: a whole number above 0.
fn node_id(text: &str) -> Result<NodeId, ApiError> {
    text.parse().ok().filter(|id| *id > 0).ok_or_else(|| {
        ApiError::bad_request(format!("node id {text:?} is not a whole number above 0"))
    })
}

pub async fn add(
    State(health): State<NodeHealth>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    Json(member): Json<NewMember>,
) -> Result<axum::Json<Value>, ApiError> {
    let id = node_id(&id)?;
    for (what, addr) in [
        ("raft_addr", &member.raft_addr),
        ("api_addr", &member.api_addr),
    ] {
        if !crate::config::is_host_port(addr) {
            return Err(ApiError::bad_request(format!(
                "{what} {addr:?} is not host:port"
            )));
        }
    }
    let change = MemberChange::Add {
        id,
        node: ClusterNode {
            cluster_addr: member.raft_addr,
            api_addr: member.api_addr,
        },
    };
    request_change(&health, &caller, change).await
}

pub async fn remove(
    State(health): State<NodeHealth>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<axum::Json<Value>, ApiError> {
    let id = node_id(&id)?;
    request_change(&health, &caller, MemberChange::Remove { id }).await
}

async fn request_change(
    health: &NodeHealth,
    caller: &Caller,
    change: MemberChange,
) -> Result<axum::Json<Value>, ApiError> {
    let step = health
        .data
        .replicator()
        .change_members(change.clone())
        .await?;
    match step {
        MembershipStep::StepDownFirst => {
            // Its own task: a forwarding standby drops this request when the active role moves,
            // and a hand-over stopped half-way would leave this node quiet.
            let ha = health.ha.clone();
            let handed_over = tokio::spawn(async move { ha.step_down().await })
                .await
                .map_err(ApiError::internal)?;
            handed_over.map_err(|e| {
                ApiError::unavailable(format!(
                    "node {} is the active node and must hand its role over before it is removed, but could not: {e}",
                    health.node_id
                ))
            })?;
            // Retried by clients (DELETE is idempotent), it reaches the new active node.
            Err(ApiError::unavailable(format!(
                "node {} was the active node and has handed its role over; send the removal again to carry it out",
                health.node_id
            )))
        }
        MembershipStep::Underway => Err(ApiError::unavailable(format!(
            "{change} is still under way; send the same request again to wait for it"
        ))),
        step => {
            let changed = step != MembershipStep::AlreadyDone;
            if changed {
                record(health, caller, &change).await;
            }
            let mut report = health.membership_report();
            report["changed"] = json!(changed);
            Ok(axum::Json(report))
        }
    }
}

/// Writes a change that was made into the audit log. The change stands even when this fails
/// (the active role moved a moment after it), so that is logged rather than answered.
async fn record(health: &NodeHealth, caller: &Caller, change: &MemberChange) {
    let record = match change {
        MemberChange::Add { id, node } => MembershipChange::Added {
            node_id: *id,
            raft_addr: node.cluster_addr.clone(),
            api_addr: node.api_addr.clone(),
        },
        MemberChange::Remove { id } => MembershipChange::Removed { node_id: *id },
    };
    let command = Command::MembershipChanged(record).audited(caller.who());
    if let Err(e) = health.data.propose(command).await {
        tracing::warn!(error = %e.message, %change, by = caller.who(), "membership changed, but the audit log could not record it");
    }
}
