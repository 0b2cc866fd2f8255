//! openraft's own conformance suite, run against Tandem's log store and state machine.

use tandem_raft::openraft::testing::{StoreBuilder, Suite};
use tandem_raft::{LogStore, StorageError, TypeConfig};
use tandem_store::StateMachine;

struct DiskStores;

impl StoreBuilder<TypeConfig, LogStore, StateMachine, tempfile::TempDir> for DiskStores {
    async fn build(&self) -> Result<(tempfile::TempDir, LogStore, StateMachine), StorageError> {
        let dir = tempfile::tempdir().expect("temporary directory");
        let log = LogStore::open(&dir.path().join("raft.redb")).expect("log store opens");
        let sm = StateMachine::open(dir.path()).expect("state machine opens");
        Ok((dir, log, sm))
    }
}

#[test]
fn log_store_and_state_machine_pass_the_openraft_suite() {
    // The suite runs each case on a runtime of its own.
    Suite::test_all(DiskStores).expect("openraft storage suite");
}
