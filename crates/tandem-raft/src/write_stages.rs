//! Where a write's time goes. The stages a write passes, each a latency histogram in `/metrics`
//! recorded by the layer that does the work, named once here so that reports (`tandem bench
//! --stages`) read the same names the servers record; and the clock that lets the state machine
//! tell how long committed entries waited before it applied them.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// On the active node: from a command's arrival in the proposal queue until its entry is handed
/// to Raft (the group commit's wait for a free slot).
pub const QUEUE: &str = "tandem_write_queue_seconds";
/// On the active node, per entry the log saved a commit at (every entry when writes come one at
/// a time; the last of each commit otherwise): from handing it to Raft until its commit is saved,
/// which spans the log append, replication and openraft's core.
pub const PROPOSE_TO_COMMIT: &str = "tandem_raft_propose_to_commit_seconds";
/// On every node: from Raft handing entries to the log until they are on disk (the wait for the
/// log writer included, then the transaction and its fsync).
pub const LOG_APPEND: &str = "tandem_raft_log_append_seconds";
/// On the leader, labelled `follower`: an append RPC that carries entries, from encoding the
/// request to the follower's answer (the network both ways, the follower's append and fsync).
pub const REPLICATION: &str = "tandem_raft_replication_seconds";
/// On a follower: an append that carries entries, from its arrival until the answer is ready
/// (the follower's Raft core and its log append + fsync).
pub const FOLLOWER_APPEND: &str = "tandem_raft_follower_append_seconds";
/// On every node: from Raft saving a commit index until the state machine begins to apply the
/// entries up to it.
pub const COMMIT_TO_APPLY: &str = "tandem_raft_commit_to_apply_seconds";
/// On every node: applying one batch of committed entries to the state machine (SQLite).
pub const APPLY: &str = "tandem_raft_apply_seconds";
/// On the active node, for the same entries as [`PROPOSE_TO_COMMIT`]: from the commit being saved
/// until the proposal has its answer (commit → apply, the apply, the result back).
pub const COMMIT_TO_ANSWER: &str = "tandem_raft_commit_to_answer_seconds";
/// On the node that proposed it: a write from validation until its answer is known, all stages
/// above included.
pub const ANSWER: &str = "tandem_write_seconds";

/// The stages in the order a write passes them, each with the name a report gives it.
pub const WRITE_STAGES: &[(&str, &str)] = &[
    (QUEUE, "queue before propose"),
    (PROPOSE_TO_COMMIT, "propose -> commit"),
    (LOG_APPEND, "log append + fsync"),
    (REPLICATION, "replication round trip"),
    (FOLLOWER_APPEND, "follower append handled"),
    (COMMIT_TO_APPLY, "commit -> apply"),
    (APPLY, "apply in SQLite"),
    (COMMIT_TO_ANSWER, "commit -> answer"),
    (ANSWER, "write answered"),
];

/// Commits remembered at once; apply follows commit closely, so a few hundred is plenty.
const REMEMBERED: usize = 256;
const NO_INDEX: u64 = u64::MAX;

struct Slot {
    index: AtomicU64,
    nanos: AtomicU64,
}

struct CommitTimes {
    origin: Instant,
    slots: Box<[Slot]>,
}

/// When recent commit indexes were saved, without locks: the log store writes, the state machine
/// reads. Clones share the times.
#[derive(Clone)]
pub struct CommitClock(Arc<CommitTimes>);

impl Default for CommitClock {
    fn default() -> Self {
        let slots = (0..REMEMBERED)
            .map(|_| Slot {
                index: AtomicU64::new(NO_INDEX),
                nanos: AtomicU64::new(0),
            })
            .collect();
        CommitClock(Arc::new(CommitTimes {
            origin: Instant::now(),
            slots,
        }))
    }
}

impl CommitClock {
    fn slot(&self, index: u64) -> &Slot {
        &self.0.slots[(index % REMEMBERED as u64) as usize]
    }

    fn nanos_now(&self) -> u64 {
        u64::try_from(self.0.origin.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    /// Notes that everything up to `index` was committed just now.
    pub fn committed(&self, index: u64) {
        let slot = self.slot(index);
        slot.nanos.store(self.nanos_now(), Ordering::Relaxed);
        slot.index.store(index, Ordering::Release);
    }

    /// How long ago a commit up to exactly `index` was noted, if it is still remembered.
    pub fn since_committed(&self, index: u64) -> Option<Duration> {
        let slot = self.slot(index);
        if slot.index.load(Ordering::Acquire) != index {
            return None;
        }
        let at = slot.nanos.load(Ordering::Relaxed);
        Some(Duration::from_nanos(self.nanos_now().saturating_sub(at)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_noted_commit_is_found_by_its_index() {
        let clock = CommitClock::default();
        assert_eq!(clock.since_committed(0), None, "nothing noted yet");
        clock.committed(7);
        assert!(clock.since_committed(7).is_some());
        assert_eq!(clock.since_committed(8), None);
        assert_eq!(clock.since_committed(6), None);
    }

    #[test]
    fn an_old_commit_is_forgotten_once_its_slot_is_reused() {
        let clock = CommitClock::default();
        clock.committed(3);
        clock.committed(3 + REMEMBERED as u64);
        assert_eq!(clock.since_committed(3), None);
        assert!(clock.since_committed(3 + REMEMBERED as u64).is_some());
    }

    #[test]
    fn every_stage_has_a_distinct_histogram_name() {
        let names: std::collections::BTreeSet<_> = WRITE_STAGES.iter().map(|(n, _)| n).collect();
        assert_eq!(names.len(), WRITE_STAGES.len());
        assert!(names.iter().all(|n| n.ends_with("_seconds")));
    }
}
