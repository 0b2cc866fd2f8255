//! Health for load balancers and orchestrators. `/health` says the process is alive, `/ready`
//! that it can serve linearizable requests now, `/v1/sys/health` answers with a status code per
//! role that a load balancer can route on, and `/healthz` explains it all in JSON.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{json, Value};
use tandem_ha::{ActiveView, HaBackend, ReplicationStatus};
use tandem_raft::NodeId;
use tokio::sync::watch;

use crate::error::ApiError;
use crate::extract::Query;
use crate::keys::Keys;
use crate::registry::Registry;
use crate::replicated::Replicated;
use crate::server_metrics::render_agent_meshes;

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
    /// This server was removed from the cluster (a peer's committed membership leaves it out).
    Removed,
}

impl Standing {
    pub fn name(self) -> &'static str {
        match self {
            Standing::Active => "active",
            Standing::Standby => "standby",
            Standing::StandbyCutOff => "standby_cut_off",
            Standing::Unavailable => "unavailable",
            Standing::Removed => "removed",
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
            Standing::Unavailable | Standing::Removed => self.unavailablecode.unwrap_or(503),
        };
        StatusCode::from_u16(code)
            .map_err(|_| ApiError::bad_request(format!("{code} is not an HTTP status code")))
    }
}

/// What this node's health is judged from: who is active, how the replication group stands, and
/// how fresh contact must be.
#[derive(Clone)]
pub struct NodeHealth {
    pub node_id: NodeId,
    pub ha: Arc<dyn HaBackend>,
    pub data: Replicated,
    /// A standby that has not heard from the active node for this long is cut off (five missed
    /// heartbeats).
    pub contact_stale_after_ms: u64,
    /// An active node whose quorum has not confirmed it for this long (its lease) is unavailable.
    pub quorum_stale_after_ms: u64,
    /// `http` or `https`: how clients reach the servers' API.
    pub api_scheme: &'static str,
    /// Set while peers say this server was removed from the cluster.
    pub removal: watch::Receiver<Option<Removal>>,
}

/// What a removed server says, in its log and its health.
pub const REMOVED_MESSAGE: &str = "this server was removed from the cluster and serves nothing: stop it and delete its data folder, or add it back (tandem cluster add) to make it a member again";

/// A peer's word that this server is no longer a member.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Removal {
    /// The peer that said so.
    pub by: NodeId,
    /// The log index of the membership, committed on that peer, that leaves this server out.
    pub at_index: u64,
}

impl NodeHealth {
    pub(crate) fn standing(&self) -> Standing {
        self.standing_in(&self.data.status())
    }

    /// Milliseconds since this node last heard from the active node it knows, as `status` says;
    /// `None` when it is the active node itself, knows none, or never heard from it.
    pub(crate) fn active_contact_ms(view: &ActiveView, status: &ReplicationStatus) -> Option<u64> {
        view.other_active().and_then(|a| {
            status
                .members
                .iter()
                .find(|m| m.id == a.id)
                .and_then(|m| m.last_contact_ms)
        })
    }

    /// The standing from a replication status already read.
    fn standing_in(&self, status: &ReplicationStatus) -> Standing {
        if self.removal.borrow().is_some() {
            return Standing::Removed;
        }
        self.member_standing_in(status)
    }

    /// The standing as a member, whatever peers say of its removal: whether it is in touch.
    pub(crate) fn member_standing(&self) -> Standing {
        self.member_standing_in(&self.data.status())
    }

    fn member_standing_in(&self, status: &ReplicationStatus) -> Standing {
        let view = self.ha.view();
        standing(
            &view,
            status.millis_since_quorum_ack,
            NodeHealth::active_contact_ms(&view, status),
            self.contact_stale_after_ms,
            self.quorum_stale_after_ms,
        )
    }

    /// The cluster as this node sees it: shared by `/v1/cluster` and `/healthz`. Fields named
    /// for the replication protocol (`leader_id`, `is_leader`, `raft_addr`) are kept beside
    /// the active/standby ones for clients written against them.
    pub fn cluster_report(&self) -> Value {
        let status = self.data.status();
        let view = self.ha.view();
        let active_id = view.active.as_ref().map(|a| a.id);
        let members: Vec<Value> = status
            .members
            .iter()
            .map(|m| {
                json!({
                    "id": m.id,
                    "cluster_addr": m.cluster_addr,
                    "raft_addr": m.cluster_addr,
                    "api_addr": m.api_addr,
                    "voter": m.voter,
                    "is_self": m.id == self.node_id,
                    "is_active": active_id == Some(m.id),
                    "is_leader": m.leads,
                    "role": if m.voter { "voter" } else { "learner" },
                    "matched_index": m.matched_index,
                    "lag": m.lag,
                    "last_contact_ms": m.last_contact_ms,
                })
            })
            .collect();
        let ids = |voter: bool| -> Vec<u64> {
            status
                .members
                .iter()
                .filter(|m| m.voter == voter)
                .map(|m| m.id)
                .collect()
        };
        json!({
            "node_id": self.node_id,
            "role": status.role,
            "standing": self.standing_in(&status).name(),
            "removed": self.removal_report(),
            "ha_backend": self.ha.name(),
            "ha_available": self.ha.ha_available(),
            "active_node": view.active.as_ref().map(|a| json!({"id": a.id, "api_addr": a.api_addr})),
            "fencing_token": view.fencing_token,
            "term": status.term,
            "leader_id": status.leader_id,
            "commit_index": status.commit_index,
            "applied_index": status.applied_index,
            "last_log_index": status.last_log_index,
            "snapshot_index": status.snapshot_index,
            "purged_index": status.purged_index,
            "millis_since_quorum_ack": status.millis_since_quorum_ack,
            "voters": ids(true),
            "learners": ids(false),
            "members": members,
            "storage": self.data.storage().report(),
        })
    }

    /// What peers say of this server's removal: `null` while it is a member.
    pub fn removal_report(&self) -> Value {
        match *self.removal.borrow() {
            Some(r) => json!({
                "by": r.by,
                "at_index": r.at_index,
                "message": REMOVED_MESSAGE,
            }),
            None => Value::Null,
        }
    }

    /// The membership after a change: who votes, who learns, and each one's lag.
    pub fn membership_report(&self) -> Value {
        let report = self.cluster_report();
        json!({
            "voters": report["voters"],
            "learners": report["learners"],
            "members": report["members"],
        })
    }
}

/// The process is alive.
pub async fn alive(State(health): State<NodeHealth>) -> axum::Json<Value> {
    axum::Json(json!({"status": "alive", "node_id": health.node_id}))
}

/// The node can serve linearizable requests now (itself or through the active node).
pub async fn ready(State(health): State<NodeHealth>) -> Response {
    let standing = health.standing();
    let ready = matches!(standing, Standing::Active | Standing::Standby);
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        axum::Json(json!({"ready": ready, "standing": standing.name(), "node_id": health.node_id})),
    )
        .into_response()
}

pub async fn healthz(
    State(health): State<NodeHealth>,
    State(keys): State<Keys>,
) -> axum::Json<Value> {
    let mut report = health.cluster_report();
    report["signing_kid"] = json!(keys.ring.signer().map(|k| k.kid().to_string()));
    report["key_peers"] = json!(keys.ring.peer_statuses());
    axum::Json(report)
}

/// The upper bounds of the latency histograms' buckets, in seconds.
const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];

/// The buckets of a write's stages: finer and lower than [`LATENCY_BUCKETS`], since an fsync,
/// an apply or a wait in a queue takes from tens of microseconds to a few milliseconds.
const WRITE_STAGE_BUCKETS: &[f64] = &[
    0.00005, 0.0001, 0.0002, 0.0003, 0.0005, 0.00075, 0.001, 0.0015, 0.002, 0.003, 0.005, 0.0075,
    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];

static METRICS: std::sync::OnceLock<Option<metrics_exporter_prometheus::PrometheusHandle>> =
    std::sync::OnceLock::new();

/// Installs the process-wide metrics recorder (once; a second server in the same process
/// shares it).
pub fn install_metrics() {
    METRICS.get_or_init(|| {
        // Latencies as histograms (Prometheus can aggregate them across servers), with buckets
        // from half a millisecond (a write's fsync) to five seconds.
        use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};
        let latencies = Matcher::Suffix("_seconds".into());
        // A full name's buckets win over the suffix's.
        tandem_raft::write_stages::WRITE_STAGES
            .iter()
            .try_fold(PrometheusBuilder::new(), |builder, (stage, _)| {
                builder
                    .set_buckets_for_metric(Matcher::Full(stage.to_string()), WRITE_STAGE_BUCKETS)
            })
            .and_then(|builder| builder.set_buckets_for_metric(latencies, LATENCY_BUCKETS))
            .and_then(|builder| builder.install_recorder())
            .map_err(|e| tracing::warn!(error = %e, "metrics are not recorded"))
            .ok()
            .inspect(|handle| keep_up(handle.clone()))
    });
}

/// How often recorded samples are folded into the histograms.
const METRICS_UPKEEP: std::time::Duration = std::time::Duration::from_secs(1);

/// The recorder keeps every histogram sample until it is folded into its buckets, which it does
/// only when asked: without this, a server nobody scrapes grows by every write's samples
/// (about 90 bytes a write). A thread of its own, so that it runs whatever runtime the server
/// is on.
fn keep_up(handle: metrics_exporter_prometheus::PrometheusHandle) {
    let spawned = std::thread::Builder::new()
        .name("metrics-upkeep".into())
        .spawn(move || loop {
            std::thread::sleep(METRICS_UPKEEP);
            handle.run_upkeep();
        });
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "cannot start the metrics upkeep thread; histogram samples pile up until /metrics is read");
    }
}

/// Prometheus text format: what the recorder holds, and on the active server each live mesh
/// agent's figures from its last heartbeat.
pub async fn metrics(
    State(health): State<NodeHealth>,
    State(registry): State<Registry>,
) -> Response {
    match METRICS.get().and_then(|handle| handle.as_ref()) {
        Some(handle) => (
            [(
                axum::http::header::CONTENT_TYPE,
                "text/plain; version=0.0.4",
            )],
            handle.render() + &agent_meshes(&health, &registry).await,
        )
            .into_response(),
        None => ApiError::unavailable("metrics are not recorded in this process").into_response(),
    }
}

/// The per-agent mesh series, served only by the active server: the others hold no heartbeats
/// (or stale ones, from a term when they were active).
async fn agent_meshes(health: &NodeHealth, registry: &Registry) -> String {
    if !health.ha.view().is_self {
        return String::new();
    }
    match registry.agents(None).await {
        Ok(rows) => render_agent_meshes(&registry.live_mesh_summaries(&rows)),
        Err(e) => {
            tracing::debug!(error = %e.message, "agents not read for /metrics; their mesh series are left out");
            String::new()
        }
    }
}

/// Status codes per standing, overridable per request as load balancers need.
pub async fn sys_health(
    State(health): State<NodeHealth>,
    Query(codes): Query<HealthCodes>,
) -> Result<Response, ApiError> {
    let standing = health.standing();
    let status = codes.status(standing)?;
    let view = health.ha.view();
    let body = json!({
        "standing": standing.name(),
        "node_id": health.node_id,
        "active_node": view.active.as_ref().map(|a| a.id),
        "term": view.fencing_token,
        "nospace": health.data.storage().status().full.is_some(),
        "removed": health.removal_report(),
    });
    Ok((status, axum::Json(body)).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_views::active_view;

    fn view(active: Option<u64>, is_self: bool) -> ActiveView {
        active_view(active, 1, is_self)
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
        assert_eq!(default.status(Standing::Removed).unwrap().as_u16(), 503);
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
