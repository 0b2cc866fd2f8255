//! Two agents with real agent certificates peer over the mesh: the exit advertises
//! 127.0.0.1/32, the ingress carries a port-forward and SOCKS5 through it to a TCP echo
//! server, and both show the mesh in /health and /healthz.

use std::time::{Duration, SystemTime};

use axum::extract::Json;
use axum::response::{IntoResponse, Response};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use rcgen::{KeyPair, PKCS_ECDSA_P256_SHA256};
use serde_json::{json, Value};
use tandem_agent::AgentArgs;
use tandem_registry::{AgentState, ReportAnswer};
use tandem_tls::AgentCa;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const SECRET: &str = "agent-mesh-test-secret-01234567";

/// Servers that accept every registration and report.
async fn start_servers() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let answer_addr = addr.clone();
    let app = axum::Router::new().fallback(move |Json(_): Json<Value>| {
        let addr = answer_addr.clone();
        async move {
            let answer: Response = Json(ReportAnswer {
                state: AgentState::Passing,
                servers: vec![addr],
                report_every_ms: 60_000,
            })
            .into_response();
            answer
        }
    });
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

/// An enrolled agent's data folder: credential.json with a real agent certificate.
fn enrolled(dir: &std::path::Path, name: &str) {
    let ca = AgentCa::from_secret(SECRET).unwrap();
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
    let point = key.public_key_raw();
    let cert = ca
        .issue(
            name,
            "mesh",
            &point[1..33],
            &point[33..65],
            SystemTime::now(),
        )
        .unwrap();
    std::fs::create_dir_all(dir).unwrap();
    let credential = json!({
        "name": name,
        "pool": "mesh",
        "credential_id": format!("cred-{name}"),
        "private_key_pkcs8": STANDARD.encode(key.serialize_der()),
        "certificate_pem": cert,
        "ca_certificate_pem": ca.certificate_pem(),
    });
    std::fs::write(dir.join("credential.json"), credential.to_string()).unwrap();
}

fn free_tcp() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().to_string()
}

fn free_udp() -> String {
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    socket.local_addr().unwrap().to_string()
}

async fn echo_server() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        while let Ok((mut tcp, _)) = listener.accept().await {
            tokio::spawn(async move {
                let (mut r, mut w) = tcp.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
        }
    });
    addr
}

async fn get(listen: &str, path: &str) -> Option<(u16, String)> {
    let response = reqwest::get(format!("http://{listen}{path}")).await.ok()?;
    Some((response.status().as_u16(), response.text().await.ok()?))
}

/// Waits for `probe` to answer, for up to ten seconds.
async fn wait_for<T>(what: &str, probe: impl AsyncFnMut() -> Option<T>) -> T {
    tandem_testkit::wait_for(Duration::from_secs(10), what, probe).await
}

async fn round_trip(stream: &mut TcpStream, message: &[u8]) {
    stream.write_all(message).await.unwrap();
    let mut back = vec![0u8; message.len()];
    tokio::time::timeout(Duration::from_secs(5), stream.read_exact(&mut back))
        .await
        .expect("echo in time")
        .unwrap();
    assert_eq!(back, message);
}

#[tokio::test(flavor = "multi_thread")]
async fn two_agents_carry_a_forward_and_socks5_through_the_mesh() {
    let servers = start_servers().await;
    let target = echo_server().await;
    let dir = tempfile::tempdir().unwrap();
    let base = |name: &str, health: &str| {
        let data_dir = dir.path().join(name);
        enrolled(&data_dir, name);
        AgentArgs {
            servers: Some(vec![servers.clone()]),
            address: Some("10.0.0.7:80".into()),
            name: Some(name.into()),
            data_dir: Some(data_dir),
            health_listen: Some(health.into()),
            ..Default::default()
        }
    };

    let exit_health = free_tcp();
    let exit_mesh = free_udp();
    let exit_args = AgentArgs {
        mesh_listen: Some(exit_mesh.parse().unwrap()),
        exit_route: Some(vec!["127.0.0.1/32".parse().unwrap()]),
        ..base("exit-1", &exit_health)
    };
    let ingress_health = free_tcp();
    let socks5 = free_tcp();
    let forward = free_tcp();
    let ingress_args = AgentArgs {
        mesh_listen: Some(free_udp().parse().unwrap()),
        mesh_peer: Some(vec![exit_mesh.parse().unwrap()]),
        socks5_listen: Some(socks5.parse().unwrap()),
        forward: Some(vec![format!("{forward}={target}").parse().unwrap()]),
        ..base("ingress-1", &ingress_health)
    };
    let exit = tokio::spawn(tandem_agent::run(exit_args));
    let ingress = tokio::spawn(tandem_agent::run(ingress_args));

    for (who, listen) in [("ingress", &ingress_health), ("exit", &exit_health)] {
        wait_for(&format!("the {who} healthy"), async || {
            get(listen, "/health")
                .await
                .filter(|(code, _)| *code == 200)
        })
        .await;
    }
    let (_, healthz) = get(&ingress_health, "/healthz").await.unwrap();
    let healthz: Value = serde_json::from_str(&healthz).unwrap();
    assert_eq!(healthz["mesh"]["peers"][0]["id"], "exit-1");
    assert_eq!(healthz["mesh"]["peers"][0]["state"], "up");
    assert_eq!(healthz["mesh"]["routes"][0]["dest"], "127.0.0.1/32");
    assert_eq!(healthz["mesh"]["routes"][0]["state"], "selected");

    // The port-forward.
    let mut forwarded = TcpStream::connect(&forward).await.unwrap();
    round_trip(&mut forwarded, b"forwarded through the mesh").await;

    // SOCKS5: no authentication, CONNECT to the target's IPv4 address.
    let target: std::net::SocketAddrV4 = target.parse().unwrap();
    let mut socks = TcpStream::connect(&socks5).await.unwrap();
    socks.write_all(&[5, 1, 0]).await.unwrap();
    let mut method = [0u8; 2];
    socks.read_exact(&mut method).await.unwrap();
    assert_eq!(method, [5, 0]);
    let mut request = vec![5, 1, 0, 1];
    request.extend_from_slice(&target.ip().octets());
    request.extend_from_slice(&target.port().to_be_bytes());
    socks.write_all(&request).await.unwrap();
    let mut reply = [0u8; 10];
    socks.read_exact(&mut reply).await.unwrap();
    assert_eq!(reply[1], 0, "SOCKS5 success");
    round_trip(&mut socks, b"proxied through the mesh").await;

    // No route: a SOCKS5 error at once (network unreachable), not a direct dial.
    let mut socks = TcpStream::connect(&socks5).await.unwrap();
    socks.write_all(&[5, 1, 0]).await.unwrap();
    socks.read_exact(&mut method).await.unwrap();
    socks
        .write_all(&[5, 1, 0, 1, 192, 0, 2, 1, 0, 80])
        .await
        .unwrap();
    socks.read_exact(&mut reply).await.unwrap();
    assert_eq!(reply[1], 3, "network unreachable");

    // The exit stops: the ingress loses its route and its /health says so.
    exit.abort();
    let _ = exit.await;
    let (code, text) = wait_for("the ingress unhealthy", async || {
        get(&ingress_health, "/health")
            .await
            .filter(|(code, _)| *code == 503)
    })
    .await;
    assert_eq!(code, 503);
    assert!(text.starts_with("mesh: ingress without routes"), "{text}");
    ingress.abort();
}
