//! Health endpoints give load balancers and orchestrators a status code per role: 200 active,
//! 429 standby, 474 a standby cut off from the active node, 503 no quorum; with Vault-style
//! overrides. `/health` is liveness, `/ready` says whether the node can serve now.

use std::path::Path;
use std::time::Duration;

use tandem_testkit::{wait_until, Cluster, DEADLINE};

fn tandem() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_tandem"))
}

async fn status(cluster: &Cluster, i: usize, path: &str) -> u16 {
    let reply = cluster
        .http()
        .get(format!("{}{path}", cluster.api_url(i)))
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{path} on node index {i}: {e}"));
    reply.status().as_u16()
}

#[tokio::test(flavor = "multi_thread")]
async fn each_role_answers_its_code() {
    let cluster = Cluster::start(tandem(), 3, &[]).await;
    let leader = cluster.leader().await;
    wait_until(DEADLINE, "the active node reports 200", async || {
        status(&cluster, leader, "/v1/sys/health").await == 200
    })
    .await;
    for standby in cluster.followers().await {
        wait_until(DEADLINE, "a standby reports 429", async || {
            status(&cluster, standby, "/v1/sys/health").await == 429
        })
        .await;
        assert_eq!(
            status(&cluster, standby, "/v1/sys/health?standbyok=true").await,
            200
        );
        assert_eq!(
            status(&cluster, standby, "/v1/sys/health?standbycode=299").await,
            299
        );
        assert_eq!(status(&cluster, standby, "/ready").await, 200);
    }
    assert_eq!(
        status(&cluster, leader, "/v1/sys/health?activecode=204").await,
        204
    );
    assert_eq!(
        status(&cluster, leader, "/v1/sys/health?activecode=9999").await,
        400
    );
    for i in 0..cluster.len() {
        assert_eq!(status(&cluster, i, "/health").await, 200);
        let healthz = cluster
            .http()
            .get(format!("{}/healthz", cluster.api_url(i)))
            .send()
            .await
            .expect("healthz");
        let body: serde_json::Value = healthz.json().await.expect("healthz is JSON");
        assert_eq!(body["node_id"], cluster.node_id(i));
        assert_eq!(body["active_node"]["id"], cluster.node_id(leader));
        assert_eq!(body["members"].as_array().map(Vec::len), Some(3));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_standby_cut_off_answers_474_and_without_quorum_503() {
    // Long election timeouts leave time to see standbys cut off before a new election.
    let mut cluster = Cluster::start(
        tandem(),
        3,
        &[
            "--election-timeout-min-ms",
            "4000",
            "--election-timeout-max-ms",
            "5000",
        ],
    )
    .await;
    let leader = cluster.leader().await;
    let followers = cluster.followers().await;
    cluster.pause(leader);
    wait_until(
        Duration::from_secs(4),
        "a standby cut off from the active node reports 474",
        async || status(&cluster, followers[0], "/v1/sys/health").await == 474,
    )
    .await;
    assert_eq!(
        status(&cluster, followers[0], "/v1/sys/health?haunhealthycode=200").await,
        200
    );
    assert_eq!(status(&cluster, followers[0], "/ready").await, 503);
    cluster.kill(leader);
    cluster.kill(followers[1]);
    wait_until(DEADLINE, "the lone node reports 503", async || {
        status(&cluster, followers[0], "/v1/sys/health").await == 503
    })
    .await;
    assert_eq!(status(&cluster, followers[0], "/ready").await, 503);
    assert_eq!(
        status(&cluster, followers[0], "/health").await,
        200,
        "still alive"
    );
}
