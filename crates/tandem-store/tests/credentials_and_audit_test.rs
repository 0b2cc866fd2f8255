//! Scoped credentials in the replicated state: created once per name, revoked by id or name,
//! expired by the leader's stamp; and the audit log, written with an audited change in the same
//! step, and only when the change is applied.

mod entries;

use entries::apply_at as apply;
use tandem_store::StateReads;
use tandem_store::{AuthCommand, Command, Outcome, RegistryCommand, RejectionKind, StateDb};

fn create(id: &str, name: &str, ttl_ms: Option<u64>) -> Command {
    Command::Auth(AuthCommand::Create {
        id: id.into(),
        name: name.into(),
        secret_sha256: vec![7; 32],
        grants: vec!["kv:read:billing/".into()],
        ttl_ms,
    })
}

#[test]
fn credentials_are_created_revoked_and_audited() {
    let dir = tempfile::tempdir().unwrap();
    let db = StateDb::open(&dir.path().join("state.db")).unwrap();

    let created = apply(
        &db,
        1,
        1_000,
        create("c1", "billing", Some(500)).audited("root"),
    );
    assert_eq!(
        created,
        Ok(Outcome::CredentialCreated {
            expires_at_ms: Some(1_500)
        })
    );
    let record = db.credential("c1").unwrap().expect("stored");
    assert_eq!(record.name, "billing");
    assert_eq!(record.secret_sha256, vec![7; 32]);
    assert!(record.usable_at(1_499));
    assert!(!record.usable_at(1_500), "expired at its stamp");

    let taken = apply(&db, 2, 1_100, create("c2", "billing", None).audited("root")).unwrap_err();
    assert_eq!(taken.kind, RejectionKind::Conflict);

    let revoke = |credential: &str| {
        Command::Auth(AuthCommand::Revoke {
            credential: credential.into(),
        })
        .audited("ops")
    };
    assert_eq!(
        apply(&db, 3, 1_200, revoke("billing")),
        Ok(Outcome::CredentialRevoked {
            id: "c1".into(),
            name: "billing".into()
        })
    );
    assert!(!db.credential("c1").unwrap().unwrap().usable_at(1_201));
    let again = apply(&db, 4, 1_300, revoke("c1")).unwrap_err();
    assert_eq!(again.kind, RejectionKind::NotFound);
    // A revoked credential's name may be given again.
    apply(&db, 5, 1_400, create("c3", "billing", None).audited("root")).unwrap();

    // Only applied changes are in the log, with who made them and the leader's stamp.
    let log = db.audit(0, 100).unwrap();
    let seen: Vec<(&str, &str, i64)> = log
        .iter()
        .map(|e| (e.who.as_str(), e.action.as_str(), e.at_ms))
        .collect();
    assert_eq!(
        seen,
        [
            ("root", "credential.create", 1_000),
            ("ops", "credential.revoke", 1_200),
            ("root", "credential.create", 1_400),
        ]
    );
    assert!(log[0].detail.get("secret_sha256").is_none());
    assert_eq!(db.audit(log[0].seq, 1).unwrap()[0].seq, log[1].seq);
    assert_eq!(db.credentials().unwrap().len(), 2);
}

#[test]
fn only_changes_worth_auditing_are_audited() {
    let dir = tempfile::tempdir().unwrap();
    let db = StateDb::open(&dir.path().join("state.db")).unwrap();
    let refused = apply(&db, 1, 1_000, Command::Expire.audited("root")).unwrap_err();
    assert_eq!(refused.kind, RejectionKind::Invalid);
    let missing = Command::Registry(RegistryCommand::Revoke {
        name: "nobody".into(),
    });
    assert!(apply(&db, 2, 1_000, missing.audited("root")).is_err());
    assert!(db.audit(0, 100).unwrap().is_empty());
}
