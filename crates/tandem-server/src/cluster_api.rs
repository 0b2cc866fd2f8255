//! The cluster port: Raft RPCs from peers, requests a standby forwards to the active node, and
//! the small questions peers ask each other (has this node joined a cluster, how long is its log).
//! Every request must carry the cluster secret.

use std::sync::{Arc, Mutex};

use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde::de::DeserializeOwned;
use tandem_raft::openraft::raft::{AppendEntriesRequest, InstallSnapshotRequest, VoteRequest};
use tandem_raft::openraft::ChangeMembers;
use tandem_raft::wire::{
    self, ProbeReply, FORWARDED_BY_HEADER, FORWARD_METHOD_HEADER, FORWARD_URI_HEADER, SECRET_HEADER,
};
use tandem_raft::{NodeId, TypeConfig};
use tower::ServiceExt;

use crate::error::{secrets_match, ApiError};
use crate::node::Node;

/// Snapshot chunks and append batches are larger than client requests.
const CLUSTER_BODY_LIMIT: usize = 64 * 1024 * 1024;

/// `api` is the client API: forwarded requests are served by it as if a client had sent them.
pub fn router(node: Arc<Node>, api: Router) -> Router {
    Router::new()
        .route(wire::APPEND_PATH, post(append))
        .route(wire::VOTE_PATH, post(vote))
        .route(wire::SNAPSHOT_PATH, post(snapshot))
        .route(wire::PROBE_PATH, post(probe))
        .route(wire::ADVERTISE_PATH, post(advertise))
        .route(wire::PROPOSE_PATH, post(propose))
        .route(
            wire::FORWARD_PATH,
            post(move |headers: HeaderMap, body: Bytes| {
                serve_forwarded(api.clone(), headers, body)
            }),
        )
        .fallback(|| async { ApiError::not_found("unknown cluster endpoint") })
        .layer(middleware::from_fn_with_state(
            node.clone(),
            require_cluster_secret,
        ))
        .layer(DefaultBodyLimit::max(CLUSTER_BODY_LIMIT))
        .with_state(node)
}

async fn require_cluster_secret(
    State(node): State<Arc<Node>>,
    request: Request,
    next: Next,
) -> Response {
    let given = request
        .headers()
        .get(SECRET_HEADER)
        .map(|v| v.as_bytes())
        .unwrap_or_default();
    let previous = &node.settings.secret_cluster_previous;
    let accepted = secrets_match(given, node.secret_raft.as_bytes())
        || previous
            .as_ref()
            .is_some_and(|previous| secrets_match(given, previous.as_bytes()));
    if !accepted {
        return ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "missing or wrong cluster secret: every node needs the same secret_raft",
        )
        .into_response();
    }
    next.run(request).await
}

/// A request to the cluster port, decoded as its handler decodes it.
#[derive(Debug)]
pub enum ClusterRequest {
    Append(AppendEntriesRequest<TypeConfig>),
    Vote(VoteRequest<NodeId>),
    Snapshot(InstallSnapshotRequest<TypeConfig>),
    Advertise(NodeId, tandem_raft::ClusterNode),
    Probe,
    Forward(Request),
}

/// Decodes what a peer sent to `path` on the cluster port, with the checks its handler makes
/// before it hands the request to Raft or to the API.
pub fn decode_cluster_request(
    path: &str,
    headers: &HeaderMap,
    body: Bytes,
) -> Result<ClusterRequest, ApiError> {
    Ok(match path {
        wire::APPEND_PATH => ClusterRequest::Append(decode_append(&body)?),
        wire::VOTE_PATH => ClusterRequest::Vote(decode(&body)?),
        wire::SNAPSHOT_PATH => ClusterRequest::Snapshot(decode(&body)?),
        wire::ADVERTISE_PATH => {
            let (id, addresses) = decode(&body)?;
            ClusterRequest::Advertise(id, addresses)
        }
        wire::PROBE_PATH => ClusterRequest::Probe,
        wire::FORWARD_PATH => ClusterRequest::Forward(forwarded_request(headers, body)?),
        _ => return Err(ApiError::not_found("unknown cluster endpoint")),
    })
}

fn decode<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    wire::decode_request(body).map_err(|e| ApiError::bad_request(e.to_string()))
}

/// Decodes an append and checks that its entries continue `prev_log_id` one index at a time and
/// never go back to an earlier leader. openraft takes that for granted (it asserts it), so an
/// append that breaks it would stop the Raft core instead of being refused.
fn decode_append(body: &[u8]) -> Result<AppendEntriesRequest<TypeConfig>, ApiError> {
    let request: AppendEntriesRequest<TypeConfig> = decode(body)?;
    let mut previous = request.prev_log_id;
    for entry in &request.entries {
        let expected_index = match previous {
            None => Some(0),
            Some(log_id) => log_id.index.checked_add(1),
        };
        let follows = Some(entry.log_id.index) == expected_index
            && previous.is_none_or(|p| p.leader_id <= entry.log_id.leader_id);
        if !follows {
            return Err(ApiError::bad_request(format!(
                "malformed cluster message: append entry {} does not follow {}",
                entry.log_id,
                previous.map_or("the start of the log".to_string(), |p| p.to_string())
            )));
        }
        previous = Some(entry.log_id);
    }
    Ok(request)
}

async fn append(State(node): State<Arc<Node>>, body: Bytes) -> Result<Response, ApiError> {
    let request = decode_append(&body)?;
    if let Some(leader) = request.vote.leader_id().voted_for() {
        node.contacts.record(leader);
    }
    Ok(Json(node.raft.append_entries(request).await).into_response())
}

async fn vote(State(node): State<Arc<Node>>, body: Bytes) -> Result<Response, ApiError> {
    let request: VoteRequest<NodeId> = decode(&body)?;
    Ok(Json(node.raft.vote(request).await).into_response())
}

async fn snapshot(State(node): State<Arc<Node>>, body: Bytes) -> Result<Response, ApiError> {
    let request: InstallSnapshotRequest<TypeConfig> = decode(&body)?;
    node.snapshot_receipt.check(&request)?;
    if let Some(leader) = request.vote.leader_id().voted_for() {
        node.contacts.record(leader);
    }
    let (id, end) = SnapshotReceipt::end_of(&request);
    let answer = node.raft.install_snapshot(request).await;
    if answer.is_ok() {
        node.snapshot_receipt.record(id, end);
    }
    Ok(Json(answer).into_response())
}

/// How much of the snapshot it is receiving this node has been sent. openraft writes each chunk
/// at its offset in an in-memory buffer, growing the buffer to reach it, so a chunk may not start
/// past the end of what has arrived: a huge offset would make the node allocate that much.
#[derive(Default)]
pub struct SnapshotReceipt(Mutex<Option<(String, u64)>>);

impl SnapshotReceipt {
    fn check(&self, request: &InstallSnapshotRequest<TypeConfig>) -> Result<(), ApiError> {
        let received = match &*self.0.lock().unwrap_or_else(|p| p.into_inner()) {
            Some((id, received)) if *id == request.meta.snapshot_id => *received,
            // openraft answers a chunk of another snapshot that does not start at 0 with a
            // mismatch, which tells the leader to start over; a 400 would have it retry forever.
            _ => return Ok(()),
        };
        if request.offset > received {
            return Err(ApiError::bad_request(format!(
                "snapshot {} chunk starts at byte {}, but only {received} bytes of it have arrived",
                request.meta.snapshot_id, request.offset
            )));
        }
        Ok(())
    }

    /// The snapshot a chunk belongs to, and where the chunk ends.
    fn end_of(request: &InstallSnapshotRequest<TypeConfig>) -> (String, u64) {
        let end = request.offset.saturating_add(request.data.len() as u64);
        (request.meta.snapshot_id.clone(), end)
    }

    fn record(&self, snapshot_id: String, end: u64) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = Some((snapshot_id, end));
    }
}

/// A member publishes the addresses it wants clients and peers to use; the active node records
/// them in the membership.
async fn advertise(
    State(node): State<Arc<Node>>,
    body: Bytes,
) -> Result<Json<serde_json::Value>, ApiError> {
    let (id, addresses): (NodeId, tandem_raft::ClusterNode) = decode(&body)?;
    let known = node
        .raft
        .metrics()
        .borrow()
        .membership_config
        .membership()
        .get_node(&id)
        .is_some();
    if !known {
        return Err(ApiError::bad_request(format!(
            "node {id} is not a member of this cluster"
        )));
    }
    node.raft
        .change_membership(ChangeMembers::SetNodes([(id, addresses)].into()), false)
        .await
        .map_err(|e| ApiError::unavailable(format!("cannot record the addresses: {e}")))?;
    Ok(Json(serde_json::json!({"recorded": true})))
}

/// Proposes a command a standby made itself (publishing or retiring its signing keys).
async fn propose(
    State(node): State<Arc<Node>>,
    body: Bytes,
) -> Result<Json<tandem_store::Applied>, ApiError> {
    let command: tandem_store::Command = decode(&body)?;
    if !node.is_active() {
        return Err(ApiError::unavailable("this node is not the active node"));
    }
    Ok(Json(node.propose_applied(command).await?))
}

/// Serves a request a standby forwarded, through the same API stack a client request takes.
/// It is marked as forwarded, so if this node is not active after all it redirects instead of
/// forwarding again.
async fn serve_forwarded(api: Router, headers: HeaderMap, body: Bytes) -> Response {
    match forwarded_request(&headers, body) {
        Ok(request) => match api.oneshot(request).await {
            Ok(response) => response,
            Err(never) => match never {},
        },
        Err(e) => e.into_response(),
    }
}

/// The client request a standby forwarded, rebuilt from the forwarding headers and the body.
fn forwarded_request(headers: &HeaderMap, body: Bytes) -> Result<Request, ApiError> {
    let method = headers
        .get(FORWARD_METHOD_HEADER)
        .and_then(|m| Method::from_bytes(m.as_bytes()).ok());
    let uri = headers
        .get(FORWARD_URI_HEADER)
        .and_then(|u| u.to_str().ok())
        .and_then(|u| u.parse::<Uri>().ok());
    let (Some(method), Some(uri)) = (method, uri) else {
        return Err(ApiError::bad_request(
            "a forwarded request needs its method and URI headers",
        ));
    };
    let mut request = Request::builder().method(method).uri(uri);
    for name in [
        "authorization",
        "content-type",
        "accept",
        FORWARDED_BY_HEADER,
    ] {
        if let Some(value) = headers.get(name) {
            request = request.header(name, value);
        }
    }
    request
        .body(Body::from(body))
        .map_err(|e| ApiError::bad_request(format!("malformed forwarded request: {e}")))
}

async fn probe(State(node): State<Arc<Node>>) -> Result<Json<ProbeReply>, ApiError> {
    let initialized = node
        .raft
        .is_initialized()
        .await
        .map_err(|e| ApiError::unavailable(e.to_string()))?;
    let last_log_id = node
        .log
        .last_log_id()
        .await
        .map_err(|e| ApiError::unavailable(e.to_string()))?;
    Ok(Json(ProbeReply {
        node_id: node.id,
        initialized,
        last_log_id,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tandem_raft::openraft::{SnapshotMeta, Vote};

    fn chunk(snapshot_id: &str, offset: u64, len: usize) -> InstallSnapshotRequest<TypeConfig> {
        InstallSnapshotRequest {
            vote: Vote::new_committed(1, 1),
            meta: SnapshotMeta {
                snapshot_id: snapshot_id.into(),
                ..Default::default()
            },
            offset,
            data: vec![0; len],
            done: false,
        }
    }

    #[test]
    fn a_snapshot_chunk_may_not_start_past_what_has_arrived() {
        let receipt = SnapshotReceipt::default();
        assert!(receipt.check(&chunk("a", 0, 8)).is_ok());
        let (id, end) = SnapshotReceipt::end_of(&chunk("a", 0, 8));
        receipt.record(id, end);
        assert!(receipt.check(&chunk("a", 8, 8)).is_ok(), "the next chunk");
        assert!(
            receipt.check(&chunk("a", 0, 8)).is_ok(),
            "a chunk sent again"
        );
        assert!(receipt.check(&chunk("a", 9, 8)).is_err(), "a gap");
        assert!(
            receipt.check(&chunk("a", 1 << 40, 8)).is_err(),
            "a huge offset"
        );
        assert!(
            receipt.check(&chunk("b", 8, 8)).is_ok(),
            "openraft itself refuses a new snapshot that does not start at 0"
        );
    }
}
