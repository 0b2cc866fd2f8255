//! Join tokens and enrolment: a token enrols as many agents as it has uses, only with its
//! secret, only before it expires and while it is not revoked; a name belongs to one unrevoked
//! credential at a time; a refused enrolment changes nothing; `Expire` removes expired tokens a
//! week later.

mod agents;
mod entries;

use agents::{enroll, token_create, Registry, T0};
use tandem_store::rules::registry::EXPIRED_TOKEN_KEPT_MS;
use tandem_store::StateReads;
use tandem_store::{Command, Outcome, RegistryCommand, RejectionKind};

#[test]
fn an_enrolment_takes_one_use_of_its_token_until_none_are_left() {
    let mut registry = Registry::new();
    assert_eq!(
        registry.apply(T0, token_create("tok", "edge", None, Some(2))),
        Ok(Outcome::TokenCreated {
            expires_at_ms: None
        })
    );
    assert_eq!(
        registry.apply(T0, enroll("tok", "gw-1", "cred-1")),
        Ok(Outcome::AgentEnrolled {
            pool: "edge".into(),
            credential_id: "cred-1".into()
        })
    );
    assert_eq!(registry.db.join_tokens().unwrap()[0].uses_left, Some(1));
    registry.apply(T0, enroll("tok", "gw-2", "cred-2")).unwrap();
    assert_eq!(registry.db.join_tokens().unwrap()[0].uses_left, Some(0));

    let used_up = registry
        .apply(T0, enroll("tok", "gw-3", "cred-3"))
        .unwrap_err();
    assert_eq!(used_up.kind, RejectionKind::Unauthorized);
    assert!(used_up.message.contains("used up"), "{}", used_up.message);
    assert!(
        used_up
            .message
            .contains("tandem agents token create --pool edge"),
        "{}",
        used_up.message
    );

    let credential = registry.db.registry_credential("cred-2").unwrap().unwrap();
    assert_eq!(
        (credential.name.as_str(), credential.pool.as_str()),
        ("gw-2", "edge")
    );
    assert!(!credential.revoked);
    assert_eq!(registry.db.registry_credential("cred-3").unwrap(), None);
}

#[test]
fn a_wrong_secret_an_unknown_token_and_a_revoked_one_are_refused() {
    let mut registry = Registry::new();
    registry
        .apply(T0, token_create("tok", "edge", None, None))
        .unwrap();

    let mut wrong = enroll("tok", "gw-1", "cred-1");
    if let RegistryCommand::Enroll { secret_sha256, .. } = &mut wrong {
        secret_sha256[0] ^= 1;
    }
    let refused = registry.apply(T0, wrong).unwrap_err();
    assert_eq!(refused.kind, RejectionKind::Unauthorized);
    assert!(refused.message.starts_with("the join token is not valid"));
    let unknown = registry
        .apply(T0, enroll("tok-x", "gw-1", "cred-1"))
        .unwrap_err();
    assert_eq!(
        unknown, refused,
        "an unknown token says no more than a wrong secret"
    );

    assert_eq!(
        registry.apply(T0, RegistryCommand::TokenRevoke { id: "tok".into() }),
        Ok(Outcome::TokenRevoked)
    );
    assert!(registry.db.join_tokens().unwrap().is_empty());
    let revoked = registry
        .apply(T0, enroll("tok", "gw-1", "cred-1"))
        .unwrap_err();
    assert_eq!(revoked.kind, RejectionKind::Unauthorized);
    assert!(revoked.message.contains("revoked"), "{}", revoked.message);

    let missing = registry
        .apply(T0, RegistryCommand::TokenRevoke { id: "tok-x".into() })
        .unwrap_err();
    assert_eq!(missing.kind, RejectionKind::NotFound);
}

#[test]
fn a_token_expires_at_the_stamp_and_expire_removes_it_a_week_later() {
    let mut registry = Registry::new();
    assert_eq!(
        registry.apply(T0, token_create("tok", "edge", Some(1_000), None)),
        Ok(Outcome::TokenCreated {
            expires_at_ms: Some(T0 + 1_000)
        })
    );
    registry
        .apply(T0, token_create("forever", "edge", None, None))
        .unwrap();
    // Kept a week past its expiry, so that late agents hear "expired".
    let removed_at = T0 + 1_000 + EXPIRED_TOKEN_KEPT_MS;
    assert_eq!(registry.db.next_expiry().unwrap(), Some(removed_at));

    registry
        .apply(T0 + 999, enroll("tok", "gw-1", "cred-1"))
        .expect("still valid a millisecond before");
    let expired = registry
        .apply(T0 + 1_000, enroll("tok", "gw-2", "cred-2"))
        .unwrap_err();
    assert_eq!(expired.kind, RejectionKind::Unauthorized);
    assert!(
        expired
            .message
            .starts_with("the join token expired at 2023-11-14T22:13:21Z; create a new one"),
        "{}",
        expired.message
    );
    // Past its expiry it is no longer listed, even before `Expire` removes it.
    let listed: Vec<_> = registry
        .db
        .join_tokens()
        .unwrap()
        .into_iter()
        .map(|token| token.id)
        .collect();
    assert_eq!(listed, ["forever"]);

    assert_eq!(
        registry.apply_command(T0 + 1_000, Command::Expire),
        Ok(Outcome::Expired { removed: 0 })
    );
    assert_eq!(
        registry.apply_command(removed_at, Command::Expire),
        Ok(Outcome::Expired { removed: 1 })
    );
    assert_eq!(registry.db.next_expiry().unwrap(), None);
    let gone = registry
        .apply(removed_at, enroll("tok", "gw-2", "cred-2"))
        .unwrap_err();
    assert!(gone.message.contains("not valid"), "{}", gone.message);
}

#[test]
fn a_name_is_taken_until_its_credential_is_revoked() {
    let mut registry = Registry::new();
    registry
        .apply(T0, token_create("tok", "edge", None, None))
        .unwrap();
    registry.apply(T0, enroll("tok", "gw-1", "cred-1")).unwrap();
    let before = registry.dump();

    // Another agent (another key) claims the name.
    let mut claim = enroll("tok", "gw-1", "cred-2");
    if let RegistryCommand::Enroll { public_jwk, .. } = &mut claim {
        *public_jwk = r#"{"kty":"EC","crv":"P-256","x":"BB","y":"BB"}"#.into();
    }
    let taken = registry.apply(T0, claim).unwrap_err();
    assert_eq!(taken.kind, RejectionKind::Conflict);
    assert_eq!(
        taken.message,
        "agent name gw-1 is enrolled already (credential cred-1); revoke it first \
         (`tandem agents revoke gw-1`) or choose another --name"
    );
    assert_eq!(
        registry.dump(),
        before,
        "a refused enrolment changes nothing"
    );

    assert_eq!(
        registry.apply(
            T0,
            RegistryCommand::Revoke {
                name: "gw-1".into()
            }
        ),
        Ok(Outcome::AgentRevoked { credentials: 1 })
    );
    assert!(
        registry
            .db
            .registry_credential("cred-1")
            .unwrap()
            .unwrap()
            .revoked
    );
    assert_eq!(registry.db.revoked_agent_names().unwrap(), ["gw-1"]);
    registry
        .apply(T0, enroll("tok", "gw-1", "cred-2"))
        .expect("the name is free once revoked");
    assert!(
        registry.db.revoked_agent_names().unwrap().is_empty(),
        "an agent enrolled again under its name is not revoked"
    );

    let reused_id = registry
        .apply(T0, enroll("tok", "gw-9", "cred-2"))
        .unwrap_err();
    assert_eq!(reused_id.kind, RejectionKind::Conflict);

    let never = registry
        .apply(
            T0,
            RegistryCommand::Revoke {
                name: "gw-7".into(),
            },
        )
        .unwrap_err();
    assert_eq!(never.kind, RejectionKind::NotFound);
}

#[test]
fn a_refused_enrolment_keeps_the_use_it_would_have_taken() {
    let mut registry = Registry::new();
    registry
        .apply(T0, token_create("tok", "edge", None, Some(1)))
        .unwrap();
    registry
        .apply(T0, token_create("other", "edge", None, None))
        .unwrap();
    registry
        .apply(T0, enroll("other", "gw-1", "cred-1"))
        .unwrap();
    // The token is valid, the name is not free: the savepoint puts the use back.
    registry
        .apply(T0, enroll("tok", "gw-1", "cred-2"))
        .unwrap_err();
    let tok = registry
        .db
        .join_tokens()
        .unwrap()
        .into_iter()
        .find(|token| token.id == "tok")
        .unwrap();
    assert_eq!(tok.uses_left, Some(1));
}

#[test]
fn a_token_id_is_created_once() {
    let mut registry = Registry::new();
    registry
        .apply(T0, token_create("tok", "edge", None, None))
        .unwrap();
    let again = registry
        .apply(T0, token_create("tok", "core", None, None))
        .unwrap_err();
    assert_eq!(again.kind, RejectionKind::Conflict);
    assert_eq!(registry.db.join_tokens().unwrap()[0].pool, "edge");
}

#[test]
fn a_repeated_enrolment_gets_the_same_credential_and_uses_no_second_use() {
    let mut registry = Registry::new();
    registry
        .apply(T0, token_create("once", "edge", None, Some(1)))
        .unwrap();
    let first = registry
        .apply(T0, enroll("once", "gw-1", "cred-1"))
        .unwrap();
    // The answer was lost; the agent tries again with the same token and key.
    let again = registry
        .apply(T0 + 5, enroll("once", "gw-1", "cred-2"))
        .unwrap();
    assert_eq!(first, again);
    assert_eq!(registry.db.registry_credential("cred-2").unwrap(), None);
    // Another name with the used-up token is refused as before.
    let refused = registry
        .apply(T0, enroll("once", "gw-2", "cred-3"))
        .unwrap_err();
    assert_eq!(refused.kind, RejectionKind::Unauthorized);
}
