//! A leader frozen with SIGSTOP is replaced: the others elect a new leader and keep taking
//! writes; once resumed, the old leader follows the new one and catches up.

use std::path::Path;

use tandem_testkit::{wait_until, Cluster, HttpReply, DEADLINE};

fn tandem() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_tandem"))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_paused_leader_is_replaced_and_catches_up_when_resumed() {
    let mut cluster = Cluster::start(tandem(), 3, &[]).await;
    let old_leader = cluster.leader().await;
    cluster
        .put(old_leader, "/v1/kv/before-pause", "1")
        .await
        .expect_status(200);

    cluster.pause(old_leader);
    let new_leader = cluster.leader().await;
    assert_ne!(new_leader, old_leader, "a paused node cannot stay leader");

    let survivors: Vec<usize> = cluster.live_nodes();
    let client = cluster.client_for(&survivors);
    let written = client
        .put_bytes("/v1/kv/during-pause", b"2".to_vec())
        .await
        .expect("the survivors answered");
    HttpReply::from_client("PUT during the pause", written).expect_status(200);

    cluster.resume(old_leader);
    wait_until(
        DEADLINE,
        "the resumed node to follow the new leader and hold the write made without it",
        async || {
            let reply = cluster.get(old_leader, "/v1/kv/during-pause").await;
            reply.status == 200 && reply.text() == "2"
        },
    )
    .await;
    let leader = cluster.leader().await;
    assert_ne!(
        leader, old_leader,
        "the resumed node did not take leadership back by force"
    );
    let before = cluster
        .get_when_serving(old_leader, "/v1/kv/before-pause")
        .await
        .expect_status(200);
    assert_eq!(before.text(), "1");
}
