//! `--mesh-peer auto`: an ingress and an exit are given no peer address, only where their own
//! mesh listens; each registers it, learns the other from the servers' mesh directory, and
//! curl through the ingress's SOCKS5 reaches the target behind the exit. An agent of another
//! mesh is not offered.

use std::path::Path;

use serde_json::{json, Value};
use tandem_testkit::{curl_socks5, healthz, HttpTarget};
use tandem_testkit::{free_ports, join_token, wait_until, AgentProcess, Cluster, DEADLINE};

fn tandem() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_tandem"))
}

/// Mesh flags with no peer address: listen here, tell the servers where, peer `auto`.
fn auto_mesh(port: u16) -> Vec<String> {
    let listen = format!("127.0.0.1:{port}");
    vec![
        "--mesh-listen".into(),
        listen.clone(),
        "--mesh-advertise".into(),
        listen,
        "--mesh-peer".into(),
        "auto".into(),
    ]
}

fn start(cluster: &Cluster, name: &str, token: &str, args: Vec<String>) -> AgentProcess {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    AgentProcess::start(tandem(), cluster, name, "mesh", Some(token), &args)
}

fn peers_up(healthz: &Value) -> Vec<String> {
    healthz["mesh"]["peers"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|p| p["state"] == "up")
        .filter_map(|p| p["id"].as_str().map(str::to_string))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn agents_that_peer_auto_find_each_other_through_the_servers() {
    let cluster = Cluster::start(tandem(), 1, &[]).await;
    cluster.leader().await;
    let token = join_token(&cluster, "mesh", json!({})).await;
    let target = HttpTarget::start("127.0.0.2:0", "found through the servers").await;
    let target = &target.addr;

    let ports = free_ports(4).expect("free ports");
    let (exit_port, ingress_port, socks, other_port) = (ports[0], ports[1], ports[2], ports[3]);
    let mut exit_args = auto_mesh(exit_port);
    exit_args.extend(["--exit-route".into(), "127.0.0.2/32".into()]);
    let _exit = start(&cluster, "exit-a", &token, exit_args);
    let mut ingress_args = auto_mesh(ingress_port);
    ingress_args.extend(["--socks5-listen".into(), format!("127.0.0.1:{socks}")]);
    let ingress = start(&cluster, "ingress", &token, ingress_args);
    // Another mesh: registered beside them, never offered to them.
    let mut other_args = auto_mesh(other_port);
    other_args.extend(["--mesh-name".into(), "lab".into()]);
    let other = start(&cluster, "lab-transit", &token, other_args);

    let socks = format!("socks5h://127.0.0.1:{socks}");
    let url = format!("http://{target}/");
    let mut answer = Err(0);
    wait_until(
        DEADLINE,
        "curl through the ingress to reach the target behind the exit",
        async || {
            answer = curl_socks5(&socks, None, &url, "3").await;
            answer.is_ok()
        },
    )
    .await;
    assert_eq!(answer, Ok("found through the servers".to_string()));

    // Both dialed each other: one connection is kept, and the address the ingress dials counts
    // as connected through it, so the ingress lists one peer, up.
    let mut seen = Value::Null;
    wait_until(
        DEADLINE,
        "the ingress to list one peer, exit-a, up",
        async || {
            seen = healthz(&ingress).await;
            let listed = seen["mesh"]["peers"].as_array().map_or(0, Vec::len);
            peers_up(&seen) == ["exit-a"] && listed == 1
        },
    )
    .await;
    // The other mesh stays apart.
    let lab = healthz(&other).await;
    assert!(peers_up(&lab).is_empty(), "{lab}");
    let mut registered = Value::Null;
    wait_until(
        DEADLINE,
        "the servers to list all three agents",
        async || {
            let reply = cluster.client().get("/v1/agents?pool=mesh").await;
            registered = reply.ok().and_then(|r| r.json().ok()).unwrap_or_default();
            registered["agents"].as_array().map_or(0, Vec::len) == 3
        },
    )
    .await;
}
