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
use tandem_registry::MeshSummary;
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

/// The active server's per-agent mesh series, in Prometheus text format, from each live
/// agent's last heartbeat. Rendered at every scrape rather than kept in the recorder, which
/// cannot forget a label set: an agent that went down or was deregistered, or heartbeats held
/// by a server that is no longer active, would otherwise be served with their last values
/// forever, and a dead agent would look connected.
pub fn render_agent_meshes(agents: &[(String, MeshSummary)]) -> String {
    if agents.is_empty() {
        return String::new();
    }
    let mut peers_up = String::from("# TYPE tandem_mesh_peers_up gauge\n");
    let mut route_changes = String::from("# TYPE tandem_mesh_route_changes gauge\n");
    let mut bytes = String::from("# TYPE tandem_mesh_bytes_total counter\n");
    for (agent, mesh) in agents {
        let agent = escape_label(agent);
        let up = mesh.peers.iter().filter(|p| p.state == "up").count();
        peers_up += &format!("tandem_mesh_peers_up{{agent=\"{agent}\"}} {up}\n");
        route_changes += &format!(
            "tandem_mesh_route_changes{{agent=\"{agent}\"}} {}\n",
            mesh.route_changes
        );
        // The agent counts; the server passes its totals on (a restart starts them again,
        // which Prometheus reads as a counter reset).
        for (direction, total) in [("sent", mesh.bytes_sent), ("received", mesh.bytes_received)] {
            bytes += &format!(
                "tandem_mesh_bytes_total{{agent=\"{agent}\",direction=\"{direction}\"}} {total}\n"
            );
        }
    }
    peers_up + &route_changes + &bytes
}

/// A label value as the text format requires: backslash, double quote and line feed escaped.
fn escape_label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use tandem_registry::MeshPeer;

    use super::*;

    fn peer(state: &str) -> MeshPeer {
        MeshPeer {
            id: None,
            address: "127.0.0.1:4433".into(),
            rtt_ms: None,
            state: state.into(),
        }
    }

    #[test]
    fn each_live_agent_gets_its_series_and_no_agent_means_none() {
        assert_eq!(render_agent_meshes(&[]), "");
        let mesh = MeshSummary {
            peers: vec![peer("up"), peer("down"), peer("up")],
            routes: Vec::new(),
            route_changes: 3,
            bytes_sent: 10,
            bytes_received: 20,
        };
        let text = render_agent_meshes(&[("exit-\"a\"".into(), mesh)]);
        assert_eq!(
            text,
            "# TYPE tandem_mesh_peers_up gauge\n\
             tandem_mesh_peers_up{agent=\"exit-\\\"a\\\"\"} 2\n\
             # TYPE tandem_mesh_route_changes gauge\n\
             tandem_mesh_route_changes{agent=\"exit-\\\"a\\\"\"} 3\n\
             # TYPE tandem_mesh_bytes_total counter\n\
             tandem_mesh_bytes_total{agent=\"exit-\\\"a\\\"\",direction=\"sent\"} 10\n\
             tandem_mesh_bytes_total{agent=\"exit-\\\"a\\\"\",direction=\"received\"} 20\n"
        );
    }
}
