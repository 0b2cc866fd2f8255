//! Taking servers out while the cluster serves: the active server, when removed, hands its role
//! over first and its signing keys retire as a departed server's do; a dead server whose data is
//! lost is replaced by removing it and adding it again empty, and it catches up with everything.

use std::collections::BTreeSet;
use std::path::Path;

use serde_json::Value;
use tandem_testkit::{wait_for, wait_until, Cluster, HttpReply, DEADLINE};

fn tandem() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_tandem"))
}

fn succeeded(output: &std::process::Output) {
    assert!(
        output.status.success(),
        "failed ({}): {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
}

async fn write_keys(cluster: &Cluster, prefix: &str, count: usize) -> BTreeSet<String> {
    let client = cluster.client();
    let mut written = BTreeSet::new();
    for n in 0..count {
        let key = format!("{prefix}{n}");
        let reply = client
            .put_bytes(&format!("/v1/kv/{key}"), key.clone().into_bytes())
            .await
            .expect("the cluster answered");
        HttpReply::from_client(format!("PUT {key}"), reply).expect_status(200);
        written.insert(key);
    }
    written
}

/// The published keys of server `id`, as node `i` lists them.
async fn keys_of(cluster: &Cluster, i: usize, id: u64) -> Vec<Value> {
    let listed = cluster.get(i, "/v1/keys").await.json();
    listed["keys"]
        .as_array()
        .expect("keys")
        .iter()
        .filter(|k| k["node_id"].as_u64() == Some(id))
        .cloned()
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_removed_active_server_hands_over_first_and_its_keys_retire() {
    let mut cluster = Cluster::start(tandem(), 3, &[]).await;
    // Once every server has published its key through the active one, the elections of the
    // first start are over.
    wait_until(DEADLINE, "every server to publish a key", async || {
        let leader = cluster.leader().await;
        let mut published = Vec::new();
        for id in 1..=3 {
            published.push(keys_of(&cluster, leader, id).await);
        }
        published.iter().all(|keys| !keys.is_empty())
    })
    .await;
    let before = write_keys(&cluster, "stay-", 20).await;
    let leader = cluster.leader().await;
    let id = cluster.node_id(leader);

    succeeded(
        &cluster
            .cli(tandem(), &["cluster", "remove", &id.to_string()])
            .await,
    );
    wait_until(
        DEADLINE,
        "the active server to say it handed its role over before its removal",
        async || cluster.log(leader).contains("handed the active role over"),
    )
    .await;
    let others: Vec<usize> = (0..3).filter(|&i| i != leader).collect();
    let voters: BTreeSet<u64> = others.iter().map(|&i| cluster.node_id(i)).collect();
    let new_leader = wait_for(
        DEADLINE,
        "a new active server among the others",
        async || {
            for &i in &others {
                if cluster.membership(i).await != Some((voters.clone(), BTreeSet::new())) {
                    return None;
                }
            }
            let view = cluster.get(others[0], "/v1/sys/active").await.json();
            view["active_id"]
                .as_u64()
                .filter(|active| voters.contains(active))
                .map(|active| cluster.index_of(active))
        },
    )
    .await;
    // The removed server, still running, learns it from its peers and says so.
    let health = wait_for(
        DEADLINE,
        "the removed server to say it was removed",
        async || {
            let reply = cluster.get(leader, "/v1/sys/health").await;
            let body = reply.json();
            (body["standing"] == "removed").then_some((reply.status, body))
        },
    )
    .await;
    assert_eq!(health.0.as_u16(), 503, "{}", health.1);
    assert!(
        voters.contains(&health.1["removed"]["by"].as_u64().unwrap_or(0)),
        "a remaining member said so: {}",
        health.1
    );
    assert!(
        cluster
            .log(leader)
            .contains("this server was removed from the cluster"),
        "its log says so"
    );
    let ready = cluster.get(leader, "/ready").await;
    assert_eq!(ready.status.as_u16(), 503, "a removed server is not ready");
    cluster.kill(leader);
    wait_until(
        DEADLINE,
        "the removed server's keys to retire, kept until its tokens expire",
        async || {
            let keys = keys_of(&cluster, new_leader, id).await;
            !keys.is_empty()
                && keys
                    .iter()
                    .all(|k| k["retired_at_ms"].is_i64() && k["remove_at_ms"].is_i64())
        },
    )
    .await;
    let events = cluster.get(new_leader, "/v1/events").await.json();
    assert!(
        events["events"]
            .as_array()
            .expect("events")
            .iter()
            .any(|e| e["kind"] == "member_removed" && e["detail"]["member"] == id),
        "{events}"
    );
    let after = write_keys(&cluster, "after-", 5).await;
    for &i in &others {
        wait_until(
            DEADLINE,
            "every write on the remaining servers",
            async || {
                let held = cluster.keys_under(i, "").await.unwrap_or_default();
                before.is_subset(&held) && after.is_subset(&held)
            },
        )
        .await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_wiped_server_is_replaced_by_remove_and_add() {
    let mut cluster = Cluster::start(
        tandem(),
        3,
        &["--snapshot-every", "20", "--snapshot-logs-to-keep", "5"],
    )
    .await;
    let leader = cluster.leader().await;
    let lost = (leader + 1) % 3;
    let id = cluster.node_id(lost).to_string();
    let mut written = write_keys(&cluster, "kept-", 30).await;

    cluster.kill(lost);
    succeeded(&cluster.cli(tandem(), &["cluster", "remove", &id]).await);
    written.extend(write_keys(&cluster, "kept-while-out-", 30).await);
    cluster.wipe(lost);
    cluster.start_node(lost).await;
    succeeded(
        &cluster
            .cli_add(
                tandem(),
                cluster.node_id(lost),
                cluster.raft_addr(lost),
                cluster.api_addr(lost),
            )
            .await,
    );
    wait_until(
        DEADLINE,
        "the replaced server to vote and hold every write",
        async || {
            cluster
                .membership(lost)
                .await
                .is_some_and(|(voters, _)| voters.len() == 3)
                && cluster
                    .keys_under(lost, "kept-")
                    .await
                    .is_some_and(|held| written.is_subset(&held))
        },
    )
    .await;
}
