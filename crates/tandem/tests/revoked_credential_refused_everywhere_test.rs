//! A revoked scoped credential is refused by every server of a three-node cluster within a
//! second of the revocation's answer: each checks its own applied copy of the credentials.

use std::path::Path;
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::json;
use tandem_testkit::{wait_until, Cluster, DEADLINE};

fn tandem() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_tandem"))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_revoked_credential_is_refused_on_every_server_within_a_second() {
    let cluster = Cluster::start(tandem(), 3, &[]).await;
    cluster.leader().await;
    // The client retries where an election refuses it.
    let created = cluster
        .client()
        .post_json(
            "/v1/auth/credentials",
            &json!({"name": "short-lived", "grants": ["kv:read:app/"]}),
        )
        .await
        .expect("an answer");
    assert_eq!(created.status.as_u16(), 201);
    let created = created.json().expect("JSON");
    let credential = created["credential"]
        .as_str()
        .expect("a credential")
        .to_string();
    // Stale reads are served by the node asked, from its own state: a refusal there is that
    // node's own decision, not the active node's.
    let read = async |i: usize| {
        cluster
            .send_with(
                i,
                Method::GET,
                "/v1/kv/app/x?consistency=stale",
                None,
                &credential,
            )
            .await
            .status
            .as_u16()
    };
    for i in 0..cluster.len() {
        wait_until(DEADLINE, "every server knows the credential", async || {
            read(i).await == 404
        })
        .await;
    }

    // Through a standby, which forwards it. An election under way answers 503 (nothing done)
    // or leaves the outcome unknown; a 404 after that means the earlier attempt was applied.
    let standby = (cluster.leader().await + 1) % cluster.len();
    wait_until(DEADLINE, "the revocation is answered", async || {
        let status = cluster
            .delete(standby, "/v1/auth/credentials/short-lived")
            .await
            .status
            .as_u16();
        status == 200 || status == 404
    })
    .await;
    let revoked_at = Instant::now();
    for i in 0..cluster.len() {
        wait_until(
            Duration::from_secs(1),
            "the credential is refused",
            async || read(i).await == 401,
        )
        .await;
    }
    assert!(revoked_at.elapsed() < Duration::from_secs(1));
    // Forwarded writes are refused too, whichever server receives them.
    for i in 0..cluster.len() {
        let reply = cluster
            .send_with(
                i,
                Method::PUT,
                "/v1/kv/app/x",
                Some(("application/octet-stream", b"v".to_vec())),
                &credential,
            )
            .await;
        assert_eq!(reply.status.as_u16(), 401, "{}", reply.text());
    }
    let leader = cluster.leader().await;
    let listed = cluster.get(leader, "/v1/auth/credentials").await.json();
    assert_eq!(listed["credentials"][0]["state"], "revoked");
    // Revoking again names what is wrong.
    cluster
        .delete(leader, "/v1/auth/credentials/short-lived")
        .await
        .expect_api_error(404);
    cluster.assert_no_panics();
}

#[tokio::test(flavor = "multi_thread")]
async fn an_expired_credential_is_refused() {
    let cluster = Cluster::start(tandem(), 1, &[]).await;
    cluster.leader().await;
    let created = cluster
        .post_json(
            0,
            "/v1/auth/credentials",
            &json!({"name": "brief", "grants": ["cluster:read"], "ttl": "2s"}),
        )
        .await
        .expect_status(201)
        .json();
    let credential = created["credential"]
        .as_str()
        .expect("a credential")
        .to_string();
    assert_eq!(
        cluster
            .send_with(0, Method::GET, "/v1/cluster", None, &credential)
            .await
            .status
            .as_u16(),
        200
    );
    wait_until(DEADLINE, "the credential expires", async || {
        cluster
            .send_with(0, Method::GET, "/v1/cluster", None, &credential)
            .await
            .status
            .as_u16()
            == 401
    })
    .await;
    let listed = cluster.get(0, "/v1/auth/credentials").await.json();
    assert_eq!(listed["credentials"][0]["state"], "expired");
}
