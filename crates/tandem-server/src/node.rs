//! A running server node: its Raft instance, its state, and the operations the API layers use —
//! propose a command, wait until a read is linearizable, learn who leads.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tandem_ha::HaBackend;
use tandem_raft::openraft::error::{ClientWriteError, RaftError};
use tandem_raft::{ClusterClient, LogStore, NodeId, PeerContacts, Proposal, Raft};
use tandem_store::{Applied, Command, Outcome, StateDb, StateMachine};

use crate::config::Settings;
use crate::error::ApiError;

/// How a read is served.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Consistency {
    /// Sees every write acknowledged before the read began (confirmed with a quorum).
    #[default]
    Linearizable,
    /// Served by the leader from its own state, without asking a quorum.
    Leader,
    /// Served by whichever node receives it, from its own state: fast, possibly behind.
    Stale,
}

pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default()
}

pub struct Node {
    pub id: NodeId,
    pub settings: Settings,
    pub raft: Raft,
    pub state: StateMachine,
    pub db: Arc<StateDb>,
    pub log: LogStore,
    pub contacts: PeerContacts,
    pub snapshot_receipt: crate::cluster_api::SnapshotReceipt,
    /// Decides which node is active; every "am I active?" question goes here.
    pub ha: Arc<dyn HaBackend>,
    /// Speaks to the other nodes' cluster ports (forwarded requests, probes).
    pub cluster: ClusterClient,
    pub secret_api: String,
    pub secret_raft: String,
}

impl Node {
    pub fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.settings.request_timeout_ms)
    }

    pub fn is_active(&self) -> bool {
        self.ha.view().is_self
    }

    /// Validates a command, stamps it with this leader's clock, and waits until a quorum has
    /// made it durable and this node has applied it.
    pub async fn propose(&self, command: Command) -> Result<Outcome, ApiError> {
        command.validate()?;
        let proposal = Proposal {
            stamped_at_ms: now_ms(),
            command: command.encode(),
        };
        let written =
            tokio::time::timeout(self.request_timeout(), self.raft.client_write(proposal)).await;
        match written {
            Err(_) => Err(ApiError::outcome_unknown(
                "the write was not committed in time (no quorum?); it may still be applied later",
            )),
            Ok(Ok(response)) => {
                let applied: Applied = serde_json::from_value(response.data)
                    .map_err(|e| ApiError::internal(format!("unreadable apply result: {e}")))?;
                Ok(applied?)
            }
            Ok(Err(RaftError::APIError(ClientWriteError::ForwardToLeader(forward)))) => {
                // Leadership moved while the write was queued; it was not applied here.
                Err(ApiError::unavailable(match forward.leader_id {
                    Some(id) => format!(
                        "leadership moved to node {id} before the write was proposed; retry"
                    ),
                    None => "leadership is changing; retry shortly".to_string(),
                }))
            }
            Ok(Err(e)) => Err(ApiError::unavailable(format!(
                "the write could not be proposed: {e}"
            ))),
        }
    }

    /// Waits until this node may serve a read at `consistency`. Only the active node serves
    /// linearizable and leader reads; the forwarding layer sends them there.
    pub async fn read_barrier(&self, consistency: Consistency) -> Result<(), ApiError> {
        match consistency {
            Consistency::Stale => Ok(()),
            _ if !self.is_active() => Err(ApiError::unavailable(
                "this node lost the active role while serving the read; retry",
            )),
            Consistency::Leader => Ok(()),
            Consistency::Linearizable => {
                let confirmed =
                    tokio::time::timeout(self.request_timeout(), self.raft.ensure_linearizable())
                        .await;
                match confirmed {
                    Ok(Ok(_)) => Ok(()),
                    Ok(Err(e)) => Err(ApiError::unavailable(format!(
                        "cannot confirm leadership for a linearizable read: {e}"
                    ))),
                    Err(_) => Err(ApiError::unavailable(
                        "could not confirm leadership in time for a linearizable read",
                    )),
                }
            }
        }
    }

    /// Runs a blocking read against the state database off the async threads.
    pub async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&StateDb) -> Result<T, ApiError> + Send + 'static,
    ) -> Result<T, ApiError> {
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || f(&db))
            .await
            .map_err(ApiError::internal)?
    }
}
