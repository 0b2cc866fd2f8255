//! What the bench's targets answer and are asked in common: who acknowledged a write, and how a
//! read may be served. Apart from the targets so that each target module depends on it alone.

use anyhow::{bail, Result};

/// Who acknowledged a write, as much as a failover measurement needs to tell an old leader's
/// acknowledgement from a new one's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Acknowledger {
    /// Tandem names the active node that served the request (0 when the header was missing).
    Node(u64),
    /// etcd names the Raft term of the member that answered.
    Term(u64),
}

impl Acknowledger {
    /// True when a write acknowledged like this cannot have been served by the leader that
    /// `stopped` describes.
    pub fn is_after(&self, stopped: &Acknowledger) -> bool {
        match (self, stopped) {
            (Acknowledger::Node(node), Acknowledger::Node(old)) => *node != 0 && node != old,
            (Acknowledger::Term(term), Acknowledger::Term(old)) => term > old,
            _ => false,
        }
    }
}

/// How a read may be served.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReadConsistency {
    /// Linearizable: Tandem's read index, etcd's default (`serializable=false`).
    Linearizable,
    /// Served by the node asked, from what it has applied: Tandem's `stale`, etcd's serializable.
    Stale,
    /// Served by Tandem's active node from its state, without a quorum round; etcd has no such level.
    Active,
}

impl ReadConsistency {
    pub fn parse(name: &str) -> Result<ReadConsistency> {
        Ok(match name {
            "linearizable" => ReadConsistency::Linearizable,
            "stale" => ReadConsistency::Stale,
            // `leader` is the level's earlier name.
            "active" | "leader" => ReadConsistency::Active,
            other => bail!("--consistency {other:?}: use linearizable, active or stale"),
        })
    }

    pub(crate) fn name(self) -> &'static str {
        match self {
            ReadConsistency::Linearizable => "linearizable",
            ReadConsistency::Stale => "stale",
            ReadConsistency::Active => "active",
        }
    }
}
