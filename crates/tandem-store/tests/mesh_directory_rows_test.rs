//! What the mesh directory is made of: an agent's mesh membership lives while its row does,
//! and what it may announce comes from its join token or an operator, and goes when it is
//! revoked.

mod agents;
mod entries;

use agents::{enroll, register, Registry, SECRET, T0};
use tandem_registry::MeshMembership;
use tandem_store::StateReads;
use tandem_store::{Outcome, RegistryCommand, RejectionKind, TokenSpec};

fn join(credential_id: &str, name: &str, address: Option<&str>) -> RegistryCommand {
    RegistryCommand::MeshJoin {
        credential_id: credential_id.into(),
        name: name.into(),
        membership: address.map(|address| MeshMembership {
            mesh: "default".into(),
            address: address.into(),
        }),
    }
}

#[test]
fn a_membership_needs_a_registered_row_and_leaves_with_it() {
    let mut registry = Registry::new();
    let credential = registry.enrolled("exit-a", "exits");
    let unregistered = registry
        .apply(T0, join(&credential, "exit-a", Some("10.0.0.7:4433")))
        .unwrap_err();
    assert_eq!(unregistered.kind, RejectionKind::NotFound);
    registry
        .apply(T0, register(&credential, "exit-a", vec![]))
        .unwrap();
    registry
        .apply(T0, join(&credential, "exit-a", Some("10.0.0.7:4433")))
        .unwrap();
    let members = registry.db.mesh_members().unwrap();
    assert_eq!(members.len(), 1);
    assert_eq!(members[0].address, "10.0.0.7:4433");
    assert_eq!(members[0].mesh, "default");

    let foreign = registry
        .apply(T0, join("cred-other", "exit-a", Some("10.6.6.6:4433")))
        .unwrap_err();
    assert_eq!(foreign.kind, RejectionKind::Unauthorized);

    registry
        .apply(
            T0,
            RegistryCommand::Deregister {
                name: "exit-a".into(),
                credential_id: Some(credential.clone()),
            },
        )
        .unwrap();
    assert!(registry.db.mesh_members().unwrap().is_empty());
    registry
        .apply(T0, register(&credential, "exit-a", vec![]))
        .unwrap();
    registry
        .apply(T0, join(&credential, "exit-a", Some("10.0.0.7:4433")))
        .unwrap();
    registry
        .apply(T0, join(&credential, "exit-a", None))
        .unwrap();
    assert!(registry.db.mesh_members().unwrap().is_empty());
}

#[test]
fn a_restricted_token_restricts_its_agents_and_operators_change_it() {
    let mut registry = Registry::new();
    let allow = vec!["10.20.0.0/16".to_string(), "*.internal.example".to_string()];
    assert_eq!(
        registry.apply(
            T0,
            RegistryCommand::TokenCreateRestricted {
                token: TokenSpec {
                    id: "tok-exits".into(),
                    pool: "exits".into(),
                    secret_sha256: SECRET.to_vec(),
                    ttl_ms: None,
                    uses: None,
                },
                mesh_announce: allow.clone(),
            },
        ),
        Ok(Outcome::TokenCreated {
            expires_at_ms: None
        })
    );
    registry
        .apply(T0, enroll("tok-exits", "exit-a", "cred-exit-a"))
        .unwrap();
    registry.enrolled("ingress", "edge");
    let limits = registry.db.announce_limits().unwrap();
    assert_eq!(limits.len(), 1, "{limits:?}");
    assert_eq!(limits["exit-a"], allow);

    let set = |name: &str, allow: Option<Vec<String>>| RegistryCommand::SetAnnounce {
        name: name.into(),
        allow,
    };
    registry.apply(T0, set("ingress", Some(vec![]))).unwrap();
    registry.apply(T0, set("exit-a", None)).unwrap();
    let limits = registry.db.announce_limits().unwrap();
    assert_eq!(limits.keys().collect::<Vec<_>>(), ["ingress"]);
    assert!(limits["ingress"].is_empty());

    let unknown = registry.apply(T0, set("nobody", None)).unwrap_err();
    assert_eq!(unknown.kind, RejectionKind::NotFound);
    assert!(unknown.message.contains("nobody"), "{}", unknown.message);

    registry
        .apply(
            T0,
            RegistryCommand::Revoke {
                name: "ingress".into(),
            },
        )
        .unwrap();
    assert!(registry.db.announce_limits().unwrap().is_empty());
}
