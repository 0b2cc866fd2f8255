//! The cluster port: Raft RPCs from peers, plus the two questions peers ask each other (which
//! index a linearizable read must wait for; has this node joined a cluster). Every request must
//! carry the cluster secret.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde::de::DeserializeOwned;
use tandem_raft::openraft::raft::{AppendEntriesRequest, InstallSnapshotRequest, VoteRequest};
use tandem_raft::wire::{self, ProbeReply, ReadIndexReply, SECRET_HEADER};
use tandem_raft::{NodeId, TypeConfig};

use crate::error::{secrets_match, ApiError};
use crate::node::Node;

/// Snapshot chunks and append batches are larger than client requests.
const CLUSTER_BODY_LIMIT: usize = 64 * 1024 * 1024;

pub fn router(node: Arc<Node>) -> Router {
    Router::new()
        .route(wire::APPEND_PATH, post(append))
        .route(wire::VOTE_PATH, post(vote))
        .route(wire::SNAPSHOT_PATH, post(snapshot))
        .route(wire::READ_INDEX_PATH, post(read_index))
        .route(wire::PROBE_PATH, post(probe))
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
    if !secrets_match(given, node.secret_raft.as_bytes()) {
        return ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "missing or wrong cluster secret: every node needs the same secret_raft",
        )
        .into_response();
    }
    next.run(request).await
}

fn decode<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    wire::decode_request(body).map_err(|e| ApiError::bad_request(e.to_string()))
}

async fn append(State(node): State<Arc<Node>>, body: Bytes) -> Result<Response, ApiError> {
    let request: AppendEntriesRequest<TypeConfig> = decode(&body)?;
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
    if let Some(leader) = request.vote.leader_id().voted_for() {
        node.contacts.record(leader);
    }
    Ok(Json(node.raft.install_snapshot(request).await).into_response())
}

async fn read_index(State(node): State<Arc<Node>>) -> Result<Json<ReadIndexReply>, ApiError> {
    let (read_log_id, _) = node
        .raft
        .get_read_log_id()
        .await
        .map_err(|e| ApiError::unavailable(format!("cannot give a read index: {e}")))?;
    Ok(Json(ReadIndexReply {
        read_index: read_log_id.map(|id| id.index),
    }))
}

async fn probe(State(node): State<Arc<Node>>) -> Result<Json<ProbeReply>, ApiError> {
    let initialized = node
        .raft
        .is_initialized()
        .await
        .map_err(|e| ApiError::unavailable(e.to_string()))?;
    Ok(Json(ProbeReply {
        node_id: node.id,
        initialized,
    }))
}
