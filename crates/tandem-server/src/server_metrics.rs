//! What the server measures for `/metrics` beyond what the crates below record themselves (log
//! writes, applies and snapshots in tandem-raft and tandem-store; keys, tokens, agents and
//! events where they happen): every API request by route, method and status with its latency,
//! and gauges of Raft's progress and of the active role.

use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::Response;
use tandem_ha::ActiveView;
use tandem_raft::openraft::RaftMetrics;
use tandem_raft::{ClusterNode, NodeId};
use tokio::sync::watch;

/// Counts and times each request under the route it matched (`/v1/kv/{key}`, not the key).
pub async fn count_requests(request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_string(), |path| path.as_str().to_string());
    let method = request.method().to_string();
    let started = Instant::now();
    let response = next.run(request).await;
    let status = response.status().as_u16().to_string();
    metrics::counter!("tandem_api_requests_total", "route" => route.clone(), "method" => method, "status" => status)
        .increment(1);
    metrics::histogram!("tandem_api_request_seconds", "route" => route).record(started.elapsed());
    response
}

/// Raft's progress on this node, as its metrics say.
pub fn raft_gauges(metrics: &RaftMetrics<NodeId, ClusterNode>) {
    metrics::gauge!("tandem_raft_term").set(metrics.current_term as f64);
    let index =
        |id: Option<tandem_raft::openraft::LogId<NodeId>>| id.map_or(0.0, |id| id.index as f64);
    metrics::gauge!("tandem_raft_last_log_index").set(metrics.last_log_index.unwrap_or(0) as f64);
    metrics::gauge!("tandem_raft_applied_index").set(index(metrics.last_applied));
    metrics::gauge!("tandem_raft_snapshot_index").set(index(metrics.snapshot));
    let is_leader = metrics.current_leader == Some(metrics.id);
    metrics::gauge!("tandem_raft_is_leader").set(f64::from(u8::from(is_leader)));
}

/// The active role as this node sees it.
pub fn ha_gauges(view: &ActiveView) {
    metrics::gauge!("tandem_ha_is_active").set(f64::from(u8::from(view.is_self)));
    metrics::gauge!("tandem_ha_fencing_token").set(view.fencing_token as f64);
    let active = view.active.as_ref().map_or(0.0, |a| a.id as f64);
    metrics::gauge!("tandem_ha_active_node").set(active);
}

/// Calls `set` with every value `source` takes, until its sender is gone.
pub async fn keep_gauges<S>(mut source: watch::Receiver<S>, set: fn(&S)) {
    loop {
        set(&source.borrow_and_update());
        if source.changed().await.is_err() {
            return;
        }
    }
}
