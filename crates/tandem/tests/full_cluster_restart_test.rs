//! SIGKILL every node at once, start them all again: everything that was acknowledged before
//! is still there.

use std::path::Path;

use serde_json::json;
use tandem_testkit::{wait_until, Cluster, DEADLINE};

fn tandem() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_tandem"))
}

const KEYS: usize = 40;
const ROWS: usize = 25;

#[tokio::test(flavor = "multi_thread")]
async fn acknowledged_data_survives_killing_every_node_at_once() {
    let mut cluster = Cluster::start(tandem(), 3, &[]).await;
    cluster.leader().await;
    let client = cluster.client();

    for n in 0..KEYS {
        let reply = client
            .put_bytes(
                &format!("/v1/kv/keep-{n:02}"),
                format!("kept {n}").into_bytes(),
            )
            .await
            .expect("write answered");
        assert!(reply.status.is_success(), "write {n}: {}", reply.status);
    }
    let created = client
        .post_json(
            "/v1/sql/execute",
            &json!({"sql": "CREATE TABLE kept (id INTEGER PRIMARY KEY, label TEXT NOT NULL)"}),
        )
        .await
        .expect("create answered");
    assert!(created.status.is_success(), "{created:?}");
    let inserts: Vec<_> = (0..ROWS)
        .map(|n| json!({"sql": "INSERT INTO kept (label) VALUES (?)", "params": [format!("row {n}")]}))
        .collect();
    let inserted = client
        .post_json("/v1/sql/execute", &json!({"statements": inserts}))
        .await
        .expect("insert answered");
    assert!(inserted.status.is_success(), "{inserted:?}");

    for i in 0..cluster.len() {
        cluster.kill(i);
    }
    for i in 0..cluster.len() {
        cluster.start_node(i).await;
    }
    cluster.leader().await;

    for i in 0..cluster.len() {
        let listing = cluster
            .get_when_serving(i, "/v1/kv?prefix=keep-&limit=1000")
            .await
            .expect_status(200)
            .json();
        let keys = listing["keys"].as_array().expect("keys array");
        assert_eq!(
            keys.len(),
            KEYS,
            "node index {i} keys after restart: {listing}"
        );
        let value = cluster
            .get_when_serving(i, &format!("/v1/kv/keep-{:02}", KEYS - 1))
            .await
            .expect_status(200);
        assert_eq!(value.text(), format!("kept {}", KEYS - 1));
    }
    wait_until(DEADLINE, "every node to answer the row count", async || {
        for i in 0..cluster.len() {
            let reply = cluster
                .post_json(
                    i,
                    "/v1/sql/query",
                    &json!({"sql": "SELECT count(*) FROM kept"}),
                )
                .await;
            if !reply.status.is_success() {
                return false;
            }
            assert_eq!(
                reply.json()["rows"],
                json!([[ROWS]]),
                "node index {i} rows after restart"
            );
        }
        true
    })
    .await;

    // The restarted cluster also takes new writes.
    let after = client
        .put_bytes("/v1/kv/after-restart", b"yes".to_vec())
        .await
        .expect("write after restart answered");
    assert!(after.status.is_success(), "{after:?}");
}
