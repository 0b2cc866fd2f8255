//! An exit's upstream probe, with real `tandem agent` processes on 127.0.0.1: a primary exit
//! (weight 200) whose `--exit-probe` checks that a file exists, a backup exit (weight 100)
//! without one, and an ingress peered with both. While the probe fails the primary withdraws
//! its routes: the ingress drops its path and moves to the backup, curl still gets through,
//! and the primary's `/health` is 503 with the reason in `/healthz`. When the probe passes
//! again the primary advertises again and the ingress moves back (after its hold-down).

use std::path::Path;

use serde_json::{json, Value};
use tandem_testkit::{
    curl_socks5, free_ports, healthz, join_token, loopback_mesh_args, wait_until, AgentProcess,
    Cluster, HttpTarget, DEADLINE,
};

fn tandem() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_tandem"))
}

async fn curl(socks: &str, url: &str) -> bool {
    curl_socks5(socks, None, url, "3").await.is_ok()
}

async fn health(agent: &AgentProcess) -> (u16, String) {
    match reqwest::get(format!("{}/health", agent.health_url())).await {
        Ok(reply) => (
            reply.status().as_u16(),
            reply.text().await.unwrap_or_default(),
        ),
        Err(_) => (0, String::new()),
    }
}

/// The origins of the ingress's paths to the target, and the selected one.
async fn paths(ingress: &AgentProcess) -> (Vec<String>, Option<String>) {
    let routes = healthz(ingress).await["mesh"]["routes"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let origin = |r: &Value| r["origin"].as_str().unwrap_or_default().to_string();
    let origins = routes.iter().map(origin).collect();
    let selected = routes.iter().find(|r| r["state"] == "selected").map(origin);
    (origins, selected)
}

fn start(cluster: &Cluster, name: &str, token: &str, args: &[String]) -> AgentProcess {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    AgentProcess::start(tandem(), cluster, name, "mesh", Some(token), &args)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failing_probe_moves_traffic_to_the_backup_exit_and_back() {
    let cluster = Cluster::start(tandem(), 1, &[]).await;
    cluster.leader().await;
    let join = join_token(&cluster, "mesh", json!({})).await;
    let target = HttpTarget::start("127.0.0.2:0", "upstream").await;
    let url = target.url();
    let folder = tempfile::tempdir().expect("a folder");
    let upstream_ok = folder.path().join("upstream-ok");
    std::fs::write(&upstream_ok, "").expect("write the flag file");

    let ports = free_ports(4).expect("free ports");
    let (primary_port, backup_port, ingress_port, socks_port) =
        (ports[0], ports[1], ports[2], ports[3]);
    let exit = |port: u16, weight: &str| {
        let mut args = loopback_mesh_args(port, &[]);
        args.extend([
            "--exit-route".into(),
            "127.0.0.2/32".into(),
            "--exit-weight".into(),
            weight.into(),
        ]);
        args
    };
    let mut primary_args = exit(primary_port, "200");
    primary_args.extend([
        "--exit-probe".into(),
        // `test` exits 1 (a warning) when the file is missing: make that a failure.
        format!("exec:test -e {} || exit 2", upstream_ok.display()),
        "--check-interval".into(),
        "200ms".into(),
    ]);
    let primary = start(&cluster, "exit-primary", &join, &primary_args);
    let _backup = start(&cluster, "exit-backup", &join, &exit(backup_port, "100"));
    let mut ingress_args = loopback_mesh_args(ingress_port, &[primary_port, backup_port]);
    ingress_args.extend([
        "--socks5-listen".into(),
        format!("127.0.0.1:{socks_port}"),
        "--mesh-hold-down".into(),
        "1s".into(),
    ]);
    let ingress = start(&cluster, "in-1", &join, &ingress_args);
    let socks = format!("127.0.0.1:{socks_port}");

    wait_until(
        DEADLINE,
        "the ingress to hold both exits' paths, the primary selected",
        async || {
            let (origins, selected) = paths(&ingress).await;
            origins.len() == 2 && selected.as_deref() == Some("exit-primary")
        },
    )
    .await;
    assert!(curl(&socks, &url).await, "curl through the primary");
    wait_until(DEADLINE, "the primary to be healthy", async || {
        health(&primary).await.0 == 200
    })
    .await;

    std::fs::remove_file(&upstream_ok).expect("remove the flag file");
    wait_until(
        DEADLINE,
        "the primary's path to be withdrawn at the ingress",
        async || {
            let (origins, selected) = paths(&ingress).await;
            origins == ["exit-backup"] && selected.as_deref() == Some("exit-backup")
        },
    )
    .await;
    assert!(curl(&socks, &url).await, "curl through the backup");
    let (code, text) = health(&primary).await;
    assert_eq!(code, 503, "{text}");
    assert!(text.contains("exit routes withdrawn"), "{text}");
    let why = healthz(&primary).await["mesh"]["exits_withdrawn"].clone();
    assert!(
        why.as_str().is_some_and(|w| w.contains("probe exec:")),
        "{why}"
    );
    assert!(primary.log().contains("exit routes withdrawn"));

    std::fs::write(&upstream_ok, "").expect("write the flag file again");
    wait_until(
        DEADLINE,
        "the ingress to move back to the primary",
        async || paths(&ingress).await.1.as_deref() == Some("exit-primary"),
    )
    .await;
    assert!(curl(&socks, &url).await, "curl through the primary again");
    assert_eq!(health(&primary).await.0, 200);
    assert!(healthz(&primary).await["mesh"]["exits_withdrawn"].is_null());
    assert!(primary.log().contains("exit routes advertised again"));
}
