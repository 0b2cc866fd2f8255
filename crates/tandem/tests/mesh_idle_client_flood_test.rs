//! Ten thousand clients connect to a real ingress's SOCKS5 port and say nothing. The ingress
//! holds its connection cap (10 000): at the cap the oldest client still in its handshake is
//! cut off to make room, with a log line, so a real client that comes while they all hold on
//! is served at once, and the agent stays healthy and keeps routing.

use std::path::Path;
use std::time::Duration;

use nix::sys::resource::{getrlimit, setrlimit, Resource};
use serde_json::json;
use tandem_testkit::{
    curl_socks5, free_ports, join_token, loopback_mesh_args, wait_until, AgentProcess, Cluster,
    HttpTarget, DEADLINE,
};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

const IDLE_CLIENTS: usize = 10_000;

fn tandem() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_tandem"))
}

/// This process holds the idle clients; the agents inherit the limit too.
fn allow_open_files(needed: u64) {
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).expect("read the open-files limit");
    assert!(
        hard >= needed,
        "the open-files hard limit is {hard}; this test needs {needed} (raise it with ulimit -Hn)"
    );
    if soft < needed {
        setrlimit(Resource::RLIMIT_NOFILE, hard, hard).expect("raise the open-files limit");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_idle_clients_do_not_keep_a_real_one_out() {
    allow_open_files(IDLE_CLIENTS as u64 + 2_000);
    let cluster = Cluster::start(tandem(), 1, &[]).await;
    cluster.leader().await;
    let token = join_token(&cluster, "mesh", json!({})).await;
    let target = HttpTarget::start("127.0.0.1:0", "served through the flood").await;

    let ports = free_ports(3).expect("free ports");
    let (exit_port, ingress_port, socks_port) = (ports[0], ports[1], ports[2]);
    let mut exit_args = loopback_mesh_args(exit_port, &[]);
    exit_args.extend(["--exit-route".into(), "127.0.0.1/32".into()]);
    let mut ingress_args = loopback_mesh_args(ingress_port, &[exit_port]);
    ingress_args.extend(["--socks5-listen".into(), format!("127.0.0.1:{socks_port}")]);
    let start = |name: &str, args: &[String]| {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        AgentProcess::start(tandem(), &cluster, name, "mesh", Some(&token), &args)
    };
    let _exit = start("exit", &exit_args);
    let ingress = start("ingress", &ingress_args);
    let socks = format!("127.0.0.1:{socks_port}");
    wait_until(DEADLINE, "traffic through the ingress", async || {
        curl_socks5(&socks, None, &target.url(), "3").await.is_ok()
    })
    .await;
    let served_before = target.connections();

    // The flood: every client connects and stays silent.
    let mut idle = Vec::with_capacity(IDLE_CLIENTS);
    for i in 0..IDLE_CLIENTS {
        let client = TcpStream::connect(&socks)
            .await
            .unwrap_or_else(|e| panic!("idle client {i} cannot connect: {e}"));
        idle.push(client);
    }

    // A real client among them is served, at once, while they all still hold on.
    let started = std::time::Instant::now();
    let answer = curl_socks5(&socks, None, &target.url(), "5").await;
    assert_eq!(answer, Ok("served through the flood".to_string()));
    println!(
        "a real client was served in {:?} with {IDLE_CLIENTS} idle clients held",
        started.elapsed()
    );
    assert_eq!(
        target.connections(),
        served_before + 1,
        "only the real client reached the target"
    );

    // The oldest idle client made room for it: the ingress closed it.
    let mut first = idle.swap_remove(0);
    let mut byte = [0u8; 1];
    let ended = tokio::time::timeout(DEADLINE, first.read(&mut byte)).await;
    assert!(
        matches!(ended, Ok(Ok(0)) | Ok(Err(_))),
        "the oldest idle client is still open: {ended:?}"
    );
    wait_until(DEADLINE, "the cut-off in the ingress's log", async || {
        ingress
            .log()
            .contains("the oldest client still in its handshake was cut off to make room")
    })
    .await;

    // The agent stays healthy while the idle clients wait for their handshake timeout.
    let health = reqwest::get(format!("{}/health", ingress.health_url()))
        .await
        .expect("the ingress's /health answers");
    assert_eq!(health.status().as_u16(), 200);
    drop(idle);
    wait_until(
        Duration::from_secs(15),
        "traffic once the flood is gone",
        async || curl_socks5(&socks, None, &target.url(), "3").await.is_ok(),
    )
    .await;
}
