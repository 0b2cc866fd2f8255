//! Failure detection in seconds: an agent killed with -9 is marked down and out of every pick
//! within `down_after` + 1 s, and a blocking watch on its pool learns of it at once.

use std::path::Path;
use std::time::Duration;

use serde_json::json;
use tandem_testkit::{
    join_token, pick, wait_for_agent_states, wait_until, AgentProcess, Cluster, DEADLINE,
};
use tokio::time::Instant;

fn tandem() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_tandem"))
}

/// The servers' default `down_after`.
const DOWN_AFTER: Duration = Duration::from_secs(3);

#[tokio::test(flavor = "multi_thread")]
async fn a_killed_agent_is_out_of_picks_within_down_after_and_a_second() {
    let cluster = Cluster::start(tandem(), 3, &[]).await;
    cluster.leader().await;
    let token = join_token(&cluster, "api", json!({})).await;
    let names = ["api-1", "api-2", "api-3"];
    let mut agents: Vec<AgentProcess> = names
        .iter()
        .map(|name| AgentProcess::start(tandem(), &cluster, name, "api", Some(&token), &[]))
        .collect();
    wait_for_agent_states(&cluster, &names, "passing").await;

    // A watch that waits on the pool's current index.
    let listed = cluster.client().get("/v1/agents?pool=api").await.unwrap();
    let index = listed.json().unwrap()["index"].as_u64().expect("an index");
    let header = listed
        .headers
        .get("x-tandem-index")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    assert_eq!(header, Some(index.to_string()));
    let watcher = cluster.client();
    let watch = tokio::spawn(async move {
        let reply = watcher
            .get(&format!("/v1/agents?pool=api&index={index}&wait=30s"))
            .await
            .expect("the watch answers");
        (Instant::now(), reply.json().expect("JSON"))
    });

    agents[1].kill();
    let killed_at = Instant::now();
    wait_until(DEADLINE, "api-2 to leave the picks", async || {
        let mut seen_dead = false;
        for _ in 0..10 {
            seen_dead |= pick(&cluster, "api", "").await.as_deref() == Ok("api-2");
        }
        !seen_dead
    })
    .await;
    let detected = killed_at.elapsed();
    assert!(
        detected <= DOWN_AFTER + Duration::from_secs(1),
        "api-2 was still picked {detected:?} after kill -9"
    );
    wait_for_agent_states(&cluster, &["api-2"], "down").await;
    // The change shows in the active server's metrics, log and events feed.
    let active = cluster.leader().await;
    let feed = cluster.get(active, "/v1/events").await.json();
    let went_down = feed["events"].as_array().into_iter().flatten().any(|e| {
        e["kind"] == "agent_state_changed"
            && e["detail"]["agent"] == "api-2"
            && e["detail"]["from"] == "passing"
            && e["detail"]["to"] == "down"
    });
    assert!(went_down, "{feed}");
    wait_until(DEADLINE, "the metrics to count api-2 down", async || {
        let metrics = cluster.get(active, "/metrics").await.text();
        metrics.contains("tandem_agents{pool=\"api\",state=\"down\"} 1")
    })
    .await;
    assert!(
        cluster.log(active).contains(
            "agent state changed agent=\"api-2\" pool=\"api\" from=\"passing\" to=\"down\""
        ),
        "{}",
        cluster.log(active)
    );
    for _ in 0..30 {
        assert_ne!(pick(&cluster, "api", "").await.as_deref(), Ok("api-2"));
    }

    let (answered_at, changed) = watch.await.expect("the watch task");
    assert!(changed["index"].as_u64().unwrap() > index, "{changed}");
    assert!(
        answered_at.duration_since(killed_at) <= DOWN_AFTER + Duration::from_secs(1),
        "the watch answered {:?} after the kill",
        answered_at.duration_since(killed_at)
    );
    let down = changed["agents"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["name"] == "api-2")
        .expect("api-2 still listed");
    assert_eq!(down["state"], "down");
}
