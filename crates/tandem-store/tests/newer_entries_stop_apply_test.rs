//! A committed entry whose command this version cannot decode (a newer release proposed it)
//! stops applying with an error naming the entry, instead of being skipped while the nodes that
//! can read it apply it: skipping would let this node's data differ from theirs.

mod entries;

use entries::entry;
use tandem_raft::openraft::{CommittedLeaderId, EntryPayload, LogId};
use tandem_raft::{Entry, Proposal};
use tandem_store::StateReads;
use tandem_store::{Command, StateDb, StoreError};

#[test]
fn an_unreadable_command_stops_applying_at_its_entry() {
    let dir = tempfile::tempdir().unwrap();
    let db = StateDb::open(&dir.path().join("state.db")).unwrap();
    let put = Command::KvPut {
        key: "a".into(),
        value: b"1".to_vec(),
        ttl_ms: None,
        if_revision: None,
        fence: None,
    };
    db.apply(&[entry(1, &put)])
        .expect("a command this version knows");
    // Variant 999 of the command enum: what a later release could add.
    let newer = Entry {
        log_id: LogId::new(CommittedLeaderId::new(1, 1), 2),
        payload: EntryPayload::Normal(Proposal {
            stamped_at_ms: 1_700_000_000_000,
            command: vec![0xe7, 0x03, 0, 0, 1, 2, 3],
        }),
    };
    let stopped = db.apply(&[newer, entry(3, &put)]).unwrap_err();
    assert!(
        matches!(stopped, StoreError::NewerEntry { index: 2, .. }),
        "{stopped}"
    );
    assert!(
        stopped.to_string().contains("upgrade this server"),
        "{stopped}"
    );
    // Nothing of the stopped batch was applied, not even the entry after it.
    assert_eq!(db.applied_state().unwrap().0.map(|id| id.index), Some(1));
    assert_eq!(db.kv_get("a").unwrap().unwrap().revision, 1);
}
