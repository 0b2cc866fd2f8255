//! `storage = postgres` against a real PostgreSQL server: the active node's writes land in one
//! transaction each batch, a deposed holder's write is refused by the database with nothing
//! applied (with the lock row, and with the fencing floor an etcd-chosen node raises), every
//! server reads the same state, a PostgreSQL restart needs nothing but a retry, and through the
//! replicator only the active node writes while the others name it.

use std::sync::Arc;
use std::time::Duration;

use tandem_ha::postgres::{
    connect, raise_fence_floor, FencedBy, PostgresLockSettings, PostgresReplicator,
    PostgresStorage, PostgresStorageSettings,
};
use tandem_ha::{HaBackend, LeasedHa, ReplicateError, Replicator};
use tandem_store::{Command, Outcome};
use tandem_testkit::{wait_for, PostgresServer};

mod common;
use common::{node, the_active, WITHIN};

const SCHEMA: &str = "tandem";

fn config(db: &PostgresServer) -> tokio_postgres::Config {
    let mut config: tokio_postgres::Config = db.url().parse().unwrap();
    config.connect_timeout(Duration::from_millis(300));
    config
}

async fn server(db: &PostgresServer, id: u64) -> Arc<LeasedHa> {
    let settings = PostgresLockSettings {
        config: config(db),
        schema: SCHEMA.into(),
        ttl: Duration::from_secs(1),
    };
    tandem_ha::postgres::start(node(id), settings)
        .await
        .unwrap_or_else(|e| panic!("node {id} cannot start: {e}\n{}", db.log()))
}

async fn storage(db: &PostgresServer, fenced_by: FencedBy) -> PostgresStorage {
    PostgresStorage::open(PostgresStorageSettings {
        config: config(db),
        schema: SCHEMA.into(),
        pool_size: 4,
        fenced_by,
    })
    .await
    .unwrap_or_else(|e| panic!("the storage does not open: {e}\n{}", db.log()))
}

fn put(key: &str) -> Command {
    Command::KvPut {
        key: key.into(),
        value: key.as_bytes().to_vec(),
        ttl_ms: None,
        if_revision: None,
        fence: None,
    }
}

async fn revision_of(storage: &PostgresStorage, key: &'static str) -> Option<u64> {
    storage
        .read(move |reads| Ok(reads.kv_get(key)?.map(|e| e.revision)))
        .await
        .expect("a read")
}

#[tokio::test(flavor = "multi_thread")]
async fn a_deposed_holders_write_is_refused_by_the_database_with_nothing_applied() {
    let db = PostgresServer::start().await;
    let (a, b) = (server(&db, 1).await, server(&db, 2).await);
    let (index, old_token) = the_active(&[&a, &b]).await;
    let (active, standby) = if index == 0 { (&a, &b) } else { (&b, &a) };
    // Every server has the storage; only the active node writes.
    let (on_active, on_standby) = (
        storage(&db, FencedBy::LockRow).await,
        storage(&db, FencedBy::LockRow).await,
    );
    let answers = on_active
        .apply(old_token, vec![put("before"), put("")])
        .await
        .expect("the active node writes");
    assert!(matches!(answers[0], Ok(Outcome::KvWritten { revision: 1 })));
    assert!(answers[1].is_err(), "an empty key is refused on its own");
    assert_eq!(revision_of(&on_standby, "before").await, Some(1));

    active.step_down().await.expect("a standby takes over");
    let new_token = standby.acquire().await.unwrap();
    assert!(new_token > old_token);
    // The old holder wakes and writes with its token, as a paused process would.
    let refused = on_active
        .apply(old_token, vec![put("after")])
        .await
        .expect_err("the database refuses the deposed holder");
    let ReplicateError::Unavailable(message) = refused else {
        panic!("refused as unavailable, to be retried on the active node: {refused:?}");
    };
    assert!(message.contains("no longer current"), "{message}");
    assert_eq!(revision_of(&on_standby, "after").await, None);
    let answers = on_standby
        .apply(new_token, vec![put("after")])
        .await
        .expect("the new active node writes");
    assert!(matches!(answers[0], Ok(Outcome::KvWritten { revision: 2 })));
}

#[tokio::test(flavor = "multi_thread")]
async fn with_the_fencing_floor_an_older_token_is_refused() {
    let db = PostgresServer::start().await;
    let storage = storage(&db, FencedBy::Floor).await;
    let client = connect(&config(&db)).await.unwrap();
    raise_fence_floor(&client, SCHEMA, 5)
        .await
        .unwrap()
        .unwrap();
    storage
        .apply(5, vec![put("five")])
        .await
        .expect("the newest holder writes");
    raise_fence_floor(&client, SCHEMA, 6)
        .await
        .unwrap()
        .unwrap();
    let refused = storage.apply(5, vec![put("stale")]).await.unwrap_err();
    assert!(
        matches!(refused, ReplicateError::Unavailable(ref m) if m.contains("deposed")),
        "{refused:?}"
    );
    assert_eq!(revision_of(&storage, "stale").await, None);
    assert_eq!(revision_of(&storage, "five").await, Some(1));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_postgresql_restart_needs_only_a_retry() {
    let mut db = PostgresServer::start().await;
    let storage = storage(&db, FencedBy::Floor).await;
    storage.apply(0, vec![put("a")]).await.expect("a write");
    db.crash();
    let refused = storage.apply(0, vec![put("b")]).await.unwrap_err();
    assert!(
        matches!(refused, ReplicateError::Unavailable(_)),
        "nothing was applied while PostgreSQL was down: {refused:?}"
    );
    db.start_again().await;
    let answers = wait_for(WITHIN, "a write after the restart", async || {
        storage.apply(0, vec![put("b")]).await.ok()
    })
    .await;
    assert!(matches!(answers[0], Ok(Outcome::KvWritten { revision: 2 })));
    assert_eq!(revision_of(&storage, "a").await, Some(1));
}

#[tokio::test(flavor = "multi_thread")]
async fn only_the_active_node_writes_and_the_others_name_it() {
    let db = PostgresServer::start().await;
    let (a, b) = (server(&db, 1).await, server(&db, 2).await);
    let (index, token) = the_active(&[&a, &b]).await;
    let nodes: [Arc<dyn HaBackend>; 2] = [a.clone(), b.clone()];
    let replicators: Vec<PostgresReplicator> = {
        let mut made = Vec::new();
        for ha in &nodes {
            let storage = Arc::new(storage(&db, FencedBy::LockRow).await);
            made.push(PostgresReplicator::new(storage, ha.clone()));
        }
        made
    };
    let (active, standby) = (&replicators[index], &replicators[1 - index]);
    let applied = active
        .propose(put("k"))
        .await
        .expect("the active node writes");
    assert_eq!(applied, Ok(Outcome::KvWritten { revision: 1 }));
    active
        .confirm_read()
        .await
        .expect("the active node serves reads");
    assert_eq!(active.status().role, "active");
    assert_eq!(active.status().term, token);

    let refused = standby.propose(put("k")).await.unwrap_err();
    let active_id = index as u64 + 1;
    assert!(
        matches!(&refused, ReplicateError::Unavailable(m) if m.contains(&format!("node {active_id}"))),
        "a standby names the active node: {refused:?}"
    );
    assert!(standby.confirm_read().await.is_err());
    assert_eq!(standby.status().role, "standby");
    assert_eq!(standby.status().leader_id, Some(active_id));
    assert!(matches!(
        standby.snapshot().await,
        Err(ReplicateError::Refused(m)) if m.contains("pg_dump")
    ));
}
