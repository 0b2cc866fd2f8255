//! Group commit of proposals: the commands that reach the active node while earlier entries are
//! still on their way through Raft go into the next entry together, so a burst of concurrent
//! writes costs a few log appends, fsyncs and replication rounds instead of one each. A lone
//! write is proposed at once: batching adds no wait when nothing else is in flight.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tandem_raft::openraft::error::{ClientWriteError, RaftError};
use tandem_raft::write_stages::{self, CommitClock};
use tandem_raft::{Proposal, Raft};
use tandem_store::{Applied, Command};
use tokio::sync::{mpsc, oneshot, Semaphore};

use crate::clock::now_ms;
use crate::ReplicateError;

/// Entries proposed and not yet applied at once. While they are in flight, new commands queue
/// and go out together in the next entry; a few in flight keep the log and the followers busy
/// without splitting a burst into one entry per command.
const ENTRIES_IN_FLIGHT: usize = 4;
/// Bounds on one entry, so that one append RPC stays well within the heartbeat interval.
const MAX_COMMANDS_PER_ENTRY: usize = 1024;
const MAX_BYTES_PER_ENTRY: u64 = 1 << 20;

struct Queued {
    command: Command,
    answer: oneshot::Sender<Result<Applied, ReplicateError>>,
    queued_at: Instant,
}

/// The stages a proposal times, with histograms taken once.
struct ProposalTimes {
    queue: metrics::Histogram,
    to_commit: metrics::Histogram,
    commit_to_answer: metrics::Histogram,
    /// When the log saved each recent commit.
    commits: CommitClock,
}

impl ProposalTimes {
    /// Splits the time since `proposed_at` at the commit of entry `index`, when the log saved a
    /// commit at exactly that index (every entry when writes come one at a time).
    fn answered(&self, proposed_at: Instant, index: u64) {
        if let Some(since_commit) = self.commits.since_committed(index) {
            self.to_commit
                .record(proposed_at.elapsed().saturating_sub(since_commit));
            self.commit_to_answer.record(since_commit);
        }
    }
}

/// Where [`crate::RaftReplicator`] hands the commands it is asked to propose.
pub struct ProposalQueue {
    queue: mpsc::UnboundedSender<Queued>,
    timeout: Duration,
}

impl ProposalQueue {
    /// Starts the task that proposes queued commands to `raft`; it ends when the queue is dropped.
    /// `commits` is the log's record of when it saved each commit.
    pub fn start(raft: Raft, timeout: Duration, commits: CommitClock) -> ProposalQueue {
        let (queue, queued) = mpsc::unbounded_channel();
        let times = Arc::new(ProposalTimes {
            queue: metrics::histogram!(write_stages::QUEUE),
            to_commit: metrics::histogram!(write_stages::PROPOSE_TO_COMMIT),
            commit_to_answer: metrics::histogram!(write_stages::COMMIT_TO_ANSWER),
            commits,
        });
        tokio::spawn(propose_queued(raft, timeout, queued, times));
        ProposalQueue { queue, timeout }
    }

    /// Proposes a validated `command` and waits until a quorum has made it durable and this
    /// node has applied it, for at most the request timeout in all, queueing included.
    pub async fn propose(&self, command: Command) -> Result<Applied, ReplicateError> {
        let (answer, answered) = oneshot::channel();
        self.queue
            .send(Queued {
                command,
                answer,
                queued_at: Instant::now(),
            })
            .map_err(|_| ReplicateError::Unavailable("this node is shutting down".into()))?;
        match tokio::time::timeout(self.timeout, answered).await {
            Ok(Ok(applied)) => applied,
            Ok(Err(_)) => Err(ReplicateError::OutcomeUnknown(
                "this node stopped before the write was answered".into(),
            )),
            // Still queued or in flight: it may be applied later.
            Err(_) => Err(not_committed_in_time()),
        }
    }
}

async fn propose_queued(
    raft: Raft,
    timeout: Duration,
    mut queued: mpsc::UnboundedReceiver<Queued>,
    times: Arc<ProposalTimes>,
) {
    let in_flight = Arc::new(Semaphore::new(ENTRIES_IN_FLIGHT));
    let mut held_over: Option<Queued> = None;
    loop {
        let first = match held_over.take() {
            Some(first) => first,
            None => match queued.recv().await {
                Some(first) => first,
                None => return,
            },
        };
        // Waiting for a free slot first lets everything that arrives meanwhile join this entry.
        let Ok(slot) = in_flight.clone().acquire_owned().await else {
            return;
        };
        let mut bytes = first.command.encoded_len();
        let mut batch = vec![first];
        while batch.len() < MAX_COMMANDS_PER_ENTRY {
            let Ok(next) = queued.try_recv() else { break };
            let len = next.command.encoded_len();
            if bytes.saturating_add(len) > MAX_BYTES_PER_ENTRY {
                held_over = Some(next);
                break;
            }
            bytes += len;
            batch.push(next);
        }
        for queued in &batch {
            times.queue.record(queued.queued_at.elapsed());
        }
        let (raft, times) = (raft.clone(), times.clone());
        tokio::spawn(async move {
            propose_entry(&raft, timeout, batch, &times).await;
            drop(slot);
        });
    }
}

/// Proposes `batch` as one entry and answers each command.
async fn propose_entry(
    raft: &Raft,
    timeout: Duration,
    mut batch: Vec<Queued>,
    times: &ProposalTimes,
) {
    let command = if batch.len() == 1 {
        batch[0].command.clone()
    } else {
        Command::Batch(batch.iter().map(|q| q.command.clone()).collect())
    };
    let answers = write(raft, timeout, command, times).await;
    match answers {
        Err(e) => {
            for queued in batch {
                let _ = queued.answer.send(Err(e.clone()));
            }
        }
        Ok(data) if batch.len() == 1 => {
            let applied = serde_json::from_value::<Applied>(data)
                .map_err(|e| ReplicateError::Internal(format!("unreadable apply result: {e}")));
            if let Some(queued) = batch.pop() {
                let _ = queued.answer.send(applied);
            }
        }
        Ok(data) => {
            let answers = serde_json::from_value::<Vec<Applied>>(data)
                .ok()
                .filter(|answers| answers.len() == batch.len());
            match answers {
                Some(answers) => {
                    for (queued, applied) in batch.into_iter().zip(answers) {
                        let _ = queued.answer.send(Ok(applied));
                    }
                }
                None => {
                    for queued in batch {
                        let _ = queued.answer.send(Err(ReplicateError::Internal(
                            "unreadable apply result for a batch of commands".into(),
                        )));
                    }
                }
            }
        }
    }
}

fn not_committed_in_time() -> ReplicateError {
    ReplicateError::OutcomeUnknown(
        "the write was not committed in time (no quorum?); it may still be applied later".into(),
    )
}

/// Stamps `command` with this leader's clock, proposes it as one entry and answers what the
/// state machine returned for it.
async fn write(
    raft: &Raft,
    timeout: Duration,
    command: Command,
    times: &ProposalTimes,
) -> Result<serde_json::Value, ReplicateError> {
    let proposal = Proposal {
        stamped_at_ms: now_ms(),
        command: command.encode(),
    };
    let proposed_at = Instant::now();
    match tokio::time::timeout(timeout, raft.client_write(proposal)).await {
        Err(_) => Err(not_committed_in_time()),
        Ok(Ok(response)) => {
            times.answered(proposed_at, response.log_id.index);
            Ok(response.data)
        }
        Ok(Err(RaftError::APIError(ClientWriteError::ForwardToLeader(forward)))) => {
            // Leadership moved while the write was queued; it was not applied here.
            Err(ReplicateError::Unavailable(match forward.leader_id {
                Some(id) => {
                    format!("leadership moved to node {id} before the write was proposed; retry")
                }
                None => "leadership is changing; retry shortly".to_string(),
            }))
        }
        Ok(Err(e)) => Err(ReplicateError::Unavailable(format!(
            "the write could not be proposed: {e}"
        ))),
    }
}
