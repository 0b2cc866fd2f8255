//! The replicated key set: a key id is published once, ever; a retired key stays until its
//! last token has expired, then an `Expire` at or after that time removes it on every replica.

mod entries;

use entries::apply_at as apply;
use tandem_store::StateReads;
use tandem_store::{Command, Outcome, RejectionKind, StateDb};

fn publish(kid: &str) -> Command {
    Command::KeyPublish {
        kid: kid.into(),
        node_id: 2,
        jwk: format!(r#"{{"kty":"OKP","crv":"Ed25519","x":"AA","kid":"{kid}"}}"#),
    }
}

#[test]
fn keys_are_published_once_retired_then_removed_when_due() {
    let dir = tempfile::tempdir().unwrap();
    let db = StateDb::open(&dir.path().join("state.db")).unwrap();

    assert_eq!(
        apply(&db, 1, 1_000, publish("n2-a")),
        Ok(Outcome::KeyPublished)
    );
    let again = apply(&db, 2, 1_001, publish("n2-a")).unwrap_err();
    assert_eq!(again.kind, RejectionKind::Conflict);
    assert!(again.message.contains("never reused"), "{}", again.message);

    let keys = db.keys_published().unwrap();
    assert_eq!(keys.len(), 1);
    assert_eq!((keys[0].node_id, keys[0].published_at_ms), (2, 1_000));

    let retire = Command::KeyRetire {
        kid: "n2-a".into(),
        keep_for_ms: 500,
    };
    assert_eq!(
        apply(&db, 3, 2_000, retire.clone()),
        Ok(Outcome::KeyRetired {
            remove_at_ms: 2_500
        })
    );
    // A second retirement keeps the first one's date.
    assert_eq!(
        apply(&db, 4, 2_100, retire),
        Ok(Outcome::KeyRetired {
            remove_at_ms: 2_500
        })
    );
    assert_eq!(db.next_expiry().unwrap(), Some(2_500));

    apply(&db, 5, 2_499, Command::Expire).unwrap();
    assert_eq!(
        db.keys_published().unwrap().len(),
        1,
        "still within its last token's life"
    );
    apply(&db, 6, 2_500, Command::Expire).unwrap();
    assert!(db.keys_published().unwrap().is_empty());
    assert_eq!(db.next_expiry().unwrap(), None);

    let reuse = apply(&db, 7, 3_000, publish("n2-a")).unwrap_err();
    assert_eq!(
        reuse.kind,
        RejectionKind::Conflict,
        "a removed key's id stays taken"
    );
}

#[test]
fn a_public_key_must_name_itself_and_retiring_an_unknown_key_is_not_found() {
    let mismatched = Command::KeyPublish {
        kid: "a".into(),
        node_id: 1,
        jwk: r#"{"kid":"b"}"#.into(),
    };
    assert!(mismatched.validate().is_err());
    let dir = tempfile::tempdir().unwrap();
    let db = StateDb::open(&dir.path().join("state.db")).unwrap();
    let missing = apply(
        &db,
        1,
        1,
        Command::KeyRetire {
            kid: "nope".into(),
            keep_for_ms: 1,
        },
    )
    .unwrap_err();
    assert_eq!(missing.kind, RejectionKind::NotFound);
}

#[test]
fn the_key_set_version_grows_when_keys_change_and_only_then() {
    let dir = tempfile::tempdir().unwrap();
    let db = StateDb::open(&dir.path().join("state.db")).unwrap();
    let start = db.keys_version();
    apply(&db, 1, 1_000, publish("n2-a")).unwrap();
    let published = db.keys_version();
    assert!(published > start, "publishing a key changes the set");
    let put = Command::KvPut {
        key: "k".into(),
        value: b"v".to_vec(),
        ttl_ms: None,
        if_revision: None,
        fence: None,
    };
    apply(&db, 2, 1_001, put).unwrap();
    assert_eq!(db.keys_version(), published, "a key-value write leaves it");
    let retire = Command::KeyRetire {
        kid: "n2-a".into(),
        keep_for_ms: 500,
    };
    apply(&db, 3, 2_000, retire).unwrap();
    assert!(
        db.keys_version() > published,
        "retiring a key changes the set"
    );
}
