//! The mesh end to end, with real `tandem agent` processes on 127.0.0.1: an ingress with SOCKS5,
//! two transits, two exits that advertise the target's address, and the target behind them.
//! curl through the SOCKS5 ingress (with its user name and password; a wrong password is
//! refused) reaches the target; when the transit in use is killed with
//! -9, new connections go through the other one within a second or two; an address no exit
//! advertises gets a SOCKS5 error at once, and no connection reaches it around the mesh.

use std::path::Path;
use std::time::Duration;

use serde_json::json;
use tandem_testkit::{
    curl_socks5, free_ports, join_token, wait_until, AgentProcess, Cluster, HttpTarget, DEADLINE,
};
use tokio::time::Instant;

fn tandem() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_tandem"))
}

/// curl through the ingress; the body on success, curl's exit code otherwise.
async fn curl(socks: &str, url: &str, max_time: &str) -> Result<String, i32> {
    curl_socks5(socks, None, url, max_time).await
}

fn mesh_args(listen: u16, peers: &[u16]) -> Vec<String> {
    let mut args = vec!["--mesh-listen".to_string(), format!("127.0.0.1:{listen}")];
    for peer in peers {
        args.push("--mesh-peer".into());
        args.push(format!("127.0.0.1:{peer}"));
    }
    args
}

fn start(cluster: &Cluster, name: &str, token: &str, args: Vec<String>) -> AgentProcess {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    AgentProcess::start(tandem(), cluster, name, "mesh", Some(token), &args)
}

#[tokio::test(flavor = "multi_thread")]
async fn traffic_flows_and_moves_to_the_other_transit_when_one_dies() {
    let cluster = Cluster::start(tandem(), 1, &[]).await;
    cluster.leader().await;
    let token = join_token(&cluster, "mesh", json!({})).await;
    let target = HttpTarget::start("127.0.0.2:0", "hello through the mesh").await;
    let forbidden = HttpTarget::start("127.0.0.3:0", "never").await;

    let ports = free_ports(6).expect("free ports");
    let (e1, e2, t1, t2, ingress, socks) =
        (ports[0], ports[1], ports[2], ports[3], ports[4], ports[5]);
    let exit = |port| {
        let mut args = mesh_args(port, &[]);
        args.extend(["--exit-route".into(), "127.0.0.2/32".into()]);
        args
    };
    let _exit_1 = start(&cluster, "e-1", &token, exit(e1));
    let _exit_2 = start(&cluster, "e-2", &token, exit(e2));
    let mut transit_1 = start(&cluster, "t-1", &token, mesh_args(t1, &[e1, e2]));
    let mut transit_2 = start(&cluster, "t-2", &token, mesh_args(t2, &[e1, e2]));
    let mut ingress_args = mesh_args(ingress, &[t1, t2]);
    ingress_args.extend(["--socks5-listen".into(), format!("127.0.0.1:{socks}")]);
    ingress_args.extend(["--socks5-username".into(), "alice".into()]);
    ingress_args.extend(["--socks5-password".into(), "s3cret".into()]);
    let ingress_agent = start(&cluster, "in-1", &token, ingress_args);
    let wrong_password = format!("socks5h://alice:guess@127.0.0.1:{socks}");
    let socks = format!("socks5h://alice:s3cret@127.0.0.1:{socks}");
    let url = target.url();

    let mut answer = Err(0);
    wait_until(
        DEADLINE,
        "curl through the mesh to reach the target",
        async || {
            answer = curl(&socks, &url, "3").await;
            answer.is_ok()
        },
    )
    .await;
    assert_eq!(answer, Ok("hello through the mesh".to_string()));
    let refused = curl(&wrong_password, &url, "3").await;
    assert!(
        refused.is_err(),
        "a wrong SOCKS5 password got through: {refused:?}"
    );

    // No exit advertises 127.0.0.3: an error at once, and nothing reaches it around the mesh.
    let started = Instant::now();
    let refused = curl(&socks, &forbidden.url(), "5").await;
    assert!(refused.is_err(), "{refused:?}");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "the refusal took {:?}",
        started.elapsed()
    );
    assert_eq!(
        forbidden.connections(),
        0,
        "a connection went around the mesh"
    );

    // Once the ingress peers with both transits, its selected path goes through t-1 (the
    // stable tie-break: lowest next hop) with a backup through t-2; kill -9 t-1 and new
    // connections must take t-2.
    let healthz_url = format!("{}/healthz", ingress_agent.health_url());
    let two_hops_via = |routes: &[serde_json::Value], transit: &str| {
        routes
            .iter()
            .any(|r| r["metric"] == 2 && r["next_hop"] == transit)
    };
    let mut routes = Vec::new();
    wait_until(
        DEADLINE,
        "the ingress to store two-hop paths through both transits",
        async || {
            let Ok(reply) = reqwest::get(&healthz_url).await else {
                return false;
            };
            let healthz: serde_json::Value = reply.json().await.unwrap_or_default();
            routes = healthz["mesh"]["routes"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            two_hops_via(&routes, "t-1") && two_hops_via(&routes, "t-2")
        },
    )
    .await;
    let selected: Vec<&str> = routes
        .iter()
        .filter(|r| r["state"] == "selected")
        .filter_map(|r| r["next_hop"].as_str())
        .collect();
    assert_eq!(selected, ["t-1"], "{routes:?}");
    transit_1.kill();
    let killed = Instant::now();
    wait_until(DEADLINE, "a connection through t-2", async || {
        curl(&socks, &url, "2").await.is_ok()
    })
    .await;
    let moved = killed.elapsed();
    assert!(
        moved < Duration::from_secs(3),
        "new connections waited {moved:?} after the kill"
    );
    assert!(transit_2.exited().is_none(), "t-2 carries the traffic");
}
