//! `ha_storage = postgres` against a real PostgreSQL server: one holder of the lock row at a
//! time, a token that grows with each new holder, writes fenced in their own transaction, a
//! dead holder replaced within one TTL, a step-down handed over at once, and a database that
//! goes away and comes back.

use std::sync::Arc;
use std::time::Duration;

use tandem_ha::postgres::{check_fence, connect, migrate, PostgresLockSettings, SCHEMA_VERSION};
use tandem_ha::{HaBackend, LeasedHa};
use tandem_store::RejectionKind;
use tandem_testkit::{wait_until, PostgresServer};

mod common;
use common::{node, the_active, WITHIN};

const TTL: Duration = Duration::from_secs(1);

fn settings(db: &PostgresServer, schema: &str) -> PostgresLockSettings {
    let mut config: tokio_postgres::Config = db.url().parse().unwrap();
    config.connect_timeout(Duration::from_millis(300));
    PostgresLockSettings {
        config,
        schema: schema.into(),
        ttl: TTL,
    }
}

async fn start(db: &PostgresServer, id: u64) -> Arc<LeasedHa> {
    tandem_ha::postgres::start(node(id), settings(db, "tandem"))
        .await
        .unwrap_or_else(|e| panic!("node {id} cannot start: {e}\n{}", db.log()))
}

#[tokio::test(flavor = "multi_thread")]
async fn one_holder_and_standbys_name_it() {
    let db = PostgresServer::start().await;
    let (a, b, c) = (
        start(&db, 1).await,
        start(&db, 2).await,
        start(&db, 3).await,
    );
    let nodes = [&a, &b, &c];
    let (index, token) = the_active(&nodes).await;
    let holder = index as u64 + 1;
    assert_eq!(nodes[index].acquire().await.unwrap(), token);
    for (i, n) in nodes.iter().enumerate().filter(|(i, _)| *i != index) {
        wait_until(WITHIN, "the standby to name the active node", async || {
            n.view().other_active().map(|a| a.id) == Some(holder)
        })
        .await;
        assert!(!n.view().is_self, "node {} also active", i + 1);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dead_holder_is_replaced_with_a_newer_token() {
    let db = PostgresServer::start().await;
    let (a, b) = (start(&db, 1).await, start(&db, 2).await);
    let (index, first_token) = the_active(&[&a, &b]).await;
    let (dead, survivor) = if index == 0 { (a, b) } else { (b, a) };
    // The holder vanishes without releasing the lock, as a killed process does.
    drop(dead);
    let taken = tokio::time::Instant::now();
    let token = tokio::time::timeout(WITHIN, survivor.acquire())
        .await
        .expect("the survivor takes over")
        .unwrap();
    assert!(token > first_token, "token {token} after {first_token}");
    assert!(
        taken.elapsed() < TTL * 3,
        "took {:?} with a TTL of {TTL:?}",
        taken.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_step_down_hands_over_at_once() {
    let db = PostgresServer::start().await;
    let (a, b) = (start(&db, 1).await, start(&db, 2).await);
    let (index, first_token) = the_active(&[&a, &b]).await;
    let (active, standby) = if index == 0 { (&a, &b) } else { (&b, &a) };
    active.step_down().await.expect("a standby takes over");
    assert!(!active.view().is_self);
    let token = standby.acquire().await.unwrap();
    assert!(token > first_token);
    assert_eq!(
        active.view().other_active().map(|n| n.id),
        standby.view().active.map(|n| n.id)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_deposed_holders_write_is_refused_in_its_own_transaction() {
    let db = PostgresServer::start().await;
    let a = start(&db, 1).await;
    let old_token = a.acquire().await.unwrap();
    let mut client = connect(&db.url().parse().unwrap()).await.unwrap();
    {
        let tx = client.transaction().await.unwrap();
        assert_eq!(check_fence(&tx, "tandem", old_token).await.unwrap(), Ok(()));
        tx.commit().await.unwrap();
    }
    // The holder stops renewing (a pause); another node takes the lock once it expires.
    drop(a);
    let b = start(&db, 2).await;
    let new_token = tokio::time::timeout(WITHIN, b.acquire())
        .await
        .unwrap()
        .unwrap();
    assert!(new_token > old_token);
    let tx = client.transaction().await.unwrap();
    let refused = check_fence(&tx, "tandem", old_token)
        .await
        .unwrap()
        .unwrap_err();
    assert_eq!(refused.kind, RejectionKind::Fenced);
    assert!(refused.message.contains("no longer current"), "{refused}");
    assert_eq!(check_fence(&tx, "tandem", new_token).await.unwrap(), Ok(()));
}

#[tokio::test(flavor = "multi_thread")]
async fn the_role_ends_with_the_database_and_returns_with_it() {
    let mut db = PostgresServer::start().await;
    let a = start(&db, 1).await;
    let token = a.acquire().await.unwrap();
    db.crash();
    let lost = tokio::time::Instant::now();
    wait_until(WITHIN, "the holder to give up the role", async || {
        !a.view().is_self
    })
    .await;
    assert!(
        lost.elapsed() <= TTL + Duration::from_secs(1),
        "acted {:?} past the database's loss with a TTL of {TTL:?}",
        lost.elapsed()
    );
    db.start_again().await;
    let again = tokio::time::timeout(WITHIN, a.acquire())
        .await
        .expect("the node reconnects and takes the lock again")
        .unwrap();
    assert!(again > token, "a lapsed lease comes back with a new token");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_schema_is_migrated_once_and_a_newer_one_is_refused() {
    let db = PostgresServer::start().await;
    let mut client = connect(&db.url().parse().unwrap()).await.unwrap();
    assert_eq!(migrate(&mut client, "cluster_a").await.unwrap(), 0);
    assert_eq!(
        migrate(&mut client, "cluster_a").await.unwrap(),
        SCHEMA_VERSION
    );
    // Two clusters in one database keep apart.
    assert_eq!(migrate(&mut client, "cluster_b").await.unwrap(), 0);
    client
        .execute(
            "INSERT INTO cluster_a.schema_version (version) VALUES ($1)",
            &[&(SCHEMA_VERSION + 1)],
        )
        .await
        .unwrap();
    let err = migrate(&mut client, "cluster_a").await.unwrap_err();
    assert!(err.to_string().contains("upgrade this server"), "{err}");
}
