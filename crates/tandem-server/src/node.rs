//! A running server node: its Raft instance, its state, and the operations the API layers use —
//! propose a command, wait until a read is linearizable, learn who leads.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tandem_ha::HaBackend;
use tandem_raft::{wire, ClusterClient, LogStore, NodeId, PeerContacts, Raft};
use tandem_store::{Applied, Command, Outcome, StateDb, StateMachine};

use crate::config::Settings;
use crate::error::ApiError;
use crate::keys::KeyRing;
use crate::proposals::ProposalQueue;
use crate::read_index::ReadIndex;

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
    /// This server's token signing keys and the key peers' sets.
    pub keys: KeyRing,
    /// Commands on their way into the Raft log, several to an entry when they arrive together.
    pub(crate) proposals: ProposalQueue,
    /// Leadership confirmations that concurrent linearizable reads share.
    pub(crate) read_index: ReadIndex,
}

impl Node {
    pub fn request_timeout(&self) -> Duration {
        self.settings.request_timeout.0
    }

    pub fn is_active(&self) -> bool {
        self.ha.view().is_self
    }

    /// Validates a command and waits until a quorum has made it durable and this node has
    /// applied it. Commands proposed at the same time may share one Raft entry.
    pub async fn propose(&self, command: Command) -> Result<Outcome, ApiError> {
        Ok(self.propose_applied(command).await??)
    }

    /// Proposes here when this node is active, otherwise asks the active node over the
    /// cluster channel to propose it; for commands a server makes itself, not for clients'
    /// requests (those are forwarded whole).
    pub async fn propose_on_active(&self, command: Command) -> Result<Outcome, ApiError> {
        let view = self.ha.view();
        if view.is_self {
            return self.propose(command).await;
        }
        let active = view
            .other_active()
            .ok_or_else(|| ApiError::unavailable("no active node is known yet"))?;
        let body = wire::encode_request(&command).map_err(ApiError::internal)?;
        let unreachable = |e: reqwest::Error| {
            ApiError::unavailable(format!("cannot reach the active node {}: {e}", active.id))
        };
        let reply = self
            .cluster
            .post(&active.cluster_addr, wire::PROPOSE_PATH)
            .timeout(self.request_timeout())
            .body(body)
            .send()
            .await
            .map_err(unreachable)?;
        let status = reply.status();
        let bytes = reply.bytes().await.map_err(unreachable)?;
        if !status.is_success() {
            return Err(ApiError::unavailable(format!(
                "the active node {} did not propose the command ({status}): {}",
                active.id,
                String::from_utf8_lossy(&bytes)
            )));
        }
        let applied: Applied = serde_json::from_slice(&bytes).map_err(|e| {
            ApiError::internal(format!("unreadable answer of the active node: {e}"))
        })?;
        Ok(applied?)
    }

    /// Like [`Node::propose`], with a refusal by the state machine as an answer rather than an
    /// error, so it can travel to the node that asked for it.
    pub async fn propose_applied(&self, command: Command) -> Result<Applied, ApiError> {
        command.validate()?;
        self.proposals.propose(command).await
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
            Consistency::Linearizable => self.read_index.confirm().await,
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
