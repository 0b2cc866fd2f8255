//! How the server writes and reads replicated state, whatever holds it. The server proposes
//! commands and waits for read barriers through a [`Replicator`] — never through Raft, a database
//! or a lock service directly — and learns from it how the replication group stands. The
//! built-in one is the Raft cluster ([`crate::RaftReplicator`]).

use tandem_raft::{MemberChange, MembershipRefusal, MembershipStep};
use tandem_store::{Applied, Command};

/// Why a write or a read barrier did not go through.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ReplicateError {
    /// Nothing was applied; the request may be sent again.
    #[error("{0}")]
    Unavailable(String),
    /// The command may or may not have been applied.
    #[error("{0}")]
    OutcomeUnknown(String),
    /// The request was refused as it stands (it names a member that does not exist, say).
    #[error("{0}")]
    Refused(String),
    /// The replication layer answered something this node cannot read.
    #[error("{0}")]
    Internal(String),
    /// A membership change that the membership as it stands does not allow.
    #[error(transparent)]
    Membership(#[from] MembershipRefusal),
}

/// One member of the replication group, as this node sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberStatus {
    pub id: u64,
    pub cluster_addr: String,
    pub api_addr: String,
    pub voter: bool,
    /// The group's leader in the replication protocol (with the built-in backend, the active node).
    pub leads: bool,
    /// How much of the log it has replicated, as the leader knows it.
    pub matched_index: Option<u64>,
    /// How many entries of the leader's log it lacks (known on the leader only).
    pub lag: Option<u64>,
    /// Milliseconds since this node last heard from it (0 for this node).
    pub last_contact_ms: Option<u64>,
}

/// The replication group as this node sees it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReplicationStatus {
    /// This node's role in the replication protocol (`leader`, `follower`, `candidate`, ...).
    pub role: &'static str,
    pub term: u64,
    pub leader_id: Option<u64>,
    pub commit_index: Option<u64>,
    pub applied_index: Option<u64>,
    pub last_log_index: Option<u64>,
    pub snapshot_index: Option<u64>,
    pub purged_index: Option<u64>,
    /// On the leader: milliseconds since a quorum last confirmed it.
    pub millis_since_quorum_ack: Option<u64>,
    pub members: Vec<MemberStatus>,
}

impl ReplicationStatus {
    pub fn member_ids(&self) -> std::collections::BTreeSet<u64> {
        self.members.iter().map(|m| m.id).collect()
    }
}

#[async_trait::async_trait]
pub trait Replicator: Send + Sync + 'static {
    /// Proposes a validated command and answers once it is durable where the backend keeps it
    /// and this node has applied it. Commands proposed at the same time may share one write.
    async fn propose(&self, command: Command) -> Result<Applied, ReplicateError>;

    /// Returns once this node has confirmed, after the call began, that its writes are the
    /// current ones and it has applied everything committed up to then.
    async fn confirm_read(&self) -> Result<(), ReplicateError>;

    /// Compacts the log into a snapshot now; answers the index the snapshot covers.
    async fn snapshot(&self) -> Result<Option<u64>, ReplicateError>;

    /// Records the addresses a member advertises (on the node that may change membership).
    async fn record_addresses(
        &self,
        id: u64,
        cluster_addr: String,
        api_addr: String,
    ) -> Result<(), ReplicateError>;

    /// Carries out a membership change an operator asked for (on the node that may change
    /// membership), one at a time, and answers how it went about it. A
    /// [`MembershipStep::StepDownFirst`] is not carried out: this node must hand the active role
    /// over, and the next one removes it.
    async fn change_members(&self, change: MemberChange) -> Result<MembershipStep, ReplicateError>;

    /// The addresses recorded for member `id`, as `(cluster_addr, api_addr)`.
    fn recorded_addresses(&self, id: u64) -> Option<(String, String)>;

    fn status(&self) -> ReplicationStatus;
}
