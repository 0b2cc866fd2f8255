//! Log entries for tests that apply commands straight to a [`tandem_store::StateDb`].

use tandem_raft::openraft::{CommittedLeaderId, EntryPayload, LogId};
use tandem_raft::{Entry, Proposal};
use tandem_store::Command;

/// `command` as the committed entry at `index`, stamped at a fixed time.
pub fn entry(index: u64, command: &Command) -> Entry {
    Entry {
        log_id: LogId::new(CommittedLeaderId::new(1, 1), index),
        payload: EntryPayload::Normal(Proposal {
            stamped_at_ms: 1_700_000_000_000,
            command: command.encode(),
        }),
    }
}
