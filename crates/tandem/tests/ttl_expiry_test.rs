//! A key written with a TTL expires at the same point on every node: once the leader has
//! dropped it, every node answers 404, linearizable and (within a deadline) stale.

use std::path::Path;

use tandem_testkit::{wait_until, Cluster, HttpReply, DEADLINE};

fn tandem() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_tandem"))
}

const KEY: &str = "/v1/kv/short-lived";

#[tokio::test(flavor = "multi_thread")]
async fn an_expired_key_is_gone_on_every_node() {
    let cluster = Cluster::start(tandem(), 3, &[]).await;
    cluster.leader().await;
    let client = cluster.client();

    let written = client
        .put_bytes(&format!("{KEY}?ttl=1s"), b"soon gone".to_vec())
        .await
        .expect("the cluster answered");
    HttpReply::from_client("PUT with ttl", written).expect_status(200);
    let first = client.get(KEY).await.expect("the cluster answered");
    let first = HttpReply::from_client("GET right after the PUT", first).expect_status(200);
    assert_eq!(first.text(), "soon gone");
    assert!(
        first.header("tandem-expires-at-ms").is_some(),
        "a key with a TTL says when it expires: {:?}",
        first.headers
    );

    wait_until(
        DEADLINE,
        "the leader to answer 404 for the key",
        async || match cluster.current_leader().await {
            Some(leader) => cluster.get(leader, KEY).await.status == 404,
            None => false,
        },
    )
    .await;

    for i in 0..cluster.len() {
        let read = cluster.get_when_serving(i, KEY).await;
        assert_eq!(
            read.expect_api_error(404).code,
            "not_found",
            "linearizable read on node index {i}"
        );
    }
    for i in 0..cluster.len() {
        wait_until(
            DEADLINE,
            &format!("a stale read on node index {i} to answer 404"),
            async || {
                cluster
                    .get(i, &format!("{KEY}?consistency=stale"))
                    .await
                    .status
                    == 404
            },
        )
        .await;
    }
}
