use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::{
    assert_client_refused, assert_refused, node, ping, serve, serve_with_handshake_timeout,
    OTHER_SECRET, SECRET,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_without_a_certificate_is_refused() {
    let server = serve(&node(1, SECRET)).await;
    // Trusts any server, presents no certificate.
    let anonymous = reqwest::Client::builder()
        .tls_danger_accept_invalid_certs(true)
        .build()
        .expect("anonymous client");
    assert_client_refused(ping(&anonymous, server.addr).await, "CertificateRequired");

    let member = node(2, SECRET).https_client().expect("https client");
    assert_eq!(
        ping(&member, server.addr).await,
        Ok(reqwest::StatusCode::OK)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_of_another_secret_is_refused() {
    let server = serve(&node(1, SECRET)).await;
    // Its CA differs, so it refuses the server as well; accept any server to test the server side.
    let mut stranger_config = node(2, OTHER_SECRET).client_config();
    stranger_config
        .dangerous()
        .set_certificate_verifier(std::sync::Arc::new(AcceptAnyServer));
    let stranger = reqwest::Client::builder()
        .tls_backend_preconfigured(stranger_config)
        .build()
        .expect("stranger client");
    assert_client_refused(ping(&stranger, server.addr).await, "UnknownCA");

    let member = node(2, SECRET).https_client().expect("https client");
    assert_eq!(
        ping(&member, server.addr).await,
        Ok(reqwest::StatusCode::OK)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_of_another_secret_is_refused_by_the_client() {
    let server = serve(&node(1, OTHER_SECRET)).await;
    let member = node(2, SECRET).https_client().expect("https client");
    assert_refused(ping(&member, server.addr).await, "UnknownIssuer");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_http_and_garbage_are_dropped_and_serving_goes_on() {
    let server = serve(&node(1, SECRET)).await;

    let plain = reqwest::Client::new();
    let result = plain
        .get(format!("http://{}/ping", server.addr))
        .timeout(Duration::from_secs(5))
        .send()
        .await;
    assert!(result.is_err(), "{result:?}");

    let mut garbage = TcpStream::connect(server.addr).await.expect("connect");
    garbage
        .write_all(&[0xde; 300])
        .await
        .expect("write garbage");
    let mut buf = Vec::new();
    // The server answers with at most an alert, then closes.
    tokio::time::timeout(Duration::from_secs(5), garbage.read_to_end(&mut buf))
        .await
        .expect("server closes the connection")
        .ok();

    let member = node(2, SECRET).https_client().expect("https client");
    assert_eq!(
        ping(&member, server.addr).await,
        Ok(reqwest::StatusCode::OK)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_peer_neither_blocks_others_nor_stays_connected() {
    let timeout = Duration::from_millis(300);
    let server = serve_with_handshake_timeout(&node(1, SECRET), timeout).await;

    // Connects and never says a word.
    let mut silent = TcpStream::connect(server.addr).await.expect("connect");

    let member = node(2, SECRET).https_client().expect("https client");
    assert_eq!(
        ping(&member, server.addr).await,
        Ok(reqwest::StatusCode::OK)
    );

    let mut buf = [0u8; 16];
    let read = tokio::time::timeout(Duration::from_secs(5), silent.read(&mut buf))
        .await
        .expect("the server hangs up after the handshake timeout");
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
}

/// Accepts any server certificate: only to test what the server refuses.
#[derive(Debug)]
struct AcceptAnyServer;

impl rustls::client::danger::ServerCertVerifier for AcceptAnyServer {
    fn verify_server_cert(
        &self,
        _end_entity: &rustls::pki_types::CertificateDer<'_>,
        _intermediates: &[rustls::pki_types::CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &rustls::pki_types::CertificateDer<'_>,
        _dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
    }

    fn verify_tls13_signature(
        &self,
        _message: &[u8],
        _cert: &rustls::pki_types::CertificateDer<'_>,
        _dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        rustls::crypto::aws_lc_rs::default_provider()
            .signature_verification_algorithms
            .supported_schemes()
    }
}
