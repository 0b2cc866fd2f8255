//! Health checks on the agent: an HTTP check that fails turns the agent critical at once (not
//! at the next heartbeat) and out of picks, its local /health says so; when the check passes
//! again, so does the agent.

use std::path::Path;
use std::time::Duration;

use serde_json::json;
use tandem_testkit::{
    join_token, pick, wait_for_agent_states, wait_until, AgentProcess, CheckTarget, Cluster,
    DEADLINE,
};

fn tandem() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_tandem"))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failing_http_check_makes_the_agent_critical_until_it_passes_again() {
    let cluster = Cluster::start(tandem(), 3, &[]).await;
    cluster.leader().await;
    let token = join_token(&cluster, "web", json!({})).await;
    let target = CheckTarget::start().await;
    let url = target.url();
    let checked = AgentProcess::start(
        tandem(),
        &cluster,
        "web-checked",
        "web",
        Some(&token),
        &[
            "--check-http",
            &url,
            "--check-interval",
            "200ms",
            "--check-timeout",
            "500ms",
        ],
    );
    let _plain = AgentProcess::start(tandem(), &cluster, "web-plain", "web", Some(&token), &[]);
    wait_for_agent_states(&cluster, &["web-checked", "web-plain"], "passing").await;

    target.set_healthy(false);
    wait_for_agent_states(&cluster, &["web-checked"], "critical").await;
    for _ in 0..30 {
        assert_eq!(pick(&cluster, "web", "").await.as_deref(), Ok("web-plain"));
    }
    let shown = cluster
        .client()
        .get("/v1/agents/web-checked")
        .await
        .unwrap()
        .json()
        .unwrap();
    let check = &shown["checks"][0];
    assert_eq!(check["status"], "critical", "{shown}");
    assert!(check["output"].as_str().unwrap().contains("500"), "{shown}");
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    wait_until(DEADLINE, "the agent's /health to answer 503", async || {
        let reply = http
            .get(format!("{}/health", checked.health_url()))
            .send()
            .await;
        reply.is_ok_and(|r| r.status().as_u16() == 503)
    })
    .await;

    target.set_healthy(true);
    wait_for_agent_states(&cluster, &["web-checked"], "passing").await;
    wait_until(DEADLINE, "web-checked to be picked again", async || {
        pick(&cluster, "web", "?strategy=random").await.as_deref() == Ok("web-checked")
    })
    .await;
}
