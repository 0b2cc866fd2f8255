//! The API speaks of the active node and standbys, and still answers to the earlier, Raft-named
//! spellings: `/v1/sys/active` and `/v1/sys/leader` agree, `consistency=active` and
//! `consistency=leader` are the same read, and the cluster port takes the cluster secret under
//! its header's earlier name too.

use std::path::Path;

use tandem_testkit::{cluster_port_client, Cluster, CLUSTER_SECRET};

fn tandem() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_tandem"))
}

#[tokio::test(flavor = "multi_thread")]
async fn active_names_and_their_earlier_spellings_agree() {
    let cluster = Cluster::start(tandem(), 3, &[]).await;
    let active = cluster.leader().await;
    let active_id = cluster.node_id(active);
    let standby = cluster.followers().await[0];

    for i in [active, standby] {
        let now = cluster
            .get(i, "/v1/sys/active")
            .await
            .expect_status(200)
            .json();
        let before = cluster
            .get(i, "/v1/sys/leader")
            .await
            .expect_status(200)
            .json();
        assert_eq!(
            now["active_id"].as_u64(),
            Some(active_id),
            "node index {i}: {now}"
        );
        assert_eq!(now["active_id"], before["leader_id"], "node index {i}");
        assert_eq!(
            now["active_api_addr"], before["leader_api_addr"],
            "node index {i}"
        );
        assert_eq!(
            now["is_self"].as_bool(),
            Some(i == active),
            "node index {i}"
        );
        let members = cluster
            .get(i, "/v1/cluster")
            .await
            .expect_status(200)
            .json();
        let marked_active: Vec<u64> = members["members"]
            .as_array()
            .expect("members")
            .iter()
            .filter(|m| m["is_active"] == true)
            .filter_map(|m| m["id"].as_u64())
            .collect();
        assert_eq!(marked_active, vec![active_id], "node index {i}: {members}");
    }

    cluster
        .put(active, "/v1/kv/spelled", "both")
        .await
        .expect_status(200);
    for consistency in ["active", "leader"] {
        let read = cluster
            .get(
                standby,
                &format!("/v1/kv/spelled?consistency={consistency}"),
            )
            .await
            .expect_status(200);
        assert_eq!(read.text(), "both", "consistency={consistency}");
    }
    let unknown = cluster
        .get(standby, "/v1/kv/spelled?consistency=leaderish")
        .await;
    assert_eq!(unknown.expect_api_error(400).code, "bad_request");

    // A peer of the previous release sends the cluster secret as x-tandem-raft-secret.
    let peer = cluster_port_client(Some(CLUSTER_SECRET));
    for (header, secret, expected) in [
        ("x-tandem-raft-secret", CLUSTER_SECRET, 200),
        ("x-tandem-cluster-secret", CLUSTER_SECRET, 200),
        ("x-tandem-raft-secret", "not-the-cluster-secret-0000", 401),
    ] {
        let reply = peer
            .post(format!("{}/raft/probe", cluster.raft_url(standby)))
            .header(header, secret)
            .send()
            .await
            .unwrap_or_else(|e| panic!("probe with {header}: {e}"));
        assert_eq!(reply.status().as_u16(), expected, "{header} with {secret}");
    }
    cluster.assert_no_panics();
}
