//! Log entries for tests that apply commands straight to a [`tandem_store::StateDb`].

use tandem_raft::openraft::{CommittedLeaderId, EntryPayload, LogId};
use tandem_raft::{Entry, Proposal};
use tandem_store::Command;

/// `command` as the committed entry at `index`, stamped at a fixed time.
#[allow(dead_code)] // Not every test file that includes this module uses both.
pub fn entry(index: u64, command: &Command) -> Entry {
    entry_at(index, 1_700_000_000_000, command)
}

/// `command` as the committed entry at `index`, stamped by the leader at `at_ms`.
#[allow(dead_code)]
pub fn entry_at(index: u64, at_ms: i64, command: &Command) -> Entry {
    Entry {
        log_id: LogId::new(CommittedLeaderId::new(1, 1), index),
        payload: EntryPayload::Normal(Proposal {
            stamped_at_ms: at_ms,
            command: command.encode(),
        }),
    }
}

/// Applies `command` to `db` as the entry at `index`, stamped at `at_ms`, and answers its result.
#[allow(dead_code)]
pub fn apply_at(
    db: &tandem_store::StateDb,
    index: u64,
    at_ms: i64,
    command: Command,
) -> tandem_store::Applied {
    let answers = db
        .apply(&[entry_at(index, at_ms, &command)])
        .expect("apply");
    serde_json::from_value(answers[0].clone()).expect("an apply result")
}
