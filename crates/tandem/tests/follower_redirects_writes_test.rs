//! A write sent to a follower (that asks not to be forwarded) is answered 307 with the same path
//! and query on the leader's API address, and that request does not apply the write.

use std::path::Path;

use reqwest::Method;
use serde_json::json;
use tandem_testkit::{Cluster, HttpReply, API_SECRET};

fn tandem() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_tandem"))
}

/// The design's opt-out from forwarding: with it a follower redirects instead.
const NO_FORWARDING: &str = "x-tandem-no-request-forwarding";

async fn send_to(
    cluster: &Cluster,
    i: usize,
    method: Method,
    path: &str,
    content_type: &str,
    body: Vec<u8>,
) -> HttpReply {
    let url = format!("{}{path}", cluster.api_url(i));
    let response = cluster
        .http()
        .request(method, &url)
        .bearer_auth(API_SECRET)
        .header(NO_FORWARDING, "true")
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .expect("the follower answered");
    HttpReply::read(url, response).await.expect("body read")
}

#[tokio::test(flavor = "multi_thread")]
async fn a_follower_redirects_writes_to_the_leader_without_applying_them() {
    let cluster = Cluster::start(tandem(), 3, &[]).await;
    let leader = cluster.leader().await;
    let leader_api = format!("http://{}", cluster.api_addr(leader));

    for follower in cluster.followers().await {
        let kv_path = format!("/v1/kv/redirected-{follower}?ttl=30s");
        let sql_path = "/v1/sql/execute?fence=some-lock:7";
        let table = format!("redirected_{follower}");
        let sql_body = json!({"sql": format!("CREATE TABLE {table} (x)")})
            .to_string()
            .into_bytes();
        let requests = [
            (
                Method::PUT,
                kv_path.as_str(),
                "application/octet-stream",
                b"v".to_vec(),
            ),
            (Method::POST, sql_path, "application/json", sql_body),
        ];
        for (method, path, content_type, body) in requests {
            let reply = send_to(&cluster, follower, method.clone(), path, content_type, body).await;
            assert_eq!(
                reply.status.as_u16(),
                307,
                "{method} {path} on follower index {follower}: {}",
                reply.text()
            );
            assert_eq!(
                reply.header("location"),
                Some(format!("{leader_api}{path}").as_str()),
                "{method} {path}: Location is the same path and query on the leader"
            );
            assert_eq!(
                reply.expect_api_error(307).code,
                "not_active",
                "{method} {path}"
            );
        }

        // The redirected requests changed nothing, on the leader or anywhere else.
        let key = format!("/v1/kv/redirected-{follower}");
        for i in 0..cluster.len() {
            cluster
                .get_when_serving(i, &key)
                .await
                .expect_api_error(404);
            let tables = cluster
                .post_json(
                    i,
                    "/v1/sql/query",
                    &json!({"sql": "SELECT count(*) FROM sqlite_master WHERE name = ?", "params": [table]}),
                )
                .await
                .expect_status(200)
                .json();
            assert_eq!(tables["rows"], json!([[0]]), "node index {i}");
        }
    }
    assert_eq!(cluster.leader().await, leader, "the leader did not change");
}
