//! Who is active, and how replicated state is written and read. The server asks one
//! [`HaBackend`] — never Raft, a database or a lock service directly — which node is active,
//! with which fencing token, and tells it to step down; and it writes and reads through one
//! [`Replicator`]. The built-in backends are the Raft cluster itself ([`RaftHa`],
//! [`RaftReplicator`]); external ones implement the same traits: a [`LeasedHa`] holds the active
//! role as a lease on a lock in another service: a row in PostgreSQL ([`postgres`]) or a key in
//! etcd ([`etcd`]).
#![forbid(unsafe_code)]

mod clock;
pub mod etcd;
mod leased_ha;
mod lock_lease;
pub mod postgres;
mod proposals;
mod raft;
mod raft_replicator;
mod read_index;
mod replicator;
mod silent_leader;

use std::fmt;

use tokio::sync::watch;

pub use clock::now_ms;
pub use leased_ha::LeasedHa;
pub use raft::RaftHa;
pub use raft_replicator::RaftReplicator;
pub use replicator::{MemberStatus, ReplicateError, ReplicationStatus, Replicator};

/// The node that holds the active role, and where to reach it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ActiveNode {
    pub id: u64,
    /// Where clients reach it (redirects point here).
    pub api_addr: String,
    /// Where peers reach it (forwarded requests go here).
    pub cluster_addr: String,
}

/// What this node knows about the active role right now.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct ActiveView {
    /// The active node, if one is known.
    pub active: Option<ActiveNode>,
    /// Grows every time the active role changes hands; a write stamped with an older token
    /// comes from a deposed holder. For Raft, the term.
    pub fencing_token: u64,
    /// This node holds the active role.
    pub is_self: bool,
    /// This node is handing the active role over and serves nothing that needs it.
    pub stepping_down: bool,
}

impl ActiveView {
    /// The active node when it is another node.
    pub fn other_active(&self) -> Option<&ActiveNode> {
        self.active.as_ref().filter(|_| !self.is_self)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum HaError {
    #[error("this node is not active")]
    NotActive,
    #[error("no standby is ready to take over: {0}")]
    NoSuccessor(String),
    #[error("the active role did not move in time: {0}")]
    Timeout(String),
    #[error("HA backend stopped: {0}")]
    Stopped(String),
}

/// Decides which node is active. Implementations push every change through [`HaBackend::watch`],
/// so standbys learn of a new active node without polling.
#[async_trait::async_trait]
pub trait HaBackend: Send + Sync + 'static {
    /// Name for logs and status: `raft`, `postgres`, `etcd`.
    fn name(&self) -> &'static str;

    /// True when another node can take over if this one fails.
    fn ha_available(&self) -> bool;

    /// The current view, updated by push.
    fn watch(&self) -> watch::Receiver<ActiveView>;

    fn view(&self) -> ActiveView {
        self.watch().borrow().clone()
    }

    /// Runs for the active role and answers the fencing token once this node holds it; the
    /// server calls it again whenever it has lost the role.
    async fn acquire(&self) -> Result<u64, HaError>;

    /// Hands the active role to a standby that is up to date, and answers once another node
    /// holds it. A no-op on a standby.
    async fn step_down(&self) -> Result<(), HaError>;
}

impl fmt::Display for ActiveNode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "node {} (api {})", self.id, self.api_addr)
    }
}
