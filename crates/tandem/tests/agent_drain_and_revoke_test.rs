//! Drain and revoke. A drained agent (by the API, or by `tandem agent drain` on its machine) is
//! picked no more and keeps running; SIGTERM drains and
//! deregisters an agent; a revoked agent's credential is refused (the agent stops and says
//! why) and it is out of every pick; it cannot come back without a new join token.

use std::path::Path;

use serde_json::json;
use tandem_testkit::{
    agent_states, join_token, pick, run_to_exit, tandem_command, wait_for_agent_states, wait_until,
    AgentProcess, Cluster, DEADLINE,
};

fn tandem() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_tandem"))
}

#[tokio::test(flavor = "multi_thread")]
async fn drained_stopped_and_revoked_agents_leave_the_picks() {
    let cluster = Cluster::start(tandem(), 3, &[]).await;
    cluster.leader().await;
    let token = join_token(&cluster, "vpn", json!({})).await;
    let names = ["d-1", "d-2", "d-3", "d-4"];
    let mut agents: Vec<AgentProcess> = names
        .iter()
        .map(|name| AgentProcess::start(tandem(), &cluster, name, "vpn", Some(&token), &[]))
        .collect();
    wait_for_agent_states(&cluster, &names, "passing").await;
    let client = cluster.client();

    // Drain by the API: never picked, still running and reporting.
    let drained = client
        .post_json("/v1/agents/d-1/drain", &json!({}))
        .await
        .unwrap();
    assert_eq!(drained.status.as_u16(), 200);
    assert_eq!(drained.json().unwrap()["state"], "draining");
    for _ in 0..30 {
        assert_ne!(pick(&cluster, "vpn", "").await.as_deref(), Ok("d-1"));
    }
    assert!(
        agents[0].exited().is_none(),
        "a drained agent keeps running"
    );
    wait_for_agent_states(&cluster, &["d-1"], "draining").await;

    // Drain from the agent's machine, through its local endpoint.
    let mut drain = tandem_command(tandem());
    let health_listen = agents[3]
        .health_url()
        .trim_start_matches("http://")
        .to_string();
    drain.args(["agent", "drain", "--health-listen", &health_listen]);
    let out = run_to_exit(drain, DEADLINE).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    wait_for_agent_states(&cluster, &["d-4"], "draining").await;
    assert!(
        agents[3].exited().is_none(),
        "a drained agent keeps running"
    );

    // SIGTERM: the agent drains, deregisters and exits cleanly.
    let status = agents[1].stop().await;
    assert!(status.success(), "SIGTERM exit: {status:?}");
    assert!(!agent_states(&cluster, Some("vpn"))
        .await
        .contains_key("d-2"));

    // Revoke: out of every pick at once, the credential refused, the agent stops.
    let revoked = client
        .post_json("/v1/agents/d-3/revoke", &json!({}))
        .await
        .unwrap();
    assert_eq!(
        revoked.status.as_u16(),
        200,
        "{}",
        String::from_utf8_lossy(&revoked.body)
    );
    assert_eq!(
        pick(&cluster, "vpn", "").await,
        Err("no_healthy_agent".to_string())
    );
    let status = agents[2].wait_for_exit().await;
    assert_eq!(status.code(), Some(1), "a revoked agent exits with 1");
    assert!(agents[2].log().contains("revoked"), "{}", agents[2].log());
    assert!(!agent_states(&cluster, Some("vpn"))
        .await
        .contains_key("d-3"));

    // Its stored credential cannot bring it back.
    let dir = agents[2].data_dir().to_path_buf();
    let mut again = AgentProcess::start_in(tandem(), &cluster, "d-3", "vpn", None, &[], &dir);
    let status = again.wait_for_exit().await;
    assert_eq!(status.code(), Some(1));
    wait_until(DEADLINE, "the refused restart to say why", async || {
        again.log().contains("revoked")
    })
    .await;
    assert!(!agent_states(&cluster, Some("vpn"))
        .await
        .contains_key("d-3"));
}
