//! Key peers outside the cluster: their keys join the cluster's key set, so their tokens
//! verify here; a peer that never answers does not slow the key set; a peer that goes away
//! leaves its last good keys in place; /healthz and /metrics tell each peer's last success.

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::json;
use tandem_testkit::{http_client, wait_for, wait_until, Cluster, DEADLINE};

fn tandem() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_tandem"))
}

/// A peer that accepts connections and never answers.
async fn black_hole() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("an address");
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    format!("http://{addr}/jwks.json")
}

fn peer_status(healthz: &serde_json::Value, url: &str) -> serde_json::Value {
    healthz["key_peers"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|p| p["url"] == url)
        .cloned()
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread")]
async fn peer_keys_are_merged_fetched_in_the_background_and_kept_when_the_peer_fails() {
    let mut peer = Cluster::start(tandem(), 1, &[]).await;
    peer.leader().await;
    wait_for(DEADLINE, "the peer's signing key", async || {
        peer.signing_kid(0).await
    })
    .await;
    let peer_url = format!("{}/api/pkeys", peer.api_url(0));
    let silent_url = black_hole().await;

    let peers = format!("{peer_url} {silent_url}");
    let cluster = Cluster::start(
        tandem(),
        1,
        &[
            "--key-peers",
            &peers,
            "--key-peers-refresh",
            "1s",
            "--key-peers-timeout",
            "3s",
        ],
    )
    .await;
    cluster.leader().await;

    let peer_token = peer
        .issue_token(0, json!({"sub": "from-the-peer"}), "10m")
        .await;
    wait_until(
        DEADLINE,
        "the peer's token to verify in this cluster",
        async || cluster.verify_token(0, &peer_token.token).await.status == 200,
    )
    .await;
    assert!(cluster.jwks_kids(0).await.contains(&peer_token.kid));

    // The silent peer's fetch hangs for 3s every round; the key set never waits for it.
    let jwks_url = format!("{}/.well-known/jwks.json", cluster.api_url(0));
    let client = http_client();
    let mut slowest = Duration::ZERO;
    let watched = Instant::now();
    while watched.elapsed() < Duration::from_secs(4) {
        let asked = Instant::now();
        let reply = client.get(&jwks_url).send().await.expect("an answer");
        assert_eq!(reply.status(), 200);
        slowest = slowest.max(asked.elapsed());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        slowest < Duration::from_secs(1),
        "the key set took {slowest:?} while a peer was silent (its fetch timeout is 3s)"
    );

    let healthz = wait_for(
        DEADLINE,
        "/healthz to show both peers' fetches",
        async || {
            let healthz = cluster.get(0, "/healthz").await.json();
            let good = peer_status(&healthz, &peer_url);
            let silent = peer_status(&healthz, &silent_url);
            (good["last_success_ms"].is_i64() && silent["last_error"].is_string())
                .then_some(healthz)
        },
    )
    .await;
    assert!(peer_status(&healthz, &silent_url)["last_success_ms"].is_null());
    let metrics = cluster.get(0, "/metrics").await.expect_status(200).text();
    assert!(
        metrics.contains("tandem_key_peer_last_success_timestamp_seconds")
            && metrics.contains(&peer_url),
        "{metrics}"
    );

    // The peer goes away: its last good keys stay, so its tokens still verify.
    peer.kill(0);
    wait_until(
        DEADLINE,
        "a failed fetch from the stopped peer",
        async || {
            let healthz = cluster.get(0, "/healthz").await.json();
            peer_status(&healthz, &peer_url)["last_error"].is_string()
        },
    )
    .await;
    cluster
        .verify_token(0, &peer_token.token)
        .await
        .expect_status(200);
    cluster.assert_no_panics();
}
