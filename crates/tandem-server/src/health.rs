//! Health for load balancers and orchestrators. `/health` says the process is alive, `/ready`
//! that it can serve linearizable requests now, `/v1/sys/health` answers with a status code per
//! role that a load balancer can route on, and `/healthz` explains it all in JSON.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{json, Value};
use tandem_ha::ActiveView;
use tandem_raft::openraft::ServerState;

use crate::error::ApiError;
use crate::extract::Query;
use crate::node::Node;

/// This node's part in the cluster, as a load balancer needs to know it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Standing {
    /// The active node, confirmed by a quorum.
    Active,
    /// A standby that hears from the active node.
    Standby,
    /// A standby that knows an active node but has not heard from it lately.
    StandbyCutOff,
    /// No active node is known, or this node leads without a quorum, or it is stepping down.
    Unavailable,
}

impl Standing {
    pub fn name(self) -> &'static str {
        match self {
            Standing::Active => "active",
            Standing::Standby => "standby",
            Standing::StandbyCutOff => "standby_cut_off",
            Standing::Unavailable => "unavailable",
        }
    }
}

/// Decides the standing from the active-node view, how long ago a quorum confirmed this node's
/// leadership, and how long ago this node heard from the active node.
pub fn standing(
    view: &ActiveView,
    quorum_ack_ms: Option<u64>,
    active_contact_ms: Option<u64>,
    contact_stale_after_ms: u64,
    quorum_stale_after_ms: u64,
) -> Standing {
    if view.is_self {
        return match quorum_ack_ms {
            Some(ms) if ms <= quorum_stale_after_ms => Standing::Active,
            _ => Standing::Unavailable,
        };
    }
    match (view.other_active(), active_contact_ms) {
        (None, _) => Standing::Unavailable,
        (Some(_), Some(ms)) if ms <= contact_stale_after_ms => Standing::Standby,
        (Some(_), _) => Standing::StandbyCutOff,
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct HealthCodes {
    /// Answer a standby with the active code.
    standbyok: Option<bool>,
    activecode: Option<u16>,
    standbycode: Option<u16>,
    haunhealthycode: Option<u16>,
    unavailablecode: Option<u16>,
}

impl HealthCodes {
    pub fn status(&self, standing: Standing) -> Result<StatusCode, ApiError> {
        let active = self.activecode.unwrap_or(200);
        let code = match standing {
            Standing::Active => active,
            Standing::Standby if self.standbyok == Some(true) => active,
            Standing::Standby => self.standbycode.unwrap_or(429),
            Standing::StandbyCutOff => self.haunhealthycode.unwrap_or(474),
            Standing::Unavailable => self.unavailablecode.unwrap_or(503),
        };
        StatusCode::from_u16(code)
            .map_err(|_| ApiError::bad_request(format!("{code} is not an HTTP status code")))
    }
}

fn node_standing(node: &Node) -> Standing {
    let view = node.ha.view();
    let quorum_ack = node.raft.metrics().borrow().millis_since_quorum_ack;
    let contact = view
        .other_active()
        .and_then(|a| node.contacts.millis_since(a.id));
    // Heartbeats arrive every heartbeat_ms: five missed in a row means the active node is out of
    // reach. A leader's quorum confirmation is as fresh as its lease.
    let settings = &node.settings;
    standing(
        &view,
        quorum_ack,
        contact,
        settings.heartbeat.as_millis() * 5,
        settings.election_timeout_max.as_millis(),
    )
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

/// The cluster as this node sees it: shared by `/v1/cluster` and `/healthz`.
pub fn cluster_report(node: &Node) -> Value {
    let m = node.raft.metrics().borrow().clone();
    let view = node.ha.view();
    let membership = m.membership_config.membership();
    let voters: std::collections::BTreeSet<_> = membership.voter_ids().collect();
    let members: Vec<Value> = membership
        .nodes()
        .map(|(id, n)| {
            let matched = m
                .replication
                .as_ref()
                .and_then(|r| r.get(id).cloned())
                .flatten()
                .map(|log_id| log_id.index);
            json!({
                "id": id,
                "raft_addr": n.raft_addr,
                "api_addr": n.api_addr,
                "voter": voters.contains(id),
                "is_self": *id == node.id,
                "is_leader": m.current_leader == Some(*id),
                "matched_index": matched,
                "last_contact_ms": if *id == node.id { Some(0) } else { node.contacts.millis_since(*id) },
            })
        })
        .collect();
    json!({
        "node_id": node.id,
        "role": role_name(m.state),
        "standing": node_standing(node).name(),
        "ha_backend": node.ha.name(),
        "ha_available": node.ha.ha_available(),
        "active_node": view.active.as_ref().map(|a| json!({"id": a.id, "api_addr": a.api_addr})),
        "term": m.current_term,
        "leader_id": m.current_leader,
        "commit_index": node.log.committed_index(),
        "applied_index": m.last_applied.map(|l| l.index),
        "last_log_index": m.last_log_index,
        "snapshot_index": m.snapshot.map(|l| l.index),
        "purged_index": m.purged.map(|l| l.index),
        "millis_since_quorum_ack": m.millis_since_quorum_ack,
        "members": members,
    })
}

/// The process is alive.
pub async fn alive(State(node): State<Arc<Node>>) -> axum::Json<Value> {
    axum::Json(json!({"status": "alive", "node_id": node.id}))
}

/// The node can serve linearizable requests now (itself or through the active node).
pub async fn ready(State(node): State<Arc<Node>>) -> Response {
    let standing = node_standing(&node);
    let ready = matches!(standing, Standing::Active | Standing::Standby);
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        axum::Json(json!({"ready": ready, "standing": standing.name(), "node_id": node.id})),
    )
        .into_response()
}

pub async fn healthz(State(node): State<Arc<Node>>) -> axum::Json<Value> {
    let mut report = cluster_report(&node);
    report["signing_kid"] = json!(node.keys.signer().map(|k| k.kid().to_string()));
    report["key_peers"] = json!(node.keys.peer_statuses());
    axum::Json(report)
}

static METRICS: std::sync::OnceLock<Option<metrics_exporter_prometheus::PrometheusHandle>> =
    std::sync::OnceLock::new();

/// Installs the process-wide metrics recorder (once; a second server in the same process
/// shares it).
pub fn install_metrics() {
    METRICS.get_or_init(|| {
        metrics_exporter_prometheus::PrometheusBuilder::new()
            .install_recorder()
            .map_err(|e| tracing::warn!(error = %e, "metrics are not recorded"))
            .ok()
    });
}

/// Prometheus text format.
pub async fn metrics() -> Response {
    match METRICS.get().and_then(|handle| handle.as_ref()) {
        Some(handle) => (
            [(
                axum::http::header::CONTENT_TYPE,
                "text/plain; version=0.0.4",
            )],
            handle.render(),
        )
            .into_response(),
        None => ApiError::unavailable("metrics are not recorded in this process").into_response(),
    }
}

/// Status codes per standing, overridable per request as load balancers need.
pub async fn sys_health(
    State(node): State<Arc<Node>>,
    Query(codes): Query<HealthCodes>,
) -> Result<Response, ApiError> {
    let standing = node_standing(&node);
    let status = codes.status(standing)?;
    let view = node.ha.view();
    let body = json!({
        "standing": standing.name(),
        "node_id": node.id,
        "active_node": view.active.as_ref().map(|a| a.id),
        "term": view.fencing_token,
    });
    Ok((status, axum::Json(body)).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tandem_ha::ActiveNode;

    fn view(active: Option<u64>, is_self: bool) -> ActiveView {
        ActiveView {
            active: active.map(|id| ActiveNode {
                id,
                api_addr: String::new(),
                cluster_addr: String::new(),
            }),
            fencing_token: 1,
            is_self,
            stepping_down: false,
        }
    }

    #[test]
    fn standings() {
        assert_eq!(
            standing(&view(Some(1), true), Some(10), None, 500, 600),
            Standing::Active
        );
        assert_eq!(
            standing(&view(Some(1), true), Some(5000), None, 500, 600),
            Standing::Unavailable
        );
        assert_eq!(
            standing(&view(Some(1), true), None, None, 500, 600),
            Standing::Unavailable
        );
        assert_eq!(
            standing(&view(Some(2), false), None, Some(50), 500, 600),
            Standing::Standby
        );
        assert_eq!(
            standing(&view(Some(2), false), None, Some(550), 500, 600),
            Standing::StandbyCutOff
        );
        assert_eq!(
            standing(&view(Some(2), false), None, None, 500, 600),
            Standing::StandbyCutOff
        );
        assert_eq!(
            standing(&view(None, false), None, None, 500, 600),
            Standing::Unavailable
        );
    }

    #[test]
    fn codes_and_overrides() {
        let default = HealthCodes::default();
        assert_eq!(default.status(Standing::Active).unwrap().as_u16(), 200);
        assert_eq!(default.status(Standing::Standby).unwrap().as_u16(), 429);
        assert_eq!(
            default.status(Standing::StandbyCutOff).unwrap().as_u16(),
            474
        );
        assert_eq!(default.status(Standing::Unavailable).unwrap().as_u16(), 503);
        let ok = HealthCodes {
            standbyok: Some(true),
            ..Default::default()
        };
        assert_eq!(ok.status(Standing::Standby).unwrap().as_u16(), 200);
        let custom = HealthCodes {
            standbycode: Some(299),
            activecode: Some(204),
            ..Default::default()
        };
        assert_eq!(custom.status(Standing::Standby).unwrap().as_u16(), 299);
        assert_eq!(custom.status(Standing::Active).unwrap().as_u16(), 204);
        let bad = HealthCodes {
            activecode: Some(1000),
            ..Default::default()
        };
        assert!(bad.status(Standing::Active).is_err());
    }
}
