//! Linearizable reads share leadership confirmations. Each confirmation costs a round of messages
//! to a quorum; a read may use any confirmation that started after the read arrived, so every
//! read that arrives while one round runs waits for the next round, and that one round serves
//! them all.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tandem_raft::Raft;
use tokio::sync::watch;

use crate::ReplicateError;

/// The outcome of the last finished round: its number, and the error if leadership was not
/// confirmed.
type Finished = (u64, Result<(), String>);

struct Rounds {
    /// Rounds started so far; round `started` is the one running, if any.
    started: u64,
    running: bool,
    /// A read arrived after the running round began, so another round must follow it.
    another_wanted: bool,
}

/// Where [`crate::RaftReplicator`] waits for a linearizable read.
#[derive(Clone)]
pub struct ReadIndex {
    raft: Raft,
    timeout: Duration,
    rounds: Arc<Mutex<Rounds>>,
    finished: watch::Sender<Finished>,
}

impl ReadIndex {
    pub fn new(raft: Raft, timeout: Duration) -> ReadIndex {
        ReadIndex {
            raft,
            timeout,
            rounds: Arc::new(Mutex::new(Rounds {
                started: 0,
                running: false,
                another_wanted: false,
            })),
            finished: watch::channel((0, Ok(()))).0,
        }
    }

    /// Returns once this node has confirmed, after this call began, that it still leads, and
    /// has applied everything committed up to then.
    pub async fn confirm(&self) -> Result<(), ReplicateError> {
        let mut finished = self.finished.subscribe();
        let wanted = {
            let mut rounds = self.rounds.lock().unwrap_or_else(|p| p.into_inner());
            if rounds.running {
                rounds.another_wanted = true;
                rounds.started + 1
            } else {
                rounds.started += 1;
                rounds.running = true;
                tokio::spawn(self.clone().run(rounds.started));
                rounds.started
            }
        };
        let outcome = tokio::time::timeout(
            self.timeout,
            finished.wait_for(|(round, _)| *round >= wanted),
        )
        .await;
        match outcome {
            Ok(Ok(finished)) => finished.1.clone().map_err(|e| {
                ReplicateError::Unavailable(format!(
                    "cannot confirm leadership for a linearizable read: {e}"
                ))
            }),
            Ok(Err(_)) | Err(_) => Err(ReplicateError::Unavailable(
                "could not confirm leadership in time for a linearizable read".into(),
            )),
        }
    }

    /// Runs round `round`, then the next one while reads keep arriving.
    async fn run(self, mut round: u64) {
        loop {
            let confirmed = tokio::time::timeout(self.timeout, self.raft.ensure_linearizable())
                .await
                .map_err(|_| "timed out".to_string())
                .and_then(|r| r.map(|_| ()).map_err(|e| e.to_string()));
            // The replaced value is an older round that every reader has seen or no longer needs.
            drop(self.finished.send_replace((round, confirmed)));
            let mut rounds = self.rounds.lock().unwrap_or_else(|p| p.into_inner());
            if !rounds.another_wanted {
                rounds.running = false;
                return;
            }
            rounds.another_wanted = false;
            rounds.started += 1;
            round = rounds.started;
        }
    }
}
