//! A server failover never marks healthy agents down: kill -9 the active server while five
//! agents report; the new active server gives every agent `down_after` of grace, the agents
//! move to the surviving servers, no agent is ever shown down, and picks keep answering.

use std::path::Path;
use std::time::Duration;

use serde_json::json;
use tandem_testkit::{
    agent_states, join_token, pick, wait_for_agent_states, AgentProcess, Cluster,
};
use tokio::time::Instant;

fn tandem() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_tandem"))
}

#[tokio::test(flavor = "multi_thread")]
async fn killing_the_active_server_marks_no_agent_down() {
    let mut cluster = Cluster::start(tandem(), 3, &[]).await;
    let active = cluster.leader().await;
    let token = join_token(&cluster, "vpn", json!({})).await;
    let names = ["n-1", "n-2", "n-3", "n-4", "n-5"];
    let _agents: Vec<AgentProcess> = names
        .iter()
        .map(|name| AgentProcess::start(tandem(), &cluster, name, "vpn", Some(&token), &[]))
        .collect();
    wait_for_agent_states(&cluster, &names, "passing").await;

    cluster.kill(active);
    // Watch through the failover and well past a `down_after` after it.
    let until = Instant::now() + Duration::from_secs(10);
    let mut picks = 0;
    while Instant::now() < until {
        let states = agent_states(&cluster, Some("vpn")).await;
        for name in names {
            assert_eq!(
                states.get(name).map(String::as_str),
                Some("passing"),
                "{name} after the active server was killed: {states:?}"
            );
        }
        let picked = pick(&cluster, "vpn", "").await;
        assert!(
            picked.is_ok(),
            "a pick failed during the failover: {picked:?}"
        );
        picks += 1;
    }
    assert!(picks > 0);
    let survivor = cluster.leader().await;
    assert_ne!(survivor, active);
    assert!(
        !cluster.log(survivor).contains("to=down"),
        "the new active server marked an agent down"
    );
}
