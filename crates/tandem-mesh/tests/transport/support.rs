//! Agents with certificates from an agent CA, endpoints on 127.0.0.1, a TCP echo target and a
//! UDP relay that can go silent.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use rcgen::{KeyPair, PKCS_ECDSA_P256_SHA256};
use tandem_mesh::transport::{MeshEndpoint, PeerConnection, TransportSettings};
use tandem_tls::{AgentCa, AgentTls, RevocationCheck};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

pub const SECRET: &str = "mesh-transport-test-secret-0123";
pub const OTHER_SECRET: &str = "a-different-cluster-secret-4567";

/// Nothing is revoked.
pub fn none_revoked() -> Arc<dyn RevocationCheck> {
    Arc::new(|_: &str| false)
}

pub fn revoked(names: &[&str]) -> Arc<dyn RevocationCheck> {
    let names: BTreeSet<String> = names.iter().map(|n| n.to_string()).collect();
    Arc::new(move |name: &str| names.contains(name))
}

/// An agent's TLS identity, as its enrolment credential would give it.
pub fn agent_tls(secret: &str, name: &str, revocations: Arc<dyn RevocationCheck>) -> AgentTls {
    let ca = AgentCa::from_secret(secret).expect("agent ca");
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
        revocations,
    )
    .expect("agent tls")
}

pub fn endpoint(tls: &AgentTls) -> MeshEndpoint {
    MeshEndpoint::bind(
        "127.0.0.1:0".parse().expect("addr"),
        tls,
        TransportSettings::default(),
    )
    .expect("bind")
}

pub fn addr_of(endpoint: &MeshEndpoint) -> SocketAddr {
    endpoint.local_addr().expect("local addr")
}

/// Two agents of one cluster, `a` dialing `b`: returns both endpoints and both ends.
pub async fn peered(
    a: &str,
    b: &str,
) -> (MeshEndpoint, MeshEndpoint, PeerConnection, PeerConnection) {
    let ea = endpoint(&agent_tls(SECRET, a, none_revoked()));
    let eb = endpoint(&agent_tls(SECRET, b, none_revoked()));
    let (dialed, accepted) = tokio::join!(ea.dial(addr_of(&eb)), within(eb.accept()));
    let dialed = dialed.expect("dial");
    (ea, eb, dialed, accepted)
}

/// Waits for `future` with a generous deadline instead of a fixed sleep.
pub async fn within<T>(future: impl std::future::Future<Output = Option<T>>) -> T {
    tokio::time::timeout(Duration::from_secs(5), future)
        .await
        .expect("timed out")
        .expect("ended")
}

/// A TCP server that echoes every connection's bytes back.
pub async fn echo_target() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind echo");
    let addr = listener.local_addr().expect("echo addr");
    tokio::spawn(async move {
        while let Ok((mut tcp, _)) = listener.accept().await {
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
    addr
}

/// Serves flows on `conn` as a stand-in exit: dials each destination over TCP, answers OPEN-OK
/// or OPEN-ERR, then copies bytes both ways.
pub fn serve_exit(conn: PeerConnection) {
    tokio::spawn(async move {
        while let Ok(incoming) = conn.accept_flow().await {
            tokio::spawn(async move {
                let Ok(request) = incoming.read_request().await else {
                    return;
                };
                match tokio::net::TcpStream::connect(&request.open.dest).await {
                    Ok(mut tcp) => {
                        if let Ok(flow) = request.accept().await {
                            let mut io = flow.into_io();
                            let _ = tokio::io::copy_bidirectional(&mut io, &mut tcp).await;
                        }
                    }
                    Err(e) => {
                        let kind = tandem_mesh::transport::OpenErrorKind::from_io(&e);
                        let _ = request.refuse(kind, &e.to_string()).await;
                    }
                }
            });
        }
    });
}

pub use crate::udp_relay::UdpRelay;
