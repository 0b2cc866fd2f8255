//! Raft for Tandem: the openraft type configuration, the durable log store, the node-to-node
//! network and the wire format both ends of it share. Everything openraft-specific stays here so
//! the rest of Tandem sees a small surface.
#![forbid(unsafe_code)]
// openraft's StorageError is large, and its traits dictate that type.
#![allow(clippy::result_large_err)]

mod abstention;
mod cluster_client;
mod contacts;
mod log_store;
mod membership;
mod network;
mod removal;
mod snapshot_file;
pub mod wire;
pub mod write_stages;

use std::fmt;

use serde::{Deserialize, Serialize};

pub use abstention::{caught_up, has_history, VoteAbstention};
pub use cluster_client::ClusterClient;
pub use contacts::PeerContacts;
pub use log_store::{free_bytes, LogStore, LogStoreError};
pub use membership::{
    node_list_drift, plan_change, MemberChange, MembershipRefusal, MembershipStep, MembershipView,
};
pub use network::HttpNetwork;
pub use openraft;
pub use removal::{removed_by, CommittedMembership};
pub use snapshot_file::SnapshotFile;

pub type NodeId = u64;

/// A command as it travels through the Raft log: the leader's clock at proposal time, and the
/// command itself, encoded by the state machine that will apply it.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Proposal {
    /// Milliseconds since the Unix epoch on the leader when it accepted the command. Every
    /// replica uses this stamp, never its own clock, to decide what has expired.
    pub stamped_at_ms: i64,
    pub command: Vec<u8>,
}

impl fmt::Debug for Proposal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Proposal(at={}, {} bytes)",
            self.stamped_at_ms,
            self.command.len()
        )
    }
}

/// A member of the cluster: where its peers reach it (its cluster port) and where clients reach
/// it (its API).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterNode {
    /// Stored under its first name, so memberships already in logs and snapshots still read.
    #[serde(rename = "raft_addr")]
    pub cluster_addr: String,
    pub api_addr: String,
}

impl fmt::Display for ClusterNode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "cluster={} api={}", self.cluster_addr, self.api_addr)
    }
}

openraft::declare_raft_types!(
    /// Tandem's Raft types: one group carries every replicated command.
    pub TypeConfig:
        D = Proposal,
        R = serde_json::Value,
        NodeId = NodeId,
        Node = ClusterNode,
        SnapshotData = SnapshotFile,
);

pub type Raft = openraft::Raft<TypeConfig>;
pub type Entry = openraft::Entry<TypeConfig>;
pub type LogId = openraft::LogId<NodeId>;
pub type StorageError = openraft::StorageError<NodeId>;
pub type StoredMembership = openraft::StoredMembership<NodeId, ClusterNode>;
pub type SnapshotMeta = openraft::SnapshotMeta<NodeId, ClusterNode>;
pub type Snapshot = openraft::Snapshot<TypeConfig>;
