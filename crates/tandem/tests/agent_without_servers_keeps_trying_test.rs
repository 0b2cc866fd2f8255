//! An agent whose servers are all unreachable keeps running and retrying, and its local
//! `/health` says why it is not registered; once a server comes up, it enrols and registers.

use std::path::Path;
use std::process::Stdio;

use serde_json::json;
use tandem_testkit::{
    free_ports, join_token, tandem_command, wait_for_agent_states, wait_until, Cluster, DEADLINE,
};

fn tandem() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_tandem"))
}

#[tokio::test(flavor = "multi_thread")]
async fn an_agent_without_servers_says_why_and_registers_once_they_come() {
    let mut cluster = Cluster::start(tandem(), 1, &[]).await;
    cluster.leader().await;
    let token = join_token(&cluster, "late", json!({})).await;
    let server = cluster.api_addr(0).to_string();
    cluster.stop(0).await;

    let data_dir = tempfile::TempDir::new().unwrap();
    let health_port = free_ports(1).unwrap()[0];
    let health = format!("http://127.0.0.1:{health_port}/health");
    let mut agent = tandem_command(tandem());
    agent
        .args([
            "agent",
            "--servers",
            &server,
            "--pool",
            "late",
            "--name",
            "lonely",
        ])
        .args(["--address", "lonely.test:1", "--join-token", &token])
        .arg("--data-dir")
        .arg(data_dir.path())
        .args(["--health-listen", &format!("127.0.0.1:{health_port}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut agent = agent.spawn().expect("start the agent");

    let http = reqwest::Client::new();
    let mut said = String::new();
    wait_until(
        DEADLINE,
        "the agent's /health to say the servers are unreachable",
        async || {
            let Ok(reply) = http.get(&health).send().await else {
                return false;
            };
            let status = reply.status().as_u16();
            said = reply.text().await.unwrap_or_default();
            status == 503 && said.contains("unreachable")
        },
    )
    .await;
    assert!(said.contains("not registered yet"), "{said}");
    assert!(
        agent.try_wait().unwrap().is_none(),
        "the agent keeps running: {said}"
    );

    cluster.start_node(0).await;
    wait_for_agent_states(&cluster, &["lonely"], "passing").await;
    wait_until(DEADLINE, "the agent's /health to answer 200", async || {
        http.get(&health)
            .send()
            .await
            .is_ok_and(|reply| reply.status().as_u16() == 200)
    })
    .await;
    agent.kill().await.ok();
}
