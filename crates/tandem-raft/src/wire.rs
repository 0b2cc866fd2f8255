//! The node-to-node wire format, shared by the sending network and the receiving HTTP handlers.
//! Requests carry log entries and go as bincode; replies are small and go as JSON, which also
//! carries openraft's error types faithfully.

use serde::de::DeserializeOwned;
use serde::Serialize;

pub const APPEND_PATH: &str = "/raft/append";
pub const VOTE_PATH: &str = "/raft/vote";
pub const SNAPSHOT_PATH: &str = "/raft/snapshot";
/// Asked of the leader by a follower that serves a linearizable read.
pub const READ_INDEX_PATH: &str = "/raft/read-index";
/// Asked of every peer by a node starting with an empty log, to learn whether a cluster exists.
pub const PROBE_PATH: &str = "/raft/probe";
/// Header that carries the cluster secret on every node-to-node request.
pub const SECRET_HEADER: &str = "x-tandem-raft-secret";

#[derive(Debug, thiserror::Error)]
#[error("malformed cluster message: {0}")]
pub struct WireError(#[from] bincode::Error);

pub fn encode_request<T: Serialize>(message: &T) -> Result<Vec<u8>, WireError> {
    Ok(bincode::serialize(message)?)
}

pub fn decode_request<T: DeserializeOwned>(body: &[u8]) -> Result<T, WireError> {
    use bincode::Options;
    // A peer that speaks garbage must not make this node allocate without bound.
    let options = bincode::DefaultOptions::new()
        .with_fixint_encoding()
        .allow_trailing_bytes()
        .with_limit(body.len() as u64 + 1024);
    Ok(options.deserialize(body)?)
}

/// A node's answer to [`PROBE_PATH`].
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct ProbeReply {
    pub node_id: crate::NodeId,
    /// True once the node has a membership: the cluster has been formed.
    pub initialized: bool,
}

/// The leader's answer to [`READ_INDEX_PATH`]: the log index a read must wait for.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct ReadIndexReply {
    pub read_index: Option<u64>,
}
