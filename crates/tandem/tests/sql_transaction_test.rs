//! The statements of one /v1/sql/execute request are one transaction: when one fails, none of
//! them leaves a row.

use std::path::Path;

use serde_json::{json, Value};
use tandem_testkit::{Cluster, HttpReply};

fn tandem() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_tandem"))
}

async fn execute(client: &tandem_client::Client, body: Value) -> HttpReply {
    let reply = client
        .post_json("/v1/sql/execute", &body)
        .await
        .expect("the cluster answered");
    HttpReply::from_client(format!("execute {body}"), reply)
}

async fn row_count_everywhere(cluster: &Cluster) -> Vec<Value> {
    let mut counts = Vec::new();
    for i in 0..cluster.len() {
        let reply = cluster
            .post_json(
                i,
                "/v1/sql/query",
                &json!({"sql": "SELECT count(*) FROM accounts"}),
            )
            .await
            .expect_status(200)
            .json();
        counts.push(reply["rows"].clone());
    }
    counts
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failing_statement_rolls_back_the_whole_request() {
    let cluster = Cluster::start(tandem(), 3, &[]).await;
    cluster.leader().await;
    let client = cluster.client();
    execute(
        &client,
        json!({"sql": "CREATE TABLE accounts (id INTEGER PRIMARY KEY, owner TEXT NOT NULL)"}),
    )
    .await
    .expect_status(200);

    let failing_batches = [
        (
            "the third statement names a missing table",
            json!({"statements": [
                "INSERT INTO accounts (owner) VALUES ('first')",
                {"sql": "INSERT INTO accounts (owner) VALUES (?)", "params": ["second"]},
                "INSERT INTO no_such_table VALUES (1)",
            ]}),
            "no_such_table",
        ),
        (
            "the third statement breaks a constraint",
            json!({"statements": [
                "INSERT INTO accounts (owner) VALUES ('first')",
                {"sql": "INSERT INTO accounts (owner) VALUES (?)", "params": ["second"]},
                {"sql": "INSERT INTO accounts (owner) VALUES (?)", "params": [null]},
            ]}),
            "NOT NULL",
        ),
    ];
    for (what, body, named) in failing_batches {
        let error = execute(&client, body).await.expect_api_error(400);
        assert!(
            error.message.contains(named),
            "{what}: the error names the problem: {error:?}"
        );
        for (i, count) in row_count_everywhere(&cluster).await.into_iter().enumerate() {
            assert_eq!(count, json!([[0]]), "{what}: rows on node index {i}");
        }
    }

    // The same shape of request without the failing statement applies all of it.
    execute(
        &client,
        json!({"statements": [
            "INSERT INTO accounts (owner) VALUES ('first')",
            {"sql": "INSERT INTO accounts (owner) VALUES (?)", "params": ["second"]},
            {"sql": "INSERT INTO accounts (owner) VALUES (?)", "params": ["third"]},
        ]}),
    )
    .await
    .expect_status(200);
    for (i, count) in row_count_everywhere(&cluster).await.into_iter().enumerate() {
        assert_eq!(count, json!([[3]]), "rows on node index {i}");
    }
}
