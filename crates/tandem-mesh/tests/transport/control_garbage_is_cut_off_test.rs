use std::sync::Arc;
use std::time::Duration;

use quinn::crypto::rustls::QuicClientConfig;
use tandem_mesh::transport::frames::CONTROL_GREETING;
use tandem_mesh::transport::{ControlError, CLOSE_GARBAGE};
use tandem_tls::ANY_AGENT_SERVER_NAME;

use crate::support::{addr_of, agent_tls, endpoint, none_revoked, within, SECRET};

#[tokio::test]
async fn a_peer_sending_garbage_on_the_control_stream_is_disconnected() {
    let b = endpoint(&agent_tls(SECRET, "transit-1", none_revoked()));
    // A valid agent with a hand-made QUIC client, to say what no MeshEndpoint would.
    let rogue_tls = agent_tls(SECRET, "rogue", none_revoked());
    let crypto = QuicClientConfig::try_from(rogue_tls.client_config()).expect("quic tls");
    let mut raw = quinn::Endpoint::client("127.0.0.1:0".parse().expect("addr")).expect("client");
    raw.set_default_client_config(quinn::ClientConfig::new(Arc::new(crypto)));

    let rogue = async {
        let connection = raw
            .connect(addr_of(&b), ANY_AGENT_SERVER_NAME)
            .expect("connect")
            .await
            .expect("handshake");
        let (mut send, mut recv) = connection.open_bi().await.expect("control stream");
        send.write_all(CONTROL_GREETING).await.expect("greet");
        let mut greeting = [0u8; 8];
        recv.read_exact(&mut greeting).await.expect("greeting back");
        (connection, send)
    };
    let ((connection, mut send), accepted) = tokio::join!(rogue, within(b.accept()));

    // A length prefix, then bytes that are no route message.
    send.write_all(&[0, 0, 0, 5]).await.expect("write");
    send.write_all(b"hello").await.expect("write");
    let err = tokio::time::timeout(Duration::from_secs(5), accepted.recv())
        .await
        .expect("refused in time")
        .expect_err("garbage");
    assert!(matches!(err, ControlError::Garbage { .. }), "{err}");

    let reason = tokio::time::timeout(Duration::from_secs(5), connection.closed())
        .await
        .expect("cut off in time");
    match reason {
        quinn::ConnectionError::ApplicationClosed(close) => {
            assert_eq!(close.error_code, CLOSE_GARBAGE)
        }
        other => panic!("expected an application close, got {other}"),
    }
}
