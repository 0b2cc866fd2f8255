//! A follower whose data folder is wiped comes back empty and is brought up to date by a
//! snapshot, because the leader has already purged the log it would need.

use std::path::Path;

use tandem_testkit::{wait_until, Cluster, DEADLINE};

fn tandem() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_tandem"))
}

const KEYS: usize = 100;

#[tokio::test(flavor = "multi_thread")]
async fn a_wiped_follower_catches_up_through_a_snapshot() {
    let mut cluster = Cluster::start(
        tandem(),
        3,
        &["--snapshot-every", "20", "--snapshot-logs-to-keep", "0"],
    )
    .await;
    cluster.leader().await;
    let client = cluster.client();
    for n in 0..KEYS {
        let reply = client
            .put_bytes(&format!("/v1/kv/snap-{n:03}"), format!("v{n}").into_bytes())
            .await
            .expect("write answered");
        assert!(reply.status.is_success(), "write {n}: {}", reply.status);
    }
    let last_key = format!("/v1/kv/snap-{:03}", KEYS - 1);

    // The leader has dropped the start of its log, so a node that lost everything cannot be
    // sent the entries one by one: it must be sent a snapshot.
    cluster.wait_for_purged_log().await;

    let follower = cluster.followers().await[0];
    cluster.kill(follower);
    cluster.wipe(follower);
    assert_eq!(
        std::fs::read_dir(cluster.data_dir(follower))
            .expect("data folder readable")
            .count(),
        0,
        "the data folder is empty after the wipe"
    );
    cluster.start_node(follower).await;

    wait_until(
        DEADLINE,
        "a stale read on the wiped node to return the last key",
        async || {
            let reply = cluster
                .get(follower, &format!("{last_key}?consistency=stale"))
                .await;
            reply.status.is_success() && reply.text() == format!("v{}", KEYS - 1)
        },
    )
    .await;

    let status = cluster
        .get(follower, "/v1/cluster")
        .await
        .expect_status(200)
        .json();
    let snapshot_index = status["snapshot_index"].as_u64();
    assert!(
        snapshot_index.is_some_and(|i| i > 0),
        "the wiped node holds a snapshot (it was installed, not replayed): {status}"
    );

    // Bringing the node back must not have cost the cluster any member: a write made now is
    // read (linearizably) on every node.
    let rejoined = client
        .put_bytes("/v1/kv/after-rejoin", b"all three".to_vec())
        .await
        .expect("write after the rejoin answered");
    assert!(rejoined.status.is_success(), "{rejoined:?}");
    for i in 0..cluster.len() {
        let read = cluster.get_when_serving(i, "/v1/kv/after-rejoin").await;
        assert_eq!(
            (read.status.as_u16(), read.text()),
            (200, "all three".to_string()),
            "node index {i} after the wiped node rejoined"
        );
    }

    // The caught-up node serves the whole key space at every consistency.
    let listing = cluster
        .get_when_serving(follower, "/v1/kv?prefix=snap-&limit=1000")
        .await
        .expect_status(200)
        .json();
    assert_eq!(
        listing["keys"].as_array().map(Vec::len),
        Some(KEYS),
        "{listing}"
    );
}
