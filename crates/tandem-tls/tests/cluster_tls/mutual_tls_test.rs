use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::{connect_raw, node, ping, presented_certificate, serve, SECRET};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_sharing_a_secret_talk_over_mutual_tls() {
    let server_node = node(1, SECRET);
    let client_node = node(2, SECRET);
    let server = serve(&server_node).await;

    let client = client_node.https_client().expect("https client");
    assert_eq!(
        ping(&client, server.addr).await,
        Ok(reqwest::StatusCode::OK)
    );

    let presented = presented_certificate(client_node.client_config(), server.addr).await;
    assert_eq!(presented, server_node.node_certificate_chain()[0]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_refuses_plain_http_urls() {
    let client = node(2, SECRET).https_client().expect("https client");
    let result = client.get("http://127.0.0.1:9/ping").send().await;
    assert!(result.is_err(), "{result:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_listener_speaks_http2_when_a_peer_asks_for_it() {
    let server_node = node(1, SECRET);
    let server = serve(&server_node).await;
    let mut config = node(2, SECRET).client_config();
    config.alpn_protocols = vec![b"h2".to_vec()];

    let mut tls = connect_raw(config, server.addr).await.expect("handshake");
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    // Client preface and an empty SETTINGS frame; an HTTP/2 server answers with its SETTINGS.
    tls.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0")
        .await
        .expect("write preface");
    let mut frame_header = [0u8; 9];
    tokio::time::timeout(Duration::from_secs(5), tls.read_exact(&mut frame_header))
        .await
        .expect("server answers in time")
        .expect("read frame header");
    assert_eq!(
        frame_header[3], 0x04,
        "first frame is SETTINGS: {frame_header:?}"
    );
}
