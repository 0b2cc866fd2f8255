//! Graceful step-down: SIGTERM on the active node (or POST /v1/sys/step-down) hands the active
//! role to an up-to-date standby before the process exits, under a steady client load that sees
//! no failed request and loses no acknowledged write. A rolling restart does the same for every
//! node in turn.

use std::path::Path;

use tandem_testkit::{wait_for, wait_until, Cluster, SteadyWrites, WriteLog, DEADLINE};

fn tandem() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_tandem"))
}

async fn assert_all_acknowledged_present(cluster: &Cluster, log: &WriteLog, prefix: &str) {
    assert!(
        log.failed.is_empty(),
        "the client saw failed requests: {:?}",
        log.failed
    );
    assert!(!log.acknowledged.is_empty(), "the load made progress");
    for i in cluster.live_nodes() {
        let present = wait_for(DEADLINE, "a key listing", async || {
            cluster.keys_under(i, prefix).await
        })
        .await;
        let missing: Vec<_> = log
            .acknowledged
            .iter()
            .filter(|k| !present.contains(*k))
            .collect();
        assert!(
            missing.is_empty(),
            "node index {i} lacks acknowledged writes {missing:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_on_the_active_node_moves_leadership_without_a_failed_request() {
    let mut cluster = Cluster::start(tandem(), 3, &[]).await;
    let leader = cluster.leader().await;
    let load = SteadyWrites::start(cluster.client(), "sigterm-");
    load.wait_for_progress(20).await;
    let exit = cluster.stop(leader).await;
    assert!(
        exit.success(),
        "the active node exits cleanly on SIGTERM: {exit:?}"
    );
    let new_leader = cluster.leader().await;
    assert_ne!(new_leader, leader);
    load.wait_for_progress(20).await;
    let log = load.finish().await;
    assert_all_acknowledged_present(&cluster, &log, "sigterm-").await;
    assert!(
        cluster.log(leader).contains("handed the active role over"),
        "the stopping node handed over before exiting"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn step_down_endpoint_hands_over_to_a_standby() {
    let cluster = Cluster::start(tandem(), 3, &[]).await;
    let leader = cluster.leader().await;
    let standby = cluster.followers().await[0];
    // Sent to a standby, the request is forwarded to the active node, which steps down.
    let reply = cluster
        .post_json(standby, "/v1/sys/step-down", &serde_json::json!({}))
        .await;
    reply.expect_status(200);
    wait_until(DEADLINE, "another node is active", async || {
        cluster.current_leader().await.is_some_and(|l| l != leader)
    })
    .await;
    let now = cluster.leader().await;
    cluster
        .put(now, "/v1/kv/after-step-down", "x")
        .await
        .expect_status(200);
}

#[tokio::test(flavor = "multi_thread")]
async fn rolling_restart_under_load_loses_nothing_and_fails_nothing() {
    let mut cluster = Cluster::start(tandem(), 3, &[]).await;
    let load = SteadyWrites::start(cluster.client(), "rolling-load-");
    load.wait_for_progress(20).await;
    for i in 0..cluster.len() {
        let exit = cluster.stop(i).await;
        assert!(
            exit.success(),
            "node index {i} exits cleanly on SIGTERM: {exit:?}"
        );
        load.wait_for_progress(10).await;
        cluster.start_node(i).await;
        cluster.leader().await;
        load.wait_for_progress(10).await;
    }
    let log = load.finish().await;
    assert_all_acknowledged_present(&cluster, &log, "rolling-load-").await;
}
