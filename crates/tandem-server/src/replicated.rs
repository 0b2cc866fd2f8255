//! The replicated state as the API handlers use it: propose a command, wait until a read may be
//! served at the consistency asked for, run a read against this node's copy, take a backup.

use std::sync::Arc;

use axum::http::StatusCode;
use tandem_ha::{HaBackend, ReplicateError, ReplicationStatus, Replicator};
use tandem_raft::{write_stages, MembershipRefusal};
use tandem_store::{
    Applied, Command, Outcome, QueryRows, SqlAnswer, StateMachine, StateReads, Statement,
    StoreError,
};

use crate::error::ApiError;
use crate::storage_quota::StorageGuard;

/// How a read is served.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Consistency {
    /// Sees every write acknowledged before the read began (confirmed with a quorum).
    #[default]
    Linearizable,
    /// Served by the active node from its own state, without asking a quorum.
    #[serde(alias = "leader")]
    Active,
    /// Served by whichever node receives it, from its own state: fast, possibly behind.
    Stale,
}

impl From<ReplicateError> for ApiError {
    fn from(e: ReplicateError) -> Self {
        match e {
            ReplicateError::Unavailable(message) => ApiError::unavailable(message),
            ReplicateError::OutcomeUnknown(message) => ApiError::outcome_unknown(message),
            ReplicateError::Refused(message) => ApiError::bad_request(message),
            ReplicateError::Internal(message) => ApiError::internal(message),
            ReplicateError::Membership(refusal) => {
                let (status, code) = match &refusal {
                    MembershipRefusal::UnknownMember { .. } => (StatusCode::NOT_FOUND, "not_found"),
                    MembershipRefusal::IdInUse { .. } | MembershipRefusal::AddressInUse { .. } => {
                        (StatusCode::CONFLICT, "member_exists")
                    }
                    MembershipRefusal::LastVoter { .. } => (StatusCode::CONFLICT, "last_voter"),
                    MembershipRefusal::InProgress(_) => {
                        (StatusCode::CONFLICT, "membership_change_in_progress")
                    }
                };
                ApiError::new(status, code, refusal.to_string())
            }
        }
    }
}

/// Cheap to clone: every handler's state holds one, and axum clones it for each request.
#[derive(Clone)]
pub struct Replicated(Arc<ReplicatedParts>);

struct ReplicatedParts {
    replicator: Arc<dyn Replicator>,
    /// Reads that need the active node are refused once this node has lost the role.
    ha: Arc<dyn HaBackend>,
    /// This node's copy of the state (its database is what reads and backups use).
    machine: StateMachine,
    /// Turns writes away while storage is full.
    storage: StorageGuard,
    /// Each write's whole time here, the last of its stages.
    write_seconds: metrics::Histogram,
}

impl Replicated {
    pub fn new(
        replicator: Arc<dyn Replicator>,
        ha: Arc<dyn HaBackend>,
        machine: StateMachine,
        storage: StorageGuard,
    ) -> Replicated {
        Replicated(Arc::new(ReplicatedParts {
            replicator,
            ha,
            machine,
            storage,
            write_seconds: metrics::histogram!(write_stages::ANSWER),
        }))
    }

    /// Validates a command and waits until it is durable and applied on this node; a refusal by
    /// the state machine is an error.
    pub async fn propose(&self, command: Command) -> Result<Outcome, ApiError> {
        Ok(self.propose_applied(command).await??)
    }

    /// Like [`Replicated::propose`], with a refusal by the state machine as an answer rather
    /// than an error, so it can travel to the node that asked for it. While storage is full, a
    /// command that may add data is refused here, before Raft is asked to append it.
    pub async fn propose_applied(&self, command: Command) -> Result<Applied, ApiError> {
        let started = std::time::Instant::now();
        command.validate()?;
        self.0.storage.admit(&command)?;
        let proposed = self.0.replicator.propose(command).await;
        self.0.write_seconds.record(started.elapsed());
        let result = match &proposed {
            Ok(Ok(_)) => "applied",
            Ok(Err(_)) => "refused",
            Err(_) => "failed",
        };
        metrics::counter!("tandem_raft_proposals_total", "result" => result).increment(1);
        Ok(proposed?)
    }

    /// Waits until this node may serve a read at `consistency`. Only the active node serves
    /// linearizable and active reads; the forwarding layer sends them there.
    pub async fn read_barrier(&self, consistency: Consistency) -> Result<(), ApiError> {
        match consistency {
            Consistency::Stale => Ok(()),
            _ if !self.0.ha.view().is_self => Err(ApiError::unavailable(
                "this node lost the active role while serving the read; retry",
            )),
            Consistency::Active => Ok(()),
            Consistency::Linearizable => Ok(self.0.replicator.confirm_read().await?),
        }
    }

    /// Runs a read of the state off the async threads.
    pub async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&dyn StateReads) -> Result<T, ApiError> + Send + 'static,
    ) -> Result<T, ApiError> {
        let db = self.0.machine.db();
        tokio::task::spawn_blocking(move || f(&*db))
            .await
            .map_err(ApiError::internal)?
    }

    /// Runs a short read of the state on the caller's thread, for lookups on every request
    /// (a credential, a key set) that this node's copy answers at once.
    pub fn read_now<T>(
        &self,
        f: impl FnOnce(&dyn StateReads) -> Result<T, StoreError>,
    ) -> Result<T, ApiError> {
        Ok(f(&*self.0.machine.db())?)
    }

    /// Runs a user's read-only statement.
    pub async fn query(&self, statement: Statement) -> Result<QueryRows, ApiError> {
        let db = self.0.machine.db();
        tokio::task::spawn_blocking(move || db.query(&statement))
            .await
            .map_err(ApiError::internal)?
            .map_err(ApiError::from)
    }

    /// Runs a user's read-only statements on one snapshot, each answering on its own.
    pub async fn query_each(
        &self,
        statements: Vec<Statement>,
    ) -> Result<Vec<(SqlAnswer, f64)>, ApiError> {
        let db = self.0.machine.db();
        tokio::task::spawn_blocking(move || db.query_each(&statements))
            .await
            .map_err(ApiError::internal)?
            .map_err(ApiError::from)
    }

    /// Whether every one of `statements` only reads.
    pub async fn all_read_only(&self, statements: Vec<Statement>) -> Result<bool, ApiError> {
        let db = self.0.machine.db();
        tokio::task::spawn_blocking(move || statements.iter().all(|s| db.is_read_only(&s.sql)))
            .await
            .map_err(ApiError::internal)
    }

    /// Grows whenever the published key set may have changed, so verifiers decode it again.
    pub fn keys_version(&self) -> u64 {
        self.0.machine.db().keys_version()
    }

    /// The registry index, updated once each write that changed the agents is applied here.
    pub fn registry_changes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.0.machine.db().registry_changes()
    }

    /// The time of the latest write this node has applied, as the active node stamped it (0
    /// before any).
    pub fn last_write_ms(&self) -> i64 {
        self.0.machine.db().clock_ms()
    }

    /// A consistent copy of the whole state database, open to be read, with its length in bytes
    /// and the log index it holds. It is on disk, never in memory, however large the state.
    pub async fn backup(&self) -> Result<(tokio::fs::File, u64, u64), ApiError> {
        let machine = self.0.machine.clone();
        let (file, applied) = tokio::task::spawn_blocking(move || machine.backup())
            .await
            .map_err(ApiError::internal)??;
        let length = file.metadata().map_err(ApiError::internal)?.len();
        let index = applied.map(|l| l.index).unwrap_or(0);
        Ok((tokio::fs::File::from_std(file), length, index))
    }

    pub async fn snapshot(&self) -> Result<Option<u64>, ApiError> {
        Ok(self.0.replicator.snapshot().await?)
    }

    /// Whether storage is full, as the last sample found.
    pub fn storage(&self) -> &StorageGuard {
        &self.0.storage
    }

    pub fn status(&self) -> ReplicationStatus {
        self.0.replicator.status()
    }

    /// The addresses recorded for member `id`, as `(cluster_addr, api_addr)`.
    pub fn recorded_addresses(&self, id: u64) -> Option<(String, String)> {
        self.0.replicator.recorded_addresses(id)
    }

    pub(crate) fn replicator(&self) -> &dyn Replicator {
        &*self.0.replicator
    }
}
