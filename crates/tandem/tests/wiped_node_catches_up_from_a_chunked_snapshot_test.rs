//! A snapshot many times larger than the configured chunk size reaches a wiped follower whole:
//! the leader reads it from disk a chunk at a time, the follower writes each chunk to a file at
//! its offset and installs the file once the last one has arrived.

use std::path::Path;

use tandem_testkit::{wait_until, Cluster, DEADLINE};

fn tandem() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_tandem"))
}

const CHUNK_BYTES: u64 = 64 * 1024;
const KEYS: usize = 1000;
const VALUE_BYTES: usize = 1000;

#[tokio::test(flavor = "multi_thread")]
async fn a_wiped_follower_is_sent_a_snapshot_of_many_chunks() {
    let mut cluster = Cluster::start(
        tandem(),
        3,
        &[
            "--snapshot-chunk-size",
            "64KiB",
            // Concurrent writes share log entries: few entries carry the whole fill.
            "--snapshot-every",
            "20",
            "--snapshot-logs-to-keep",
            "0",
        ],
    )
    .await;
    cluster.leader().await;
    let (keys, value_bytes) = (KEYS.to_string(), VALUE_BYTES.to_string());
    let fill = [
        "bench",
        "fill",
        "--keys",
        &keys,
        "--value-size",
        &value_bytes,
    ];
    let filled = cluster
        .cli(
            tandem(),
            &[&fill[..], &["--concurrency", "32", "--prefix", "big/"]].concat(),
        )
        .await;
    assert!(filled.status.success(), "{filled:?}");

    cluster.wait_for_purged_log().await;

    let follower = cluster.followers().await[0];
    cluster.kill(follower);
    cluster.wipe(follower);
    cluster.start_node(follower).await;

    // The state file is in place a moment before Raft reports the snapshot installed.
    let last_key = format!("/v1/kv/big/{}?consistency=stale", KEYS - 1);
    wait_until(
        DEADLINE,
        "the wiped node to install a snapshot holding the last key written",
        async || {
            let status = cluster.get(follower, "/v1/cluster").await;
            let installed = status.status.is_success()
                && status.json()["snapshot_index"]
                    .as_u64()
                    .is_some_and(|i| i > 0);
            installed && cluster.get(follower, &last_key).await.status.is_success()
        },
    )
    .await;

    let installed = std::fs::metadata(cluster.data_dir(follower).join("snapshot/current.db"))
        .expect("the wiped node keeps the snapshot it installed")
        .len();
    assert!(
        installed > 10 * CHUNK_BYTES,
        "the snapshot ({installed} bytes) spans many chunks of {CHUNK_BYTES} bytes"
    );
    // Every key and its whole value arrived.
    let listing = cluster
        .get(follower, "/v1/kv?prefix=big/&limit=10000&consistency=stale")
        .await
        .expect_status(200)
        .json();
    assert_eq!(
        listing["keys"].as_array().map(Vec::len),
        Some(KEYS),
        "keys on the wiped node"
    );
    for n in [0, KEYS / 2, KEYS - 1] {
        let value = cluster
            .get(follower, &format!("/v1/kv/big/{n}?consistency=stale"))
            .await
            .expect_status(200);
        assert_eq!(value.body, vec![b'x'; VALUE_BYTES], "value of big/{n}");
    }
    // The received file was moved into place. Entries written after the restart (the node's
    // signing key, say) may make the leader build and send a newer snapshot meanwhile, which is
    // received into the same file; that one too is moved into place when it is complete, so no
    // file stays behind.
    let receiving = cluster.data_dir(follower).join("snapshot/receiving.db");
    wait_until(
        DEADLINE,
        "the received snapshot file to be moved into place",
        async || !receiving.exists(),
    )
    .await;
}
