//! The servers show the whole mesh: an exit and an ingress agent peer, each reports its peers
//! and paths with its heartbeat, and `GET /v1/mesh` on the cluster lists both agents with the
//! peer and the route; `tandem mesh routes` prints the route.

use std::path::Path;

use serde_json::{json, Value};
use tandem_testkit::{
    free_ports, join_token, tandem_command, wait_until, AgentProcess, Cluster, API_SECRET, DEADLINE,
};

fn tandem() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_tandem"))
}

fn start(cluster: &Cluster, name: &str, token: &str, args: Vec<String>) -> AgentProcess {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    AgentProcess::start(tandem(), cluster, name, "mesh", Some(token), &args)
}

fn agent<'a>(mesh: &'a Value, name: &str) -> Option<&'a Value> {
    mesh["agents"]
        .as_array()?
        .iter()
        .find(|agent| agent["name"] == name)
}

#[tokio::test(flavor = "multi_thread")]
async fn the_servers_list_every_agents_peers_and_routes() {
    let cluster = Cluster::start(tandem(), 1, &[]).await;
    cluster.leader().await;
    let token = join_token(&cluster, "mesh", json!({})).await;
    let ports = free_ports(2).expect("free ports");
    let (exit_port, ingress_port) = (ports[0], ports[1]);
    let _exit = start(
        &cluster,
        "exit-1",
        &token,
        vec![
            "--mesh-listen".into(),
            format!("127.0.0.1:{exit_port}"),
            "--exit-route".into(),
            "10.9.0.0/16".into(),
        ],
    );
    let _ingress = start(
        &cluster,
        "ingress-1",
        &token,
        vec![
            "--mesh-listen".into(),
            format!("127.0.0.1:{ingress_port}"),
            "--mesh-peer".into(),
            format!("127.0.0.1:{exit_port}"),
        ],
    );

    let client = cluster.client();
    let mut mesh = Value::Null;
    wait_until(
        DEADLINE,
        "GET /v1/mesh to show the ingress's peer and route through the exit",
        async || {
            let Ok(reply) = client.get("/v1/mesh").await else {
                return false;
            };
            if !reply.status.is_success() {
                return false;
            }
            mesh = serde_json::from_slice(&reply.body).unwrap_or_default();
            let Some(ingress) = agent(&mesh, "ingress-1") else {
                return false;
            };
            let exit_heard = agent(&mesh, "exit-1").is_some_and(|exit| {
                exit["peers"].as_array().is_some_and(|p| {
                    p.iter()
                        .any(|p| p["id"] == "ingress-1" && p["state"] == "up")
                })
            });
            let peer_up = ingress["peers"]
                .as_array()
                .is_some_and(|p| p.iter().any(|p| p["id"] == "exit-1" && p["state"] == "up"));
            let route = ingress["routes"].as_array().is_some_and(|r| {
                r.iter().any(|r| {
                    r["dest"] == "10.9.0.0/16"
                        && r["origin"] == "exit-1"
                        && r["next_hop"] == "exit-1"
                        && r["state"] == "selected"
                })
            });
            exit_heard && peer_up && route
        },
    )
    .await;
    let ingress = agent(&mesh, "ingress-1").unwrap();
    assert_eq!(ingress["pool"], "mesh", "{mesh}");
    assert!(
        ingress["last_heartbeat_ms"].as_i64().unwrap_or(0) > 0,
        "{mesh}"
    );
    let route = &ingress["routes"][0];
    assert_eq!(route["path"], json!(["exit-1"]), "{mesh}");
    assert_eq!(route["metric"], 1, "{mesh}");
    // The exit's own route, as the exit stores it.
    let exit = agent(&mesh, "exit-1").unwrap();
    assert!(
        exit["routes"].as_array().is_some_and(|r| r
            .iter()
            .any(|r| r["dest"] == "10.9.0.0/16" && r["origin"] == "exit-1")),
        "{mesh}"
    );

    // Without the API secret: refused.
    let anonymous = reqwest::get(format!("{}/v1/mesh", cluster.api_url(0)))
        .await
        .expect("the server answers");
    assert_eq!(anonymous.status(), 401);

    // The CLI prints the route, as a table and as JSON.
    let mut routes = tandem_command(tandem());
    routes.args([
        "mesh",
        "routes",
        "--addr",
        cluster.api_addr(0),
        "--secret",
        API_SECRET,
    ]);
    let out = tandem_testkit::run_to_exit(routes, DEADLINE).await;
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{table} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(table.starts_with("AGENT"), "{table}");
    assert!(
        table.lines().any(|line| line.starts_with("ingress-1")
            && line.contains("10.9.0.0/16")
            && line.contains("exit-1")
            && line.contains("selected")),
        "{table}"
    );
    let mut peers = tandem_command(tandem());
    peers.args([
        "mesh",
        "peers",
        "--json",
        "--agent",
        "ingress-1",
        "--addr",
        cluster.api_addr(0),
        "--secret",
        API_SECRET,
    ]);
    let out = tandem_testkit::run_to_exit(peers, DEADLINE).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let answer: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(
        answer["agents"].as_array().map(Vec::len),
        Some(1),
        "{answer}"
    );
    assert_eq!(answer["agents"][0]["peers"][0]["id"], "exit-1", "{answer}");
}
