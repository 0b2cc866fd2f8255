//! Sends Raft RPCs to peers over HTTP. Every request carries the cluster secret; replies that do
//! not parse, time out or come back with an error status become openraft's RPC errors, so the
//! Raft core retries instead of failing. Only a peer that cannot be connected to is "unreachable"
//! and waited out: a slow reply (a follower busy with its first write, say) is retried at the next
//! heartbeat, because waiting out a longer backoff would leave that follower without heartbeats
//! long enough to call an election against a healthy leader.

use openraft::error::{
    Infallible, InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable,
};
use openraft::network::{Backoff, RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::wire;
use crate::write_stages;
use crate::{ClusterClient, ClusterNode, NodeId, PeerContacts, TypeConfig};

/// Creates one [`PeerClient`] per peer; all share one HTTP connection pool.
#[derive(Clone)]
pub struct HttpNetwork {
    cluster: ClusterClient,
    contacts: PeerContacts,
    heartbeat: Duration,
}

impl HttpNetwork {
    /// `heartbeat` is the cluster's heartbeat interval: the first wait before trying an
    /// unreachable peer again.
    pub fn new(cluster: ClusterClient, contacts: PeerContacts, heartbeat: Duration) -> Self {
        HttpNetwork {
            cluster,
            contacts,
            heartbeat,
        }
    }
}

/// The waits before each new attempt at a peer that could not be connected to: one heartbeat,
/// then doubling up to [`LONGEST_RETRY_WAIT`]. A peer that restarts is back in touch within a
/// heartbeat or two; one that stays down costs a refused connection every half second.
fn retry_waits(heartbeat: Duration) -> impl Iterator<Item = Duration> + Send + 'static {
    std::iter::successors(Some(heartbeat.min(LONGEST_RETRY_WAIT)), |wait| {
        Some((*wait * 2).min(LONGEST_RETRY_WAIT))
    })
}

const LONGEST_RETRY_WAIT: Duration = Duration::from_millis(500);

impl RaftNetworkFactory<TypeConfig> for HttpNetwork {
    type Network = PeerClient;

    async fn new_client(&mut self, target: NodeId, node: &ClusterNode) -> PeerClient {
        PeerClient {
            network: self.clone(),
            target,
            node: node.clone(),
            replication_seconds: metrics::histogram!(
                write_stages::REPLICATION,
                "follower" => target.to_string()
            ),
        }
    }
}

pub struct PeerClient {
    network: HttpNetwork,
    target: NodeId,
    node: ClusterNode,
    /// The round trips of appends to this peer, taken once per peer rather than looked up on
    /// every RPC.
    replication_seconds: metrics::Histogram,
}

#[derive(Debug, thiserror::Error)]
enum PeerReplyError {
    #[error("peer answered HTTP {status}: {body}")]
    Status {
        status: reqwest::StatusCode,
        body: String,
    },
    #[error("peer sent a reply that does not parse: {0}")]
    Malformed(#[from] serde_json::Error),
    #[error("cannot encode the request: {0}")]
    Encode(#[from] wire::WireError),
}

type RpcResult<T, E> = Result<T, RPCError<NodeId, ClusterNode, RaftError<NodeId, E>>>;

impl PeerClient {
    async fn call<Req, Resp, E>(
        &self,
        path: &str,
        request: &Req,
        option: &RPCOption,
    ) -> RpcResult<Resp, E>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        let body = wire::encode_request(request)
            .map_err(|e| RPCError::Network(NetworkError::new(&PeerReplyError::from(e))))?;
        let response = self
            .network
            .cluster
            .post(&self.node.cluster_addr, path)
            .timeout(option.hard_ttl())
            .body(body)
            .send()
            .await
            .map_err(|e| {
                if e.is_connect() {
                    RPCError::Unreachable(Unreachable::new(&e))
                } else {
                    RPCError::Network(NetworkError::new(&e))
                }
            })?;
        let status = response.status();
        let bytes = response
            .bytes()
            .await
            .map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        if !status.is_success() {
            let body = String::from_utf8_lossy(&bytes).chars().take(200).collect();
            return Err(RPCError::Network(NetworkError::new(
                &PeerReplyError::Status { status, body },
            )));
        }
        let reply: Result<Resp, RaftError<NodeId, E>> = serde_json::from_slice(&bytes)
            .map_err(|e| RPCError::Network(NetworkError::new(&PeerReplyError::from(e))))?;
        self.network.contacts.record(self.target);
        reply.map_err(|e| {
            RPCError::RemoteError(RemoteError::new_with_node(
                self.target,
                self.node.clone(),
                e,
            ))
        })
    }
}

impl RaftNetwork<TypeConfig> for PeerClient {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> RpcResult<AppendEntriesResponse<NodeId>, Infallible> {
        // Heartbeats carry no entries and make the follower write nothing: they are not a
        // write's replication.
        let carries_entries = !rpc.entries.is_empty();
        let started = Instant::now();
        let reply = self.call(wire::APPEND_PATH, &rpc, &option).await;
        if carries_entries && reply.is_ok() {
            self.replication_seconds.record(started.elapsed());
        }
        reply
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> RpcResult<InstallSnapshotResponse<NodeId>, InstallSnapshotError> {
        self.call(wire::SNAPSHOT_PATH, &rpc, &option).await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> RpcResult<VoteResponse<NodeId>, Infallible> {
        self.call(wire::VOTE_PATH, &rpc, &option).await
    }

    fn backoff(&self) -> Backoff {
        Backoff::new(retry_waits(self.network.heartbeat))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn millis(waits: impl Iterator<Item = Duration>) -> Vec<u128> {
        waits.take(6).map(|wait| wait.as_millis()).collect()
    }

    #[test]
    fn an_unreachable_peer_is_tried_again_after_a_heartbeat_then_less_and_less_often() {
        assert_eq!(
            millis(retry_waits(Duration::from_millis(100))),
            [100, 200, 400, 500, 500, 500]
        );
    }

    #[test]
    fn a_heartbeat_longer_than_the_longest_wait_is_capped() {
        assert_eq!(
            millis(retry_waits(Duration::from_secs(2))),
            [500, 500, 500, 500, 500, 500]
        );
    }
}
