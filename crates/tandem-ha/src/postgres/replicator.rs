//! The [`Replicator`] of `storage = postgres`: a write is one transaction in PostgreSQL, made by
//! the active node with its fencing token; the database is the only copy, so a read needs no
//! barrier beyond this node still holding the active role. There is no log to compact and no
//! membership to change: any number of servers share the database.

use std::sync::Arc;

use tandem_raft::{MemberChange, MembershipStep};
use tandem_store::{Applied, Command};

use super::PostgresStorage;
use crate::{HaBackend, ReplicateError, ReplicationStatus, Replicator};

pub struct PostgresReplicator {
    storage: Arc<PostgresStorage>,
    ha: Arc<dyn HaBackend>,
}

impl PostgresReplicator {
    /// Writes to `storage` while `ha` says this node is active.
    pub fn new(storage: Arc<PostgresStorage>, ha: Arc<dyn HaBackend>) -> PostgresReplicator {
        PostgresReplicator { storage, ha }
    }

    /// This node's fencing token, while it is the active node.
    fn token(&self) -> Result<u64, ReplicateError> {
        let view = self.ha.view();
        if !view.is_self || view.stepping_down {
            return Err(ReplicateError::Unavailable(match view.active {
                Some(active) if !view.is_self => {
                    format!("this node is not the active one; {active} is")
                }
                _ => "no node holds the active role at the moment; retry".into(),
            }));
        }
        Ok(view.fencing_token)
    }
}

#[async_trait::async_trait]
impl Replicator for PostgresReplicator {
    async fn propose(&self, command: Command) -> Result<Applied, ReplicateError> {
        let token = self.token()?;
        let mut answers = self.storage.apply(token, vec![command]).await?;
        answers
            .pop()
            .ok_or_else(|| ReplicateError::Internal("PostgreSQL applied no command".into()))
    }

    async fn confirm_read(&self) -> Result<(), ReplicateError> {
        // Every read is served by the database itself, which holds every acknowledged write.
        self.token().map(|_| ())
    }

    async fn snapshot(&self) -> Result<Option<u64>, ReplicateError> {
        Err(ReplicateError::Refused(
            "with storage = postgres there is no log to compact: PostgreSQL holds the state (back it up with pg_dump)".into(),
        ))
    }

    async fn record_addresses(
        &self,
        _id: u64,
        _cluster_addr: String,
        _api_addr: String,
    ) -> Result<(), ReplicateError> {
        // Servers learn each other's addresses from the lock's holder.
        Ok(())
    }

    async fn change_members(&self, change: MemberChange) -> Result<MembershipStep, ReplicateError> {
        Err(ReplicateError::Refused(format!(
            "with storage = postgres servers are not members of a cluster, so there is nothing to {change}: start or stop servers with the same settings instead"
        )))
    }

    fn recorded_addresses(&self, _id: u64) -> Option<(String, String)> {
        None
    }

    fn status(&self) -> ReplicationStatus {
        let view = self.ha.view();
        ReplicationStatus {
            role: if view.is_self { "active" } else { "standby" },
            term: view.fencing_token,
            leader_id: view.active.map(|a| a.id),
            ..ReplicationStatus::default()
        }
    }
}
