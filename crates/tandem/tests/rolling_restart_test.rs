//! Restarting the nodes one at a time with SIGTERM: each exits cleanly and promptly, the
//! cluster takes writes throughout, and each node comes back with everything.

use std::collections::BTreeSet;
use std::path::Path;

use tandem_testkit::{wait_until, Cluster, HttpReply, DEADLINE};

fn tandem() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_tandem"))
}

async fn write(client: &tandem_client::Client, written: &mut BTreeSet<String>, key: String) {
    let reply = client
        .put_bytes(&format!("/v1/kv/{key}"), key.clone().into_bytes())
        .await
        .expect("the cluster answered");
    HttpReply::from_client(format!("PUT {key}"), reply).expect_status(200);
    written.insert(key);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rolling_restart_keeps_the_cluster_writable_and_loses_nothing() {
    let mut cluster = Cluster::start(tandem(), 3, &[]).await;
    cluster.leader().await;
    let client = cluster.client();
    let mut written = BTreeSet::new();

    for i in 0..cluster.len() {
        write(&client, &mut written, format!("rolling-{i}-before")).await;
        let status = cluster.stop(i).await;
        assert!(
            status.success(),
            "node index {i} exited with {status} after SIGTERM"
        );
        write(&client, &mut written, format!("rolling-{i}-while-down")).await;
        cluster.start_node(i).await;
        wait_until(
            DEADLINE,
            &format!("node index {i} to hold every key after its restart"),
            async || {
                cluster
                    .keys_under(i, "rolling-")
                    .await
                    .is_some_and(|held| written.is_subset(&held))
            },
        )
        .await;
    }
}
