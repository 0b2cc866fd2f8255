//! Any server answers any request: a write or linearizable read sent to a standby is forwarded to
//! the active node, whose answer comes back with a header naming it; a stale read is served by the
//! standby itself; a client that asks for no forwarding gets a 307 to the active node.

use std::path::Path;

use tandem_testkit::{Cluster, HttpReply};

fn tandem() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_tandem"))
}

fn served_by(reply: &HttpReply) -> Option<String> {
    reply.header("tandem-node-id").map(str::to_string)
}

#[tokio::test(flavor = "multi_thread")]
async fn writes_and_reads_on_standbys_are_served_by_the_active_node() {
    let cluster = Cluster::start(tandem(), 3, &[]).await;
    let leader = cluster.leader().await;
    let leader_id = cluster.node_id(leader).to_string();
    for standby in cluster.followers().await {
        let key = format!("/v1/kv/from-standby-{standby}");
        let written = cluster
            .put(standby, &key, format!("v{standby}"))
            .await
            .expect_status(200);
        assert_eq!(
            served_by(&written).as_deref(),
            Some(leader_id.as_str()),
            "write via {standby}"
        );
        assert_eq!(
            written.header("tandem-forwarded-via"),
            Some(cluster.node_id(standby).to_string().as_str()),
            "the forwarding standby names itself"
        );
        // Visible everywhere at once: a linearizable read anywhere goes through the active node.
        for i in 0..cluster.len() {
            let read = cluster.get(i, &key).await.expect_status(200);
            assert_eq!(read.text(), format!("v{standby}"), "read on node index {i}");
            assert_eq!(served_by(&read).as_deref(), Some(leader_id.as_str()));
        }
        // A stale read is the standby's own answer.
        let stale = cluster
            .get_when_serving(standby, &format!("{key}?consistency=stale"))
            .await;
        assert_eq!(
            served_by(&stale),
            Some(cluster.node_id(standby).to_string()),
            "a stale read is served locally"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn no_forwarding_header_gets_a_redirect_to_the_active_node() {
    let cluster = Cluster::start(tandem(), 3, &[]).await;
    let leader = cluster.leader().await;
    let standby = cluster.followers().await[0];
    let reply = cluster
        .http()
        .put(format!(
            "{}/v1/kv/redirected?ttl=5m",
            cluster.api_url(standby)
        ))
        .header(
            "authorization",
            format!("Bearer {}", tandem_testkit::API_SECRET),
        )
        .header("x-tandem-no-request-forwarding", "1")
        .body("x")
        .send()
        .await
        .expect("an answer");
    assert_eq!(reply.status(), 307);
    let location = reply.headers()["location"]
        .to_str()
        .expect("ASCII location");
    assert_eq!(
        location,
        format!("{}/v1/kv/redirected?ttl=5m", cluster.api_url(leader)),
        "Location is the active node's API address with the same path and query"
    );
    cluster
        .get(leader, "/v1/kv/redirected")
        .await
        .expect_status(404);
}
