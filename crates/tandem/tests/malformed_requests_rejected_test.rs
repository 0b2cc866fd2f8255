//! Requests that cannot be carried out — malformed JSON, bad SQL, nondeterministic writes,
//! unknown routes, garbage on the cluster port — get a 4xx with a JSON error that says what was
//! wrong, leave no trace, and do not disturb the cluster.

use std::path::Path;

use reqwest::Method;
use serde_json::{json, Value};
use tandem_testkit::{Cluster, HttpReply, CLUSTER_SECRET};

fn tandem() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_tandem"))
}

async fn execute_raw(client: &tandem_client::Client, body: &[u8]) -> HttpReply {
    let reply = client
        .send(
            Method::POST,
            "/v1/sql/execute",
            Some(body.to_vec()),
            "application/json",
        )
        .await
        .expect("the cluster answered");
    HttpReply::from_client("POST /v1/sql/execute", reply)
}

async fn execute(client: &tandem_client::Client, body: Value) -> HttpReply {
    execute_raw(client, body.to_string().as_bytes()).await
}

#[tokio::test(flavor = "multi_thread")]
async fn malformed_requests_get_json_errors_and_leave_no_trace() {
    let cluster = Cluster::start(tandem(), 3, &[]).await;
    cluster.leader().await;
    let client = cluster.client();
    execute(&client, json!({"sql": "CREATE TABLE f (v)"}))
        .await
        .expect_status(200);

    let rejected: Vec<(&str, Vec<u8>)> = vec![
        (
            "truncated JSON",
            br#"{"sql": "INSERT INTO f VALUES (1)""#.to_vec(),
        ),
        ("not JSON at all", b"INSERT INTO f VALUES (1)".to_vec()),
        (
            "JSON of the wrong shape",
            json!({"statements": 5}).to_string().into_bytes(),
        ),
        (
            "an unknown field",
            json!({"sql": "INSERT INTO f VALUES (1)", "sqll": 1})
                .to_string()
                .into_bytes(),
        ),
        (
            "a syntax error",
            json!({"sql": "INSERT INTO f VALUS (1)"})
                .to_string()
                .into_bytes(),
        ),
        (
            "a missing table",
            json!({"sql": "INSERT INTO no_such_table VALUES (1)"})
                .to_string()
                .into_bytes(),
        ),
        (
            "random()",
            json!({"sql": "INSERT INTO f VALUES (random())"})
                .to_string()
                .into_bytes(),
        ),
        (
            "datetime('now')",
            json!({"sql": "INSERT INTO f VALUES (datetime('now'))"})
                .to_string()
                .into_bytes(),
        ),
    ];
    for (what, body) in &rejected {
        let reply = execute_raw(&client, body).await;
        assert!(
            reply.status.is_client_error(),
            "{what}: expected a 4xx, got {} {}",
            reply.status,
            reply.text()
        );
        let error = reply.expect_api_error(reply.status.as_u16());
        assert_eq!(error.code, "bad_request", "{what}: {error:?}");
    }

    let wrong_method = client
        .send(Method::PATCH, "/v1/kv/x", None, "")
        .await
        .expect("the cluster answered");
    HttpReply::from_client("PATCH /v1/kv/x", wrong_method).expect_api_error(405);

    for i in 0..cluster.len() {
        let unknown = cluster.get(i, "/v1/no-such-endpoint").await;
        assert_eq!(unknown.expect_api_error(404).code, "not_found");
        let unknown_unauthenticated = cluster
            .http()
            .get(format!("{}/nowhere", cluster.api_url(i)))
            .send()
            .await
            .expect("answered");
        let url = unknown_unauthenticated.url().to_string();
        HttpReply::read(url, unknown_unauthenticated)
            .await
            .expect("read")
            .expect_api_error(404);

        // Fewer bytes than any Raft message: it cannot decode as one.
        for path in ["/raft/append", "/raft/vote", "/raft/snapshot"] {
            let reply = cluster
                .post_cluster_port(i, path, Some(CLUSTER_SECRET), b"\xde\xad garbage".to_vec())
                .await;
            assert!(
                reply.status.is_client_error(),
                "{path} on node index {i}: {} {}",
                reply.status,
                reply.text()
            );
            reply.expect_api_error(reply.status.as_u16());
        }
        let unknown_cluster_path = cluster
            .post_cluster_port(i, "/raft/nothing", Some(CLUSTER_SECRET), b"x".to_vec())
            .await;
        unknown_cluster_path.expect_api_error(404);
    }

    // The cluster still takes writes, and none of the rejected statements left a row.
    execute(&client, json!({"sql": "INSERT INTO f VALUES (42)"}))
        .await
        .expect_status(200);
    for i in 0..cluster.len() {
        let rows = cluster
            .post_json(i, "/v1/sql/query", &json!({"sql": "SELECT v FROM f"}))
            .await
            .expect_status(200)
            .json();
        assert_eq!(rows["rows"], json!([[42]]), "node index {i}: {rows}");
    }
}
