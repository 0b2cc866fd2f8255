//! Sticky picks: with a key, the registry hands the same agent to the same key (rendezvous
//! hashing); when an agent dies, only its keys move, and each to a live agent.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::json;
use tandem_testkit::{join_token, pick, wait_for_agent_states, AgentProcess, Cluster};

fn tandem() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_tandem"))
}

async fn assignments(cluster: &Cluster, keys: &[String]) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for key in keys {
        let agent = pick(cluster, "edge", &format!("?key={key}"))
            .await
            .expect("a pick");
        out.insert(key.clone(), agent);
    }
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn sticky_keys_move_only_off_the_dead_agent() {
    let cluster = Cluster::start(tandem(), 3, &[]).await;
    cluster.leader().await;
    let token = join_token(&cluster, "edge", json!({})).await;
    let names = ["e-1", "e-2", "e-3", "e-4"];
    let mut agents: Vec<AgentProcess> = names
        .iter()
        .map(|name| AgentProcess::start(tandem(), &cluster, name, "edge", Some(&token), &[]))
        .collect();
    wait_for_agent_states(&cluster, &names, "passing").await;

    let keys: Vec<String> = (0..80).map(|i| format!("user-{i}")).collect();
    let before = assignments(&cluster, &keys).await;
    assert_eq!(
        before,
        assignments(&cluster, &keys).await,
        "the same key, the same agent"
    );
    assert!(
        before.values().any(|a| a == "e-3"),
        "e-3 got no keys: {before:?}"
    );

    agents[2].kill();
    wait_for_agent_states(&cluster, &["e-3"], "down").await;
    let after = assignments(&cluster, &keys).await;
    for key in &keys {
        if before[key] == "e-3" {
            assert_ne!(after[key], "e-3", "{key} still on the dead agent");
        } else {
            assert_eq!(
                after[key], before[key],
                "{key} moved though its agent lives"
            );
        }
    }
}
