//! A server restarted without its data (same node id, empty folder) may have been one of the
//! majority that committed a write it no longer holds. It must not vote until it has caught up
//! with a leader: its vote could otherwise elect a peer that lacks the write, and the new leader
//! would overwrite it.

use std::path::Path;

use tandem_testkit::{wait_until, Cluster, DEADLINE};

fn tandem() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_tandem"))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_wiped_server_does_not_elect_a_peer_that_lacks_an_acknowledged_write() {
    let mut cluster = Cluster::start(tandem(), 3, &[]).await;
    let leader = cluster.leader().await;
    let stale = (leader + 1) % 3;
    let wiped = (leader + 2) % 3;

    // Committed by the leader and `wiped` alone: `stale` is down and never sees it.
    cluster.kill(stale);
    let written = cluster.put(leader, "/v1/kv/acknowledged", "kept").await;
    assert!(written.status.is_success(), "{written:?}");

    // `wiped` loses its data and the leader goes down: of the two servers left, only the one
    // that lost its data could give `stale` the majority it needs.
    cluster.kill(wiped);
    cluster.wipe(wiped);
    cluster.kill(leader);
    cluster.start_node(stale).await;
    cluster.start_node(wiped).await;

    // Either the wiped server refuses the stale one's vote request, or (the fault this guards
    // against) the stale server gets its vote and leads without the write.
    wait_until(
        DEADLINE,
        "the wiped server to refuse a vote, or a leader to be elected",
        async || {
            cluster.assert_no_panics();
            cluster.log(wiped).contains("refused a vote")
                || cluster.current_leader().await.is_some()
        },
    )
    .await;
    assert_eq!(
        cluster.current_leader().await,
        None,
        "a server that lacks an acknowledged write was elected; wiped server's log:\n{}",
        cluster.log(wiped)
    );

    // The server that holds the write comes back: it is elected, and the write is still there.
    cluster.start_node(leader).await;
    let elected = cluster.leader().await;
    assert_ne!(elected, stale, "the server without the write was elected");
    let read = cluster
        .get_when_serving(elected, "/v1/kv/acknowledged")
        .await
        .expect_status(200);
    assert_eq!(read.text(), "kept");

    // The wiped server catches up from the leader, then votes again.
    wait_until(
        DEADLINE,
        "the wiped server to catch up and vote again",
        async || {
            cluster.log(wiped).contains("this node votes again")
                && cluster
                    .get(wiped, "/v1/kv/acknowledged?consistency=stale")
                    .await
                    .text()
                    == "kept"
        },
    )
    .await;
}
