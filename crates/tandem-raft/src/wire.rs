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
/// Header that names the cluster-channel protocol version a node speaks, on every request.
pub const PROTOCOL_HEADER: &str = "x-tandem-cluster-protocol";
/// The version of the cluster channel's messages (and of the replicated commands in them) this
/// build speaks. A release that changes them in a way an older node would misread raises it.
pub const PROTOCOL_VERSION: u32 = 1;

/// Whether a peer that names `given` as its protocol can be understood. Nodes from before the
/// header existed send none and speak version 1.
pub fn check_protocol(given: Option<&str>) -> Result<(), String> {
    let Some(text) = given else {
        return Ok(());
    };
    match text.trim().parse::<u32>() {
        Ok(PROTOCOL_VERSION) => Ok(()),
        Ok(other) => Err(format!(
            "this node speaks cluster protocol {PROTOCOL_VERSION} and the peer speaks {other}: every server of a cluster must run a release that speaks the same protocol (see the upgrade rule in docs/operations.md)"
        )),
        Err(_) => Err(format!(
            "the peer names cluster protocol {text:?}, which is not a version number"
        )),
    }
}

#[derive(Debug, thiserror::Error)]
#[error("malformed cluster message: {0}")]
pub struct WireError(#[from] bincode::Error);

#[cfg(test)]
mod protocol_tests {
    use super::*;

    #[test]
    fn only_the_same_protocol_or_none_is_understood() {
        assert_eq!(check_protocol(None), Ok(()));
        assert_eq!(check_protocol(Some("1")), Ok(()));
        let newer = check_protocol(Some("2")).unwrap_err();
        assert!(
            newer.contains("speaks cluster protocol 1 and the peer speaks 2"),
            "{newer}"
        );
        assert!(check_protocol(Some("v1")).is_err());
    }
}

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
    /// The membership the node has committed, for a server out of touch to learn whether it was
    /// removed. Nodes of earlier releases send none.
    #[serde(default)]
    pub membership: Option<crate::CommittedMembership>,
}

/// Headers of a forwarded request: the original method and URI, and the standby that sent it.
pub const FORWARD_METHOD_HEADER: &str = "x-tandem-forward-method";
pub const FORWARD_URI_HEADER: &str = "x-tandem-forward-uri";
/// Set on a request that has been forwarded once: it is never forwarded again.
pub const FORWARDED_BY_HEADER: &str = "x-tandem-forwarded-by";
