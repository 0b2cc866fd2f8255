//! The SQLite state machine stores what the lease and fence rules decide: a lock that changes
//! hands gets a token greater than any before, its holder asking again keeps it, a lease is gone
//! from the millisecond it ends, and a write fenced by a lost lease is refused.

mod entries;

use entries::apply_at as apply;
use tandem_store::StateReads;
use tandem_store::{Command, Fence, LockState, Outcome, RejectionKind, StateDb};

const T0: i64 = 1_700_000_000_000;

fn acquire(holder: &str) -> Command {
    Command::LockAcquire {
        name: "jobs".into(),
        holder: holder.into(),
        ttl_ms: 1_000,
    }
}

fn fenced_put(token: u64) -> Command {
    Command::KvPut {
        key: "k".into(),
        value: b"v".to_vec(),
        ttl_ms: None,
        if_revision: None,
        fence: Some(Fence {
            lock: "jobs".into(),
            token,
        }),
    }
}

#[test]
fn a_lease_is_extended_lost_at_its_stamp_and_fences_its_old_holder() {
    let dir = tempfile::tempdir().unwrap();
    let db = StateDb::open(&dir.path().join("state.db")).unwrap();
    let lease = |token, expires_at_ms| {
        Ok(Outcome::Lease {
            token,
            expires_at_ms,
        })
    };

    assert_eq!(apply(&db, 1, T0, acquire("a")), lease(1, T0 + 1_000));
    let refused = apply(&db, 2, T0 + 10, acquire("b")).unwrap_err();
    assert_eq!(refused.kind, RejectionKind::Conflict);
    // The holder asking again keeps its token and issues none: the next write is revision 2.
    assert_eq!(apply(&db, 3, T0 + 20, acquire("a")), lease(1, T0 + 1_020));
    assert_eq!(
        apply(&db, 4, T0 + 30, fenced_put(1)),
        Ok(Outcome::KvWritten { revision: 2 })
    );

    // At the very millisecond the lease ends it is gone: another holder gets a greater token.
    assert_eq!(
        apply(&db, 5, T0 + 1_020, acquire("b")),
        lease(3, T0 + 2_020)
    );
    let refused = apply(&db, 6, T0 + 1_030, fenced_put(1)).unwrap_err();
    assert_eq!(refused.kind, RejectionKind::Fenced);
    let renew = Command::LockRenew {
        name: "jobs".into(),
        holder: "a".into(),
        token: 1,
        ttl_ms: 1_000,
    };
    assert_eq!(
        apply(&db, 7, T0 + 1_040, renew).unwrap_err().kind,
        RejectionKind::Conflict
    );

    let release = Command::LockRelease {
        name: "jobs".into(),
        holder: "b".into(),
        token: 3,
    };
    assert_eq!(apply(&db, 8, T0 + 1_050, release), Ok(Outcome::Released));
    assert_eq!(
        db.lock_get("jobs").unwrap(),
        Some(LockState {
            name: "jobs".into(),
            holder: None,
            token: 3,
            expires_at_ms: None,
        })
    );
    let refused = apply(&db, 9, T0 + 1_060, fenced_put(3)).unwrap_err();
    assert_eq!(refused.kind, RejectionKind::Fenced);
}

#[test]
fn a_reader_sees_an_expired_lease_as_free_before_it_is_swept() {
    let dir = tempfile::tempdir().unwrap();
    let db = StateDb::open(&dir.path().join("state.db")).unwrap();
    assert!(apply(&db, 1, T0, acquire("a")).is_ok());
    // The clock moves with any later entry; nothing has swept the lease yet.
    assert!(apply(&db, 2, T0 + 1_000, fenced_put(9)).is_err());
    let seen = db.lock_get("jobs").unwrap().expect("the row stays");
    assert_eq!(
        (seen.holder, seen.token, seen.expires_at_ms),
        (None, 1, None)
    );
    assert_eq!(
        apply(&db, 3, T0 + 1_000, Command::Expire),
        Ok(Outcome::Expired { removed: 1 })
    );
}
