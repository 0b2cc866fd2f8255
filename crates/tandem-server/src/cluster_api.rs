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
use tandem_ha::HaBackend;
use tandem_raft::openraft::error::RaftError;
use tandem_raft::openraft::raft::VoteResponse;
use tandem_raft::openraft::raft::{AppendEntriesRequest, InstallSnapshotRequest, VoteRequest};
use tandem_raft::wire::{
    self, check_protocol, ProbeReply, FORWARDED_BY_HEADER, FORWARD_METHOD_HEADER,
    FORWARD_URI_HEADER, PROTOCOL_HEADER, SECRET_HEADER, SECRET_HEADER_BEFORE,
};
use tandem_raft::{
    CommittedMembership, LogStore, NodeId, PeerContacts, Raft, TypeConfig, VoteAbstention,
};
use tower::ServiceExt;

use crate::active_channel::{record_advertised, Advertised, FORWARDED_REQUEST_HEADERS};
use crate::error::{secrets_match, ApiError};
use crate::replicated::Replicated;

/// Snapshot chunks and append batches are larger than client requests.
pub(crate) const CLUSTER_BODY_LIMIT: usize = 64 * 1024 * 1024;

/// What the cluster port's handlers work with: this node's Raft (its RPCs arrive here), and the
/// replicated state for what standbys ask the active node to do.
#[derive(Clone)]
pub struct ClusterPort {
    pub node_id: NodeId,
    pub raft: Raft,
    pub log: LogStore,
    pub contacts: PeerContacts,
    pub ha: Arc<dyn HaBackend>,
    pub data: Replicated,
    /// The cluster secret, and the previous one while every node moves to a new one.
    pub secrets: Arc<ClusterSecrets>,
    pub snapshot_receipt: Arc<SnapshotReceipt>,
    /// Set while this node, started without its data, must not vote.
    pub abstention: VoteAbstention,
    /// How long this node, as a follower, takes to handle an append that carries entries.
    pub follower_append_seconds: metrics::Histogram,
}

pub struct ClusterSecrets {
    pub current: String,
    pub previous: Option<String>,
}

/// `api` is the client API: forwarded requests are served by it as if a client had sent them.
/// Every path is decoded by [`decode_cluster_request`], the one table of the cluster port's
/// endpoints, which the fuzz targets drive too.
pub fn router(port: ClusterPort, api: Router) -> Router {
    let endpoint =
        move |State(port): State<ClusterPort>, uri: Uri, headers: HeaderMap, body: Bytes| {
            let api = api.clone();
            async move {
                let answer = match decode_cluster_request(uri.path(), &headers, body) {
                    Ok(request) => serve(port, api, request).await,
                    Err(e) => Err(e),
                };
                answer.unwrap_or_else(IntoResponse::into_response)
            }
        };
    Router::new()
        .route("/{*path}", post(endpoint))
        .fallback(|| async { ApiError::not_found("unknown cluster endpoint") })
        .layer(middleware::from_fn_with_state(
            port.secrets.clone(),
            require_cluster_secret,
        ))
        .layer(DefaultBodyLimit::max(CLUSTER_BODY_LIMIT))
        .with_state(port)
}

async fn require_cluster_secret(
    State(secrets): State<Arc<ClusterSecrets>>,
    request: Request,
    next: Next,
) -> Response {
    let headers = request.headers();
    let given = headers
        .get(SECRET_HEADER)
        .or_else(|| headers.get(SECRET_HEADER_BEFORE))
        .map(|v| v.as_bytes())
        .unwrap_or_default();
    let accepted = secrets_match(given, secrets.current.as_bytes())
        || secrets
            .previous
            .as_ref()
            .is_some_and(|previous| secrets_match(given, previous.as_bytes()));
    if !accepted {
        return ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "missing or wrong cluster secret: every node needs the same cluster secret (secret_cluster)",
        )
        .into_response();
    }
    // Known to be a member: now it may learn that it speaks another protocol.
    let protocol = headers
        .get(PROTOCOL_HEADER)
        .map(|v| v.to_str().unwrap_or("not text"));
    if let Err(message) = check_protocol(protocol) {
        tracing::warn!(%message, "refused a request from a peer");
        return ApiError::new(StatusCode::CONFLICT, "protocol_mismatch", message).into_response();
    }
    next.run(request).await
}

/// A request to the cluster port, decoded as its handler decodes it.
#[derive(Debug)]
pub enum ClusterRequest {
    Append(AppendEntriesRequest<TypeConfig>),
    Vote(VoteRequest<NodeId>),
    Snapshot(InstallSnapshotRequest<TypeConfig>),
    Advertise(Advertised),
    Propose(tandem_store::Command),
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
        wire::ADVERTISE_PATH => ClusterRequest::Advertise(decode(&body)?),
        wire::PROPOSE_PATH => ClusterRequest::Propose(decode(&body)?),
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

async fn serve(
    port: ClusterPort,
    api: Router,
    request: ClusterRequest,
) -> Result<Response, ApiError> {
    match request {
        ClusterRequest::Append(request) => Ok(append(&port, request).await),
        ClusterRequest::Vote(request) => vote(&port, request).await,
        ClusterRequest::Snapshot(request) => snapshot(&port, request).await,
        ClusterRequest::Advertise(addresses) => advertise(&port, addresses).await,
        ClusterRequest::Propose(command) => propose(&port, command).await,
        ClusterRequest::Probe => probe(&port).await,
        // Served through the same API stack a client request takes. It is marked as forwarded,
        // so if this node is not active after all it redirects instead of forwarding again.
        ClusterRequest::Forward(request) => match api.oneshot(request).await {
            Ok(response) => Ok(response),
            Err(never) => match never {},
        },
    }
}

/// Votes as Raft decides, unless this node is abstaining: then the candidate is told no, with
/// this node's current vote, which openraft takes as a refusal.
async fn vote(port: &ClusterPort, request: VoteRequest<NodeId>) -> Result<Response, ApiError> {
    if !port.abstention.is_abstaining() {
        return Ok(Json(port.raft.vote(request).await).into_response());
    }
    let last_log_id = port
        .log
        .last_log_id()
        .await
        .map_err(|e| ApiError::unavailable(e.to_string()))?;
    tracing::info!(
        candidate = request.vote.leader_id().voted_for(),
        "refused a vote: this node started without its data and votes only once it has caught up with a leader"
    );
    let refusal = VoteResponse {
        vote: port.raft.metrics().borrow().vote,
        vote_granted: false,
        last_log_id,
    };
    Ok(Json(Ok::<_, RaftError<NodeId>>(refusal)).into_response())
}

async fn append(port: &ClusterPort, request: AppendEntriesRequest<TypeConfig>) -> Response {
    if let Some(leader) = request.vote.leader_id().voted_for() {
        port.contacts.record(leader);
    }
    let carries_entries = !request.entries.is_empty();
    let started = std::time::Instant::now();
    let answer = port.raft.append_entries(request).await;
    if carries_entries && answer.is_ok() {
        port.follower_append_seconds.record(started.elapsed());
    }
    Json(answer).into_response()
}

async fn snapshot(
    port: &ClusterPort,
    request: InstallSnapshotRequest<TypeConfig>,
) -> Result<Response, ApiError> {
    port.snapshot_receipt.check(&request)?;
    if let Some(leader) = request.vote.leader_id().voted_for() {
        port.contacts.record(leader);
    }
    let (id, end) = SnapshotReceipt::end_of(&request);
    let answer = port.raft.install_snapshot(request).await;
    if answer.is_ok() {
        port.snapshot_receipt.record(id, end);
    }
    Ok(Json(answer).into_response())
}

/// How much of the snapshot it is receiving this node has been sent. openraft writes each chunk
/// at its offset in the file being received, so a chunk may not start past the end of what has
/// arrived: a gap would leave a hole of zeros in the snapshot, and a huge offset a file that
/// claims that much of the disk.
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
async fn advertise(port: &ClusterPort, addresses: Advertised) -> Result<Response, ApiError> {
    if !port.ha.view().is_self {
        return Err(ApiError::unavailable("this node is not the active node"));
    }
    record_advertised(&port.data, addresses).await?;
    Ok(Json(serde_json::json!({"recorded": true})).into_response())
}

/// Proposes a command a standby made itself (publishing or retiring its signing keys).
async fn propose(port: &ClusterPort, command: tandem_store::Command) -> Result<Response, ApiError> {
    if !port.ha.view().is_self {
        return Err(ApiError::unavailable("this node is not the active node"));
    }
    Ok(Json(port.data.propose_applied(command).await?).into_response())
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
    for name in FORWARDED_REQUEST_HEADERS
        .into_iter()
        .chain([FORWARDED_BY_HEADER])
    {
        if let Some(value) = headers.get(name) {
            request = request.header(name, value);
        }
    }
    request
        .body(Body::from(body))
        .map_err(|e| ApiError::bad_request(format!("malformed forwarded request: {e}")))
}

async fn probe(port: &ClusterPort) -> Result<Response, ApiError> {
    let initialized = port
        .raft
        .is_initialized()
        .await
        .map_err(|e| ApiError::unavailable(e.to_string()))?;
    let last_log_id = port
        .log
        .last_log_id()
        .await
        .map_err(|e| ApiError::unavailable(e.to_string()))?;
    let membership = CommittedMembership::of(&port.raft.metrics().borrow());
    Ok(Json(ProbeReply {
        node_id: port.node_id,
        initialized,
        last_log_id,
        membership,
    })
    .into_response())
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
