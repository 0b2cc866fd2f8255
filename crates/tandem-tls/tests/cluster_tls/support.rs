//! Starting a TLS server and talking to it, shared by every behaviour.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::routing::get;
use axum::Router;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::ClientConfig;
use tandem_tls::{ClusterTls, DerivedCaSettings, TlsListener};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

pub const SECRET: &str = "integration-test-secret-raft-0001";
pub const OTHER_SECRET: &str = "a-different-secret-raft-000000002";

/// A node whose CA is derived from `secret`.
pub fn node(id: u64, secret: &str) -> ClusterTls {
    ClusterTls::from_secret(DerivedCaSettings::new(id, secret)).expect("cluster TLS from secret")
}

/// An axum app answering `GET /ping` on a `TlsListener`; stopped when dropped.
pub struct TestServer {
    pub addr: SocketAddr,
    task: JoinHandle<()>,
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

pub async fn serve(tls: &ClusterTls) -> TestServer {
    serve_with_handshake_timeout(tls, tandem_tls::DEFAULT_HANDSHAKE_TIMEOUT).await
}

pub async fn serve_with_handshake_timeout(tls: &ClusterTls, timeout: Duration) -> TestServer {
    let tcp = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = tcp.local_addr().expect("local addr");
    let listener = TlsListener::new(tcp, tls.acceptor()).with_handshake_timeout(timeout);
    let app = Router::new().route("/ping", get(|| async { "pong" }));
    let task = tokio::spawn(async move {
        axum::serve(listener, app).await.expect("serve");
    });
    TestServer { addr, task }
}

pub fn ping_url(addr: SocketAddr) -> String {
    format!("https://{addr}/ping")
}

/// `GET /ping` with a 5 s limit; the status, or the error as text.
pub async fn ping(
    client: &reqwest::Client,
    addr: SocketAddr,
) -> Result<reqwest::StatusCode, String> {
    let response = client
        .get(ping_url(addr))
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .map_err(|e| format!("{e:?}"))?;
    let status = response.status();
    let body = response.text().await.map_err(|e| format!("{e:?}"))?;
    assert_eq!(body, "pong");
    Ok(status)
}

/// A raw TLS connection with `config`, dialled by IP address (the verifier ignores the name).
pub async fn connect_raw(
    config: ClientConfig,
    addr: SocketAddr,
) -> std::io::Result<TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(addr).await?;
    let name = ServerName::from(addr.ip());
    TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
}

/// The end-entity certificate the server at `addr` presents to a client using `config`.
pub async fn presented_certificate(
    config: ClientConfig,
    addr: SocketAddr,
) -> CertificateDer<'static> {
    let tls = connect_raw(config, addr).await.expect("TLS handshake");
    let (_, connection) = tls.get_ref();
    connection
        .peer_certificates()
        .and_then(|chain| chain.first())
        .expect("server presented a certificate")
        .clone()
        .into_owned()
}

/// Asserts that a request failed, and for the TLS reason named (a rustls error or alert name).
pub fn assert_refused(result: Result<reqwest::StatusCode, String>, reason: &str) {
    match result {
        Ok(status) => panic!("expected a refusal ({reason}), got {status}"),
        Err(error) => assert!(error.contains(reason), "expected {reason} in: {error}"),
    }
}

/// Asserts that the server refused this client's certificate. In TLS 1.3 the server judges the
/// client certificate after the client has finished its side of the handshake, so the client
/// sees either the server's alert (`reason`) or, when its request raced the alert, a connection
/// the server closed before answering. Either way no answer came back.
pub fn assert_client_refused(result: Result<reqwest::StatusCode, String>, reason: &str) {
    match result {
        Ok(status) => panic!("expected a refusal ({reason}), got {status}"),
        Err(error) => assert!(
            error.contains(reason)
                || error.contains("connection was not ready")
                || error.contains("connection closed")
                || error.contains("IncompleteMessage")
                || error.contains("reset"),
            "expected {reason} or a connection closed by the server in: {error}"
        ),
    }
}
