//! The node-to-node wire format, shared by the sending network and the receiving HTTP handlers.
//! Requests carry log entries and go as bincode; replies are small and go as JSON, which also
//! carries openraft's error types faithfully.

use serde::de::DeserializeOwned;
use serde::Serialize;

pub const APPEND_PATH: &str = "/raft/append";
pub const VOTE_PATH: &str = "/raft/vote";
pub const SNAPSHOT_PATH: &str = "/raft/snapshot";
/// A member asks the active node to record the addresses it advertises.
pub const ADVERTISE_PATH: &str = "/cluster/advertise";
/// A command a standby asks the active node to propose on its behalf (its signing keys).
pub const PROPOSE_PATH: &str = "/cluster/propose";
/// A client request a standby hands to the active node.
pub const FORWARD_PATH: &str = "/cluster/forward";
/// Asked of every peer by a node starting with an empty log, to learn whether a cluster exists,
/// and by standbys comparing their logs when the active node falls silent.
pub const PROBE_PATH: &str = "/raft/probe";
/// Header that carries the cluster secret on every node-to-node request.
pub const SECRET_HEADER: &str = "x-tandem-cluster-secret";
/// The header's earlier name, still accepted so that nodes of the previous release can take part
/// in a rolling upgrade.
pub const SECRET_HEADER_BEFORE: &str = "x-tandem-raft-secret";

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
    /// The last entry in the node's log: how up to date it is.
    pub last_log_id: Option<crate::LogId>,
}

/// Headers of a forwarded request: the original method and URI, and the standby that sent it.
pub const FORWARD_METHOD_HEADER: &str = "x-tandem-forward-method";
pub const FORWARD_URI_HEADER: &str = "x-tandem-forward-uri";
/// Set on a request that has been forwarded once: it is never forwarded again.
pub const FORWARDED_BY_HEADER: &str = "x-tandem-forwarded-by";
