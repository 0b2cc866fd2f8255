//! Agents' rows: registration, reports, down marks, draining, deregistration, revocation and
//! the reaper change the rows as the registry's rules say, each change under a new registry
//! index that its pool takes too, and watchers hear of it once it is committed.

mod agents;
mod entries;

use agents::{check, register, report, Registry, T0};
use tandem_registry::{AgentState, CheckStatus};
use tandem_store::StateReads;
use tandem_store::{Outcome, RegistryCommand, RejectionKind, StateDb};

fn state(registry: &Registry, name: &str) -> (AgentState, i64) {
    let row = registry.db.registry_agent(name).unwrap().expect("a row");
    (row.state(), row.state_since_ms)
}

fn indexes(db: &StateDb) -> (u64, u64, u64) {
    (
        db.registry_index(None).unwrap(),
        db.registry_index(Some("edge")).unwrap(),
        db.registry_index(Some("core")).unwrap(),
    )
}

#[test]
fn registering_stores_the_row_under_a_new_index_of_its_pool() {
    let mut registry = Registry::new();
    let mut changes = registry.db.registry_changes();
    assert_eq!(indexes(&registry.db), (0, 0, 0));
    registry.registered("gw-1", "edge", vec![check("http", CheckStatus::Warning)]);
    assert_eq!(indexes(&registry.db), (1, 1, 0));
    assert!(changes.has_changed().unwrap());
    assert_eq!(*changes.borrow_and_update(), 1);

    let row = registry.db.registry_agent("gw-1").unwrap().unwrap();
    assert_eq!(
        (row.pool.as_str(), row.credential_id.as_str()),
        ("edge", "cred-gw-1")
    );
    assert_eq!(
        (row.health, row.state()),
        (CheckStatus::Warning, AgentState::Warning)
    );
    assert_eq!((row.modify_index, row.registered_at_ms), (1, T0));
    assert_eq!(row.labels["zone"], "a");

    registry.registered("db-1", "core", vec![]);
    assert_eq!(indexes(&registry.db), (2, 1, 2), "only core's index moves");
    let names: Vec<_> = registry
        .db
        .registry_agents(None)
        .unwrap()
        .into_iter()
        .map(|row| row.name)
        .collect();
    assert_eq!(names, ["db-1", "gw-1"]);
    assert_eq!(registry.db.registry_agents(Some("edge")).unwrap().len(), 1);
    assert!(registry
        .db
        .registry_agents(Some("none"))
        .unwrap()
        .is_empty());
}

#[test]
fn only_a_report_that_changes_something_takes_an_index() {
    let mut registry = Registry::new();
    let credential = registry.registered("gw-1", "edge", vec![check("a", CheckStatus::Passing)]);
    let mut changes = registry.db.registry_changes();
    changes.mark_unchanged();

    let mut same = check("a", CheckStatus::Passing);
    same.output = "new output".into();
    assert_eq!(
        registry.apply(T0 + 10, report(&credential, "gw-1", vec![same])),
        Ok(Outcome::AgentState {
            state: AgentState::Passing
        })
    );
    assert_eq!(indexes(&registry.db).0, 1);
    assert!(!changes.has_changed().unwrap());

    assert_eq!(
        registry.apply(
            T0 + 20,
            report(&credential, "gw-1", vec![check("a", CheckStatus::Critical)])
        ),
        Ok(Outcome::AgentState {
            state: AgentState::Critical
        })
    );
    assert_eq!(indexes(&registry.db), (2, 2, 0));
    assert_eq!(state(&registry, "gw-1"), (AgentState::Critical, T0 + 20));
    assert!(changes.has_changed().unwrap());
}

#[test]
fn state_since_moves_only_when_the_shown_state_does() {
    let mut registry = Registry::new();
    let credential = registry.registered("gw-1", "edge", vec![check("a", CheckStatus::Passing)]);
    let both = vec![
        check("a", CheckStatus::Passing),
        check("b", CheckStatus::Passing),
    ];
    registry
        .apply(T0 + 10, report(&credential, "gw-1", both.clone()))
        .unwrap();
    assert_eq!(indexes(&registry.db).0, 2, "a new check is a change");
    assert_eq!(state(&registry, "gw-1"), (AgentState::Passing, T0));

    // A restart in the same state keeps the time; a down mark moves it; a report brings it back.
    registry
        .apply(T0 + 20, register(&credential, "gw-1", both.clone()))
        .unwrap();
    assert_eq!(state(&registry, "gw-1"), (AgentState::Passing, T0));
    registry
        .apply(
            T0 + 30,
            RegistryCommand::MarkDown {
                names: vec!["gw-1".into()],
            },
        )
        .unwrap();
    assert_eq!(state(&registry, "gw-1"), (AgentState::Down, T0 + 30));
    registry
        .apply(T0 + 40, report(&credential, "gw-1", both))
        .unwrap();
    assert_eq!(state(&registry, "gw-1"), (AgentState::Passing, T0 + 40));
}

#[test]
fn marking_down_skips_absent_and_down_agents_and_the_reaper_takes_only_down_ones() {
    let mut registry = Registry::new();
    registry.registered("gw-1", "edge", vec![]);
    let credential = registry.registered("gw-2", "edge", vec![]);
    registry.registered("db-1", "core", vec![]);
    assert_eq!(indexes(&registry.db), (3, 2, 3));

    let mark = |names: &[&str]| RegistryCommand::MarkDown {
        names: names.iter().map(|name| name.to_string()).collect(),
    };
    assert_eq!(
        registry.apply(T0 + 10, mark(&["gw-1", "gw-2", "gw-1", "nobody"])),
        Ok(Outcome::AgentsChanged { count: 2 })
    );
    assert_eq!(
        indexes(&registry.db),
        (4, 4, 3),
        "one index for the command"
    );
    let row = registry.db.registry_agent("gw-1").unwrap().unwrap();
    assert_eq!((row.down_since_ms, row.modify_index), (Some(T0 + 10), 4));
    assert_eq!(
        registry.apply(T0 + 20, mark(&["gw-1"])),
        Ok(Outcome::AgentsChanged { count: 0 })
    );
    assert_eq!(indexes(&registry.db).0, 4, "no change, no index");

    // gw-2 reports again before the reaper runs: it is no longer down, and stays.
    registry
        .apply(T0 + 30, report(&credential, "gw-2", vec![]))
        .unwrap();
    let remove = RegistryCommand::Remove {
        names: vec!["gw-1".into(), "gw-2".into(), "db-1".into()],
    };
    assert_eq!(
        registry.apply(T0 + 40, remove),
        Ok(Outcome::AgentsChanged { count: 1 })
    );
    assert_eq!(registry.db.registry_agent("gw-1").unwrap(), None);
    assert!(registry.db.registry_agent("gw-2").unwrap().is_some());
    assert_eq!(indexes(&registry.db), (6, 6, 3));
}

#[test]
fn draining_shows_until_the_agent_registers_again() {
    let mut registry = Registry::new();
    let credential = registry.registered("gw-1", "edge", vec![]);
    let drain = || RegistryCommand::Drain {
        name: "gw-1".into(),
    };
    assert_eq!(
        registry.apply(T0 + 10, drain()),
        Ok(Outcome::AgentState {
            state: AgentState::Draining
        })
    );
    assert_eq!(indexes(&registry.db).0, 2);
    registry.apply(T0 + 20, drain()).unwrap();
    assert_eq!(indexes(&registry.db).0, 2, "draining twice is one change");
    assert_eq!(state(&registry, "gw-1"), (AgentState::Draining, T0 + 10));

    registry
        .apply(T0 + 30, register(&credential, "gw-1", vec![]))
        .unwrap();
    assert_eq!(state(&registry, "gw-1"), (AgentState::Passing, T0 + 30));

    let absent = registry
        .apply(
            T0,
            RegistryCommand::Drain {
                name: "gw-9".into(),
            },
        )
        .unwrap_err();
    assert_eq!(absent.kind, RejectionKind::NotFound);
    assert_eq!(
        absent.message,
        "agent gw-9 is not registered (`tandem agents ls` shows those that are)"
    );
}

#[test]
fn a_deregistration_naming_another_credential_keeps_the_row() {
    let mut registry = Registry::new();
    let credential = registry.registered("gw-1", "edge", vec![]);
    let deregister = |credential_id: Option<&str>| RegistryCommand::Deregister {
        name: "gw-1".into(),
        credential_id: credential_id.map(str::to_string),
    };
    assert_eq!(
        registry.apply(T0, deregister(Some("cred-old"))),
        Ok(Outcome::AgentsChanged { count: 0 })
    );
    assert_eq!(
        registry.apply(T0, deregister(Some(&credential))),
        Ok(Outcome::AgentsChanged { count: 1 })
    );
    assert_eq!(registry.db.registry_agent("gw-1").unwrap(), None);
    assert_eq!(indexes(&registry.db), (2, 2, 0), "a removal moves its pool");
    assert_eq!(
        registry.apply(T0, deregister(None)),
        Ok(Outcome::AgentsChanged { count: 0 })
    );

    let report = registry
        .apply(T0, report(&credential, "gw-1", vec![]))
        .unwrap_err();
    assert_eq!(report.kind, RejectionKind::NotFound);
}

#[test]
fn revoking_removes_the_row_and_locks_its_credential_out() {
    let mut registry = Registry::new();
    let credential = registry.registered("gw-1", "edge", vec![]);
    assert_eq!(
        registry.apply(
            T0 + 10,
            RegistryCommand::Revoke {
                name: "gw-1".into()
            }
        ),
        Ok(Outcome::AgentRevoked { credentials: 1 })
    );
    assert_eq!(registry.db.registry_agent("gw-1").unwrap(), None);
    assert_eq!(indexes(&registry.db), (2, 2, 0));
    let before = registry.dump();

    let again = registry
        .apply(T0 + 20, register(&credential, "gw-1", vec![]))
        .unwrap_err();
    assert_eq!(again.kind, RejectionKind::Unauthorized);
    assert_eq!(
        again.message,
        "credential cred-gw-1 is revoked; enrol again with a new join token"
    );
    assert_eq!(
        registry.dump(),
        before,
        "a refused registration changes nothing"
    );
}

#[test]
fn a_credential_registers_only_its_own_name() {
    let mut registry = Registry::new();
    let credential = registry.enrolled("gw-1", "edge");
    let refused = registry
        .apply(T0, register(&credential, "gw-2", vec![]))
        .unwrap_err();
    assert_eq!(refused.kind, RejectionKind::Unauthorized);
    assert!(
        refused.message.contains("belongs to agent gw-1"),
        "{}",
        refused.message
    );
    let unknown = registry
        .apply(T0, register("cred-x", "gw-1", vec![]))
        .unwrap_err();
    assert_eq!(unknown.kind, RejectionKind::Unauthorized);
    assert_eq!(indexes(&registry.db), (0, 0, 0));
}

#[test]
fn the_registry_index_survives_a_reopen_and_a_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let mut registry = Registry::new();
    registry.registered("gw-1", "edge", vec![]);
    let copy = dir.path().join("copy.db");
    registry.db.copy_to(&copy).unwrap();

    let reopened = StateDb::open(&copy).unwrap();
    assert_eq!(*reopened.registry_changes().borrow(), 1);
    assert_eq!(indexes(&reopened), (1, 1, 0));

    let fresh = StateDb::open(&dir.path().join("fresh.db")).unwrap();
    let mut changes = fresh.registry_changes();
    assert_eq!(*changes.borrow_and_update(), 0);
    fresh.replace_with(&copy).unwrap();
    assert!(changes.has_changed().unwrap());
    assert_eq!(*changes.borrow(), 1);
    assert_eq!(fresh.registry_agents(None).unwrap().len(), 1);
}

#[test]
fn a_rejected_command_in_a_batch_takes_no_index() {
    let mut registry = Registry::new();
    let credential = registry.registered("gw-1", "edge", vec![]);
    let batch = tandem_store::Command::Batch(vec![
        tandem_store::Command::Registry(RegistryCommand::Drain {
            name: "gw-1".into(),
        }),
        tandem_store::Command::Registry(report(
            &credential,
            "gw-1",
            vec![check("a", CheckStatus::Critical)],
        )),
        tandem_store::Command::Registry(RegistryCommand::Drain {
            name: "gw-9".into(),
        }),
    ]);
    let answers = registry
        .db
        .apply(&[entries::entry_at(100, T0 + 10, &batch)])
        .unwrap();
    let answers: Vec<tandem_store::Applied> = serde_json::from_value(answers[0].clone()).unwrap();
    assert!(answers[0].is_ok() && answers[1].is_ok());
    assert_eq!(
        answers[2].as_ref().unwrap_err().kind,
        RejectionKind::NotFound
    );
    assert_eq!(indexes(&registry.db), (3, 3, 0));
    assert_eq!(*registry.db.registry_changes().borrow(), 3);
    assert_eq!(
        registry
            .db
            .registry_agent("gw-1")
            .unwrap()
            .unwrap()
            .modify_index,
        3
    );
}
