//! Runtimes with certificates from one agent CA, a TCP echo target that counts its
//! connections, and waits with generous deadlines instead of fixed sleeps.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use rcgen::{KeyPair, PKCS_ECDSA_P256_SHA256};
use tandem_mesh::runtime::{MeshConfig, MeshRuntime};
use tandem_mesh::{AgentId, MeshDialer};
use tandem_tls::{AgentCa, AgentTls};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

const SECRET: &str = "mesh-runtime-test-secret-0123456";

pub fn agent_tls(name: &str) -> AgentTls {
    let ca = AgentCa::from_secret(SECRET).expect("agent ca");
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).expect("key");
    let point = key.public_key_raw();
    let cert = ca
        .issue(
            name,
            "mesh",
            &point[1..33],
            &point[33..65],
            SystemTime::now(),
        )
        .expect("issue");
    AgentTls::new(
        &cert,
        &key.serialize_der(),
        &ca.certificate_pem(),
        Arc::new(|_: &str| false),
    )
    .expect("agent tls")
}

/// A config on a free 127.0.0.1 port dialing `peers`, reconnecting quickly.
pub fn config(peers: &[SocketAddr]) -> MeshConfig {
    let mut config = MeshConfig::new("127.0.0.1:0".parse().expect("addr"));
    config.peers = peers.iter().map(ToString::to_string).collect();
    config.reconnect.initial_delay = Duration::from_millis(100);
    config.reconnect.max_delay = Duration::from_millis(500);
    config
}

pub fn start(name: &str, config: MeshConfig) -> MeshRuntime {
    MeshRuntime::start(config, agent_tls(name), AgentId::new(name).expect("name")).expect("start")
}

/// An exit for 127.0.0.1/32.
pub fn exit(name: &str, peers: &[SocketAddr]) -> MeshRuntime {
    let mut config = config(peers);
    config.exit_routes = vec!["127.0.0.1/32".parse().expect("net")];
    start(name, config)
}

/// An ingress (its health needs a route) dialing `peers`.
pub fn ingress(name: &str, peers: &[SocketAddr]) -> MeshRuntime {
    let mut config = config(peers);
    config.ingress = true;
    start(name, config)
}

pub fn addr(runtime: &MeshRuntime) -> SocketAddr {
    runtime.local_addr().expect("local addr")
}

/// Waits until `condition` holds, polling; panics after `limit`.
pub async fn eventually(limit: Duration, what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + limit;
    while !condition() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "not within {limit:?}: {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The next hop of the path `runtime` chose for 127.0.0.1.
pub fn selected_next_hop(runtime: &MeshRuntime) -> Option<String> {
    runtime
        .status()
        .routes
        .iter()
        .find(|v| v.state == tandem_mesh::PathState::Selected)
        .map(|v| v.route.next_hop.to_string())
}

/// A TCP server that echoes every connection's bytes back and counts its connections.
pub struct EchoTarget {
    pub addr: SocketAddr,
    pub connections: Arc<AtomicUsize>,
}

impl EchoTarget {
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind echo");
        let addr = listener.local_addr().expect("echo addr");
        let connections = Arc::new(AtomicUsize::new(0));
        let counted = connections.clone();
        tokio::spawn(async move {
            while let Ok((mut tcp, _)) = listener.accept().await {
                counted.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 16 * 1024];
                    loop {
                        match tcp.read(&mut buf).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => {
                                if tcp.write_all(&buf[..n]).await.is_err() {
                                    break;
                                }
                            }
                        }
                    }
                });
            }
        });
        Self { addr, connections }
    }

    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
}

/// An echo target behind `exit-1`, reached from `ingress-1` through `transit-1`.
pub struct Line {
    pub target: EchoTarget,
    pub exit: MeshRuntime,
    pub transit: MeshRuntime,
    pub ingress: MeshRuntime,
}

/// Starts a [`Line`] and waits until the ingress knows the route to the exit.
pub async fn line_through_one_transit() -> Line {
    let target = EchoTarget::start().await;
    let exit = exit("exit-1", &[]);
    let transit = start("transit-1", config(&[addr(&exit)]));
    let ingress = ingress("ingress-1", &[addr(&transit)]);
    eventually(
        Duration::from_secs(5),
        "the ingress learns the route",
        || ingress.status().route_count == 1,
    )
    .await;
    Line {
        target,
        exit,
        transit,
        ingress,
    }
}

/// Dials `port` on 127.0.0.1 through `dialer` and checks that bytes come back.
pub async fn echo_through(dialer: &dyn MeshDialer, port: u16) -> Result<(), String> {
    let mut stream = dialer
        .dial("127.0.0.1", port)
        .await
        .map_err(|e| e.to_string())?;
    let message = b"through the mesh";
    stream.write_all(message).await.map_err(|e| e.to_string())?;
    let mut back = [0u8; 16];
    tokio::time::timeout(Duration::from_secs(5), stream.read_exact(&mut back))
        .await
        .map_err(|_| "no echo".to_string())?
        .map_err(|e| e.to_string())?;
    assert_eq!(&back, message);
    stream.shutdown().await.map_err(|e| e.to_string())?;
    Ok(())
}

pub use crate::udp_relay::UdpRelay;
