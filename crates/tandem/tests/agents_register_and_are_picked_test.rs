//! Agents in one command: three servers, five agents enrolled with one join token; every agent
//! registers, reports passing, is picked, and serves its own /health and /healthz. A restart
//! uses the stored credential (mode 0600), not the token.

use std::collections::BTreeSet;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use serde_json::json;
use tandem_testkit::{
    agent_states, join_token, pick, tandem_command, wait_for_agent_states, wait_until,
    AgentProcess, Cluster, API_SECRET, DEADLINE,
};

fn tandem() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_tandem"))
}

#[tokio::test(flavor = "multi_thread")]
async fn five_agents_register_report_and_are_picked() {
    let cluster = Cluster::start(tandem(), 3, &[]).await;
    cluster.leader().await;
    let token = join_token(&cluster, "vpn", json!({ "uses": 5, "ttl": "1h" })).await;
    let names = ["gw-1", "gw-2", "gw-3", "gw-4", "gw-5"];
    let mut agents: Vec<AgentProcess> = names
        .iter()
        .map(|name| {
            AgentProcess::start(
                tandem(),
                &cluster,
                name,
                "vpn",
                Some(&token),
                &["--label", "region=eu"],
            )
        })
        .collect();
    wait_for_agent_states(&cluster, &names, "passing").await;

    // Picks hand out registered agents only, and reach all of them.
    let mut picked = BTreeSet::new();
    for _ in 0..60 {
        picked.insert(pick(&cluster, "vpn", "").await.expect("a healthy agent"));
    }
    assert_eq!(picked, names.iter().map(|n| n.to_string()).collect());
    assert_eq!(
        pick(&cluster, "other", "").await,
        Err("no_healthy_agent".to_string())
    );

    // One agent as the registry shows it.
    let shown = cluster
        .client()
        .get("/v1/agents/gw-3")
        .await
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(shown["pool"], "vpn");
    assert_eq!(shown["address"], "gw-3.test:51820");
    assert_eq!(shown["labels"]["region"], "eu");
    assert!(shown["last_heartbeat_ms"].as_i64().is_some(), "{shown}");
    assert!(
        shown["load"].as_f64().is_some(),
        "load is reported: {shown}"
    );
    let by_label = cluster
        .client()
        .get("/v1/agents?label=region=eu&state=passing")
        .await
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(by_label["agents"].as_array().unwrap().len(), 5);

    // The agent's own endpoints.
    let http = reqwest::Client::new();
    let health = http
        .get(format!("{}/health", agents[0].health_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status().as_u16(), 200);
    let healthz: serde_json::Value = http
        .get(format!("{}/healthz", agents[0].health_url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(healthz["name"], "gw-1");
    assert!(
        !healthz["servers"].as_array().unwrap().is_empty(),
        "{healthz}"
    );

    // The credential is private to the agent's user.
    let credential = agents[0].data_dir().join("credential.json");
    let mode = std::fs::metadata(&credential).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "credential.json mode {mode:o}");

    // The CLI lists them, as a table and as JSON.
    let servers: Vec<&str> = (0..3).map(|i| cluster.api_addr(i)).collect();
    let mut ls = tandem_command(tandem());
    ls.args([
        "agents",
        "ls",
        "--pool",
        "vpn",
        "--addr",
        &servers.join(","),
        "--secret",
        API_SECRET,
    ]);
    let out = tandem_testkit::run_to_exit(ls, DEADLINE).await;
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{table} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(table.starts_with("NAME"), "{table}");
    for name in names {
        assert!(table.contains(name), "{name} missing from:\n{table}");
    }

    // A restart needs no token: the stored credential is used.
    let restarted_dir = agents[1].data_dir().to_path_buf();
    agents[1].stop().await;
    wait_until(DEADLINE, "gw-2 to deregister on SIGTERM", async || {
        !agent_states(&cluster, Some("vpn"))
            .await
            .contains_key("gw-2")
    })
    .await;
    let _again =
        AgentProcess::start_in(tandem(), &cluster, "gw-2", "vpn", None, &[], &restarted_dir);
    wait_for_agent_states(&cluster, &["gw-2"], "passing").await;
}
