//! A running server node: its Raft instance, its state, and the operations the API layers use —
//! propose a command, wait until a read is linearizable, learn who leads.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tandem_raft::openraft::error::{CheckIsLeaderError, ClientWriteError, RaftError};
use tandem_raft::openraft::ServerState;
use tandem_raft::wire::{self, ReadIndexReply, SECRET_HEADER};
use tandem_raft::{ClusterNode, LogStore, NodeId, PeerContacts, Proposal, Raft};
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
    pub http: reqwest::Client,
    pub secret_api: String,
    pub secret_raft: String,
}

impl Node {
    pub fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.settings.request_timeout_ms)
    }

    pub fn is_leader(&self) -> bool {
        let metrics = self.raft.metrics();
        let m = metrics.borrow();
        m.state == ServerState::Leader && m.current_leader == Some(self.id)
    }

    /// The leader this node knows of, with its addresses.
    pub fn leader(&self) -> Option<(NodeId, ClusterNode)> {
        let metrics = self.raft.metrics();
        let m = metrics.borrow();
        let id = m.current_leader?;
        let node = m.membership_config.membership().get_node(&id)?.clone();
        Some((id, node))
    }

    /// The answer for a request only the leader can serve: a redirect to it, or 503 when no
    /// leader is known.
    pub fn not_leader(&self, path_and_query: &str) -> ApiError {
        match self.leader() {
            Some((id, node)) if id != self.id => {
                ApiError::redirect(format!("http://{}{}", node.api_addr, path_and_query), id)
            }
            _ => ApiError::unavailable(
                "no leader is known right now (an election may be under way); retry shortly",
            ),
        }
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
            Err(_) => Err(ApiError::unavailable(
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

    /// Waits until this node may serve a read at `consistency`.
    pub async fn read_barrier(
        &self,
        consistency: Consistency,
        path_and_query: &str,
    ) -> Result<(), ApiError> {
        match consistency {
            Consistency::Stale => Ok(()),
            Consistency::Leader if self.is_leader() => Ok(()),
            Consistency::Leader => Err(self.not_leader(path_and_query)),
            Consistency::Linearizable if self.is_leader() => {
                let confirmed =
                    tokio::time::timeout(self.request_timeout(), self.raft.ensure_linearizable())
                        .await;
                match confirmed {
                    Ok(Ok(_)) => Ok(()),
                    Ok(Err(RaftError::APIError(CheckIsLeaderError::ForwardToLeader(_)))) => {
                        Box::pin(self.follower_read_barrier()).await
                    }
                    Ok(Err(e)) => Err(ApiError::unavailable(format!(
                        "cannot confirm leadership for a linearizable read: {e}"
                    ))),
                    Err(_) => Err(ApiError::unavailable(
                        "could not confirm leadership in time for a linearizable read",
                    )),
                }
            }
            Consistency::Linearizable => self.follower_read_barrier().await,
        }
    }

    /// A follower's linearizable read: ask the leader which log index the read must see, then
    /// wait until this node has applied it.
    async fn follower_read_barrier(&self) -> Result<(), ApiError> {
        let Some((leader_id, leader)) = self.leader().filter(|(id, _)| *id != self.id) else {
            return Err(ApiError::unavailable(
                "no leader is known right now; retry shortly",
            ));
        };
        let deadline = tokio::time::Instant::now() + self.request_timeout();
        let reply = self
            .http
            .post(format!(
                "http://{}{}",
                leader.raft_addr,
                wire::READ_INDEX_PATH
            ))
            .header(SECRET_HEADER, &self.secret_raft)
            .timeout(self.request_timeout())
            .send()
            .await
            .map_err(|e| {
                ApiError::unavailable(format!(
                    "cannot reach leader {leader_id} to confirm a read: {e}"
                ))
            })?;
        if !reply.status().is_success() {
            return Err(ApiError::unavailable(format!(
                "leader {leader_id} could not confirm a read (HTTP {}); retry shortly",
                reply.status()
            )));
        }
        let ReadIndexReply { read_index } = reply.json().await.map_err(|e| {
            ApiError::unavailable(format!(
                "leader {leader_id} sent an unreadable read index: {e}"
            ))
        })?;
        let Some(index) = read_index else {
            return Ok(());
        };
        let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
        self.raft
            .wait(Some(remaining))
            .applied_index_at_least(Some(index), "linearizable read")
            .await
            .map_err(|_| {
                ApiError::unavailable(format!(
                    "this node did not catch up to index {index} in time"
                ))
            })?;
        Ok(())
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
