//! Rotation publishes the new key on every server within a second, and tokens signed with the
//! old key keep verifying; a restarted server keeps its key; a server whose data folder was
//! wiped makes a key whose id was never used before, and its earlier tokens still verify.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::json;
use tandem_testkit::{wait_for, wait_until, Cluster, IssuedToken, DEADLINE};

fn tandem() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_tandem"))
}

async fn verifies_everywhere(cluster: &Cluster, token: &IssuedToken, what: &str) {
    for i in cluster.live_nodes() {
        let reply = cluster.verify_token(i, &token.token).await;
        assert_eq!(
            reply.status,
            200,
            "{what} on node index {i}: {}",
            reply.text()
        );
    }
}

async fn all_kids_seen(cluster: &Cluster, seen: &mut BTreeSet<String>) {
    for i in cluster.live_nodes() {
        seen.extend(cluster.jwks_kids(i).await);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn rotation_restart_and_wipe_keep_tokens_valid_and_key_ids_unique() {
    let mut cluster = Cluster::start(tandem(), 3, &[]).await;
    cluster.leader().await;
    for i in 0..3 {
        wait_for(DEADLINE, "every server to have a signing key", async || {
            cluster.signing_kid(i).await
        })
        .await;
    }
    let mut seen = BTreeSet::new();
    let before: Vec<IssuedToken> = {
        let mut tokens = Vec::new();
        for i in 0..3 {
            tokens.push(cluster.issue_token(i, json!({"n": i}), "10m").await);
        }
        tokens
    };

    // Rotate on node 0: the new key reaches every server's key set within a second.
    let asked = Instant::now();
    let rotated = cluster
        .post_json(0, "/v1/keys/rotate", &json!({}))
        .await
        .expect_status(200)
        .json();
    let new_kid = rotated["kid"].as_str().expect("a new kid").to_string();
    assert_eq!(rotated["previous_kid"], before[0].kid.as_str());
    assert_ne!(new_kid, before[0].kid);
    wait_until(
        Duration::from_secs(1),
        "the rotated key on every server's JWKS",
        async || {
            for i in 0..3 {
                if !cluster.jwks_kids(i).await.contains(&new_kid) {
                    return false;
                }
            }
            true
        },
    )
    .await;
    eprintln!(
        "rotation to the new key on all three key sets: {:?}",
        asked.elapsed()
    );
    let after = cluster.issue_token(0, json!({"n": "after"}), "10m").await;
    assert_eq!(after.kid, new_kid, "the server signs with its new key");
    verifies_everywhere(&cluster, &before[0], "a token of the retired key").await;
    verifies_everywhere(&cluster, &after, "a token of the new key").await;
    all_kids_seen(&cluster, &mut seen).await;

    // A restart keeps the key: earlier tokens verify and the server signs with the same key.
    cluster.kill(1);
    cluster.start_node(1).await;
    let kept = wait_for(DEADLINE, "node index 1 to sign again", async || {
        cluster.signing_kid(1).await
    })
    .await;
    assert_eq!(kept, before[1].kid, "a restarted server keeps its key");
    verifies_everywhere(&cluster, &before[1], "a token from before the restart").await;

    // A wiped server makes a new key whose id was never published before.
    cluster.kill(2);
    cluster.wipe(2);
    cluster.start_node(2).await;
    let fresh = wait_for(
        DEADLINE,
        "the wiped server to sign with a new key",
        async || {
            cluster
                .signing_kid(2)
                .await
                .filter(|kid| *kid != before[2].kid)
        },
    )
    .await;
    assert!(
        !seen.contains(&fresh),
        "key id {fresh} was used before: {seen:?}"
    );
    verifies_everywhere(
        &cluster,
        &before[2],
        "a token of the wiped server's lost key",
    )
    .await;
    let listed = cluster.get(0, "/v1/keys").await.expect_status(200).json();
    let lost = listed["keys"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|k| k["kid"] == before[2].kid.as_str())
        .expect("the lost key stays published until its tokens expire")
        .clone();
    assert!(
        lost["retired_at_ms"].is_i64(),
        "the lost key is retired: {lost}"
    );
    cluster.assert_no_panics();
}
