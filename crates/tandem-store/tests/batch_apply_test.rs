//! Commands proposed together in one entry (`Command::Batch`) answer and apply exactly as if each
//! had been an entry of its own: in order, each in its own savepoint, a rejected one leaving no
//! trace and not stopping the others.

mod entries;

use entries::entry;
use tandem_store::StateReads;
use tandem_store::{Applied, Command, Outcome, RejectionKind, StateDb};

fn put(key: &str, value: &str, if_revision: Option<u64>) -> Command {
    Command::KvPut {
        key: key.into(),
        value: value.as_bytes().to_vec(),
        ttl_ms: None,
        if_revision,
        fence: None,
    }
}

#[test]
fn a_batch_answers_each_command_and_a_rejected_one_leaves_no_trace() {
    let dir = tempfile::tempdir().unwrap();
    let db = StateDb::open(&dir.path().join("state.db")).unwrap();
    let batch = Command::Batch(vec![
        put("a", "1", None),
        // Compare-and-set against a revision the key never had: rejected.
        put("a", "lost", Some(7)),
        put("b", "2", Some(0)),
    ]);
    assert!(batch.validate().is_ok());
    let answers = db.apply(&[entry(1, &batch)]).expect("apply");
    assert_eq!(answers.len(), 1, "one answer per entry");
    let applied: Vec<Applied> = serde_json::from_value(answers[0].clone()).expect("answers");
    assert_eq!(applied.len(), 3, "one answer per command");
    assert_eq!(applied[0], Ok(Outcome::KvWritten { revision: 1 }));
    assert_eq!(
        applied[1].as_ref().map_err(|r| r.kind),
        Err(RejectionKind::Conflict)
    );
    assert_eq!(applied[2], Ok(Outcome::KvWritten { revision: 2 }));
    assert_eq!(db.kv_get("a").unwrap().unwrap().value, b"1");
    assert_eq!(db.kv_get("b").unwrap().unwrap().revision, 2);
    assert_eq!(db.applied_state().unwrap().0.map(|id| id.index), Some(1));
}

#[test]
fn a_batch_must_be_flat_and_non_empty() {
    assert!(Command::Batch(vec![]).validate().is_err());
    let nested = Command::Batch(vec![Command::Batch(vec![put("a", "1", None)])]);
    assert!(nested.validate().is_err());
    // Applying one anyway rejects it instead of failing the node.
    let dir = tempfile::tempdir().unwrap();
    let db = StateDb::open(&dir.path().join("state.db")).unwrap();
    let answers = db.apply(&[entry(1, &nested)]).expect("apply");
    let applied: Vec<Applied> = serde_json::from_value(answers[0].clone()).expect("answers");
    assert!(applied[0].is_err());
    assert!(db.kv_get("a").unwrap().is_none());
}
