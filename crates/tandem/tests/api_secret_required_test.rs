//! A client request without the right API secret gets 401 with a JSON error and changes
//! nothing. The cluster port speaks mutual TLS only: a peer without a certificate of this
//! cluster's CA (plain HTTP, no certificate, another cluster's) is refused before any request,
//! and a member's certificate without the cluster secret still gets 401.

use std::path::Path;

use reqwest::Method;
use serde_json::json;
use tandem_testkit::{
    cluster_port_client, http_client, Cluster, HttpReply, API_SECRET, CLUSTER_SECRET,
};

fn tandem() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_tandem"))
}

/// Ways of not presenting the API secret.
fn wrong_credentials() -> Vec<(&'static str, Option<String>)> {
    vec![
        ("no Authorization header", None),
        (
            "a wrong secret",
            Some("Bearer not-the-api-secret-at-all".into()),
        ),
        (
            "the secret with one character changed",
            Some(format!("Bearer {API_SECRET}x")),
        ),
        (
            "the cluster secret",
            Some(format!("Bearer {CLUSTER_SECRET}")),
        ),
        (
            "the secret without the Bearer scheme",
            Some(API_SECRET.to_string()),
        ),
    ]
}

async fn send_as(
    cluster: &Cluster,
    i: usize,
    method: Method,
    path: &str,
    authorization: Option<&str>,
    body: Option<Vec<u8>>,
) -> HttpReply {
    let url = format!("{}{path}", cluster.api_url(i));
    let mut request = cluster.http().request(method, &url);
    if let Some(value) = authorization {
        request = request.header("authorization", value);
    }
    if let Some(body) = body {
        request = request
            .header("content-type", "application/json")
            .body(body);
    }
    let response = request.send().await.expect("the node answered");
    HttpReply::read(url, response).await.expect("body read")
}

#[tokio::test(flavor = "multi_thread")]
async fn requests_without_the_api_secret_are_refused_and_change_nothing() {
    let cluster = Cluster::start(tandem(), 3, &[]).await;
    let leader = cluster.leader().await;
    cluster
        .put(leader, "/v1/kv/guarded", "original")
        .await
        .expect_status(200);

    let create = json!({"sql": "CREATE TABLE intruder (x)"})
        .to_string()
        .into_bytes();
    let acquire = json!({"holder": "intruder", "ttl": "30s"})
        .to_string()
        .into_bytes();
    for (what, authorization) in wrong_credentials() {
        for i in 0..cluster.len() {
            let auth = authorization.as_deref();
            let attempts = [
                (Method::PUT, "/v1/kv/guarded", Some(b"tampered".to_vec())),
                (Method::PUT, "/v1/kv/absent", Some(b"planted".to_vec())),
                (Method::DELETE, "/v1/kv/guarded", None),
                (Method::POST, "/v1/sql/execute", Some(create.clone())),
                (
                    Method::PUT,
                    "/v1/cache/ns/planted",
                    Some(b"planted".to_vec()),
                ),
                (Method::POST, "/v1/cache/ns/guarded/take", None),
                (
                    Method::POST,
                    "/v1/locks/guarded/acquire",
                    Some(acquire.clone()),
                ),
                (Method::GET, "/v1/kv/guarded", None),
                (Method::GET, "/v1/cluster", None),
            ];
            for (method, path, body) in attempts {
                let reply = send_as(&cluster, i, method.clone(), path, auth, body).await;
                let error = reply.expect_api_error(401);
                assert_eq!(
                    error.code, "unauthorized",
                    "{method} {path} on node index {i} with {what}"
                );
            }
        }
    }

    // Nothing changed, as every node sees it.
    for i in 0..cluster.len() {
        let guarded = cluster
            .get_when_serving(i, "/v1/kv/guarded")
            .await
            .expect_status(200);
        assert_eq!(guarded.text(), "original", "node index {i}");
        cluster
            .get_when_serving(i, "/v1/kv/absent")
            .await
            .expect_api_error(404);
        cluster
            .get_when_serving(i, "/v1/cache/ns/planted")
            .await
            .expect_api_error(404);
        cluster
            .get_when_serving(i, "/v1/locks/guarded")
            .await
            .expect_api_error(404);
        let tables = cluster
            .post_json(
                i,
                "/v1/sql/query",
                &json!({"sql": "SELECT count(*) FROM sqlite_master WHERE name = 'intruder'"}),
            )
            .await
            .expect_status(200)
            .json();
        assert_eq!(tables["rows"], json!([[0]]), "node index {i}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_cluster_port_refuses_requests_without_the_cluster_secret() {
    let cluster = Cluster::start(tandem(), 3, &[]).await;
    let leader = cluster.leader().await;
    let paths = [
        "/raft/append",
        "/raft/vote",
        "/raft/snapshot",
        "/raft/probe",
        "/cluster/forward",
        "/cluster/advertise",
    ];
    let plain = http_client();
    let no_certificate = cluster_port_client(None);
    let other_cluster = cluster_port_client(Some("another-cluster-secret-0000"));
    for i in 0..cluster.len() {
        for path in paths {
            // Without a certificate of this cluster's CA there is no HTTP exchange at all.
            let https = format!("{}{path}", cluster.raft_url(i));
            let http = https.replacen("https://", "http://", 1);
            assert!(
                plain.post(&http).body("x").send().await.is_err(),
                "plain HTTP answered on {http}"
            );
            assert!(
                no_certificate.post(&https).body("x").send().await.is_err(),
                "{https} answered a peer without a certificate"
            );
            assert!(
                other_cluster.post(&https).body("x").send().await.is_err(),
                "{https} answered a peer of another CA"
            );
            // A member's certificate without the cluster secret still gets 401.
            for secret in [None, Some("not-the-cluster-secret-0000"), Some(API_SECRET)] {
                let reply = cluster
                    .post_cluster_port(i, path, secret, b"\x00\x01\x02".to_vec())
                    .await;
                let error = reply.expect_api_error(401);
                assert_eq!(
                    error.code, "unauthorized",
                    "{path} on node index {i} with secret {secret:?}"
                );
            }
        }
    }
    // The cluster is undisturbed: still one leader, still taking writes.
    assert_eq!(cluster.leader().await, leader);
    cluster
        .put(leader, "/v1/kv/still-fine", "yes")
        .await
        .expect_status(200);
}
