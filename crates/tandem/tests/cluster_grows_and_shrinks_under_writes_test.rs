//! A cluster of three grows to five and shrinks back to three while a client writes without
//! pause: each new server, started with `--join`, is added with `tandem cluster add` (learner,
//! catch-up, voter), two of the first servers are removed with `tandem cluster remove`, and every
//! acknowledged write is on every remaining member. A server restarted with a node list that no
//! longer matches the membership says so.

use std::collections::BTreeSet;
use std::path::Path;

use tandem_testkit::{wait_for, wait_until, Cluster, SteadyWrites, DEADLINE};

fn tandem() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_tandem"))
}

fn succeeded(output: &std::process::Output) -> serde_json::Value {
    assert!(
        output.status.success(),
        "failed ({}): {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("the CLI prints JSON")
}

fn ids(ids: &[u64]) -> BTreeSet<u64> {
    ids.iter().copied().collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn three_grow_to_five_and_shrink_to_three_under_writes_losing_nothing() {
    let mut cluster = Cluster::start(tandem(), 3, &[]).await;
    let leader = cluster.leader().await;
    let writes = SteadyWrites::start(cluster.client(), "grow-");
    writes.wait_for_progress(20).await;

    for _ in 0..2 {
        let i = cluster.start_joining(tandem(), 0, &[]).await;
        let id = cluster.node_id(i);
        let added = succeeded(
            &cluster
                .cli_add(tandem(), id, cluster.raft_addr(i), cluster.api_addr(i))
                .await,
        );
        assert!(
            added["voters"]
                .as_array()
                .is_some_and(|v| v.iter().any(|v| v.as_u64() == Some(id))),
            "node {id} votes after the add: {added}"
        );
        writes.wait_for_progress(20).await;
    }
    let five = ids(&[1, 2, 3, 4, 5]);
    wait_until(DEADLINE, "every server to see five voters", async || {
        for i in 0..cluster.len() {
            if cluster.membership(i).await != Some((five.clone(), BTreeSet::new())) {
                return false;
            }
        }
        true
    })
    .await;
    let active = cluster.leader().await;
    let report = cluster.get(active, "/v1/cluster").await.json();
    for member in report["members"].as_array().expect("members") {
        assert_eq!(member["role"], "voter", "{member}");
        assert!(
            member["lag"].is_u64(),
            "the active node knows each lag: {member}"
        );
    }

    // Shrink by two of the first three servers, never the active one.
    let leaving: Vec<usize> = (0..3).filter(|&i| i != leader).collect();
    for &i in &leaving {
        let id = cluster.node_id(i).to_string();
        succeeded(&cluster.cli(tandem(), &["cluster", "remove", &id]).await);
        cluster.kill(i);
        writes.wait_for_progress(20).await;
    }
    let log = writes.finish().await;
    assert!(log.failed.is_empty(), "failed writes: {:?}", log.failed);
    let staying: Vec<usize> = (0..cluster.len())
        .filter(|i| !leaving.contains(i))
        .collect();
    let voters: BTreeSet<u64> = staying.iter().map(|&i| cluster.node_id(i)).collect();
    let acknowledged: BTreeSet<String> = log.acknowledged.into_iter().collect();
    for &i in &staying {
        wait_until(
            DEADLINE,
            &format!("node index {i} to see three voters and hold every acknowledged write"),
            async || {
                cluster.membership(i).await == Some((voters.clone(), BTreeSet::new()))
                    && cluster
                        .keys_under(i, "grow-")
                        .await
                        .is_some_and(|held| acknowledged.is_subset(&held))
            },
        )
        .await;
    }
    let events = cluster.get(leader, "/v1/events").await.json();
    let kinds: Vec<&str> = events["events"]
        .as_array()
        .expect("events")
        .iter()
        .filter_map(|e| e["kind"].as_str())
        .collect();
    assert!(
        kinds.contains(&"member_added") && kinds.contains(&"member_removed"),
        "{kinds:?}"
    );

    // A server of the first three, restarted with its old node list, names the difference.
    let restarted = *staying
        .iter()
        .find(|&&i| i < 3)
        .expect("the active node stays");
    let _ = cluster.stop(restarted).await;
    cluster.start_node(restarted).await;
    wait_for(DEADLINE, "the node-list warning in the log", async || {
        cluster
            .log(restarted)
            .contains(
                "the node list names nodes 1, 2, 3 but the cluster's stored membership is nodes",
            )
            .then_some(())
    })
    .await;
}
