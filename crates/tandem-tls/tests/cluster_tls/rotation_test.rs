use crate::support::{node, ping, presented_certificate, serve, SECRET};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_swaps_the_certificate_and_clients_keep_working() {
    let server_node = node(1, SECRET);
    let client_node = node(2, SECRET);
    let server = serve(&server_node).await;
    let pooled = client_node.https_client().expect("https client");
    let unpooled = client_node
        .https_client_builder()
        .pool_max_idle_per_host(0)
        .build()
        .expect("unpooled client");
    assert_eq!(
        ping(&pooled, server.addr).await,
        Ok(reqwest::StatusCode::OK)
    );

    let before = presented_certificate(client_node.client_config(), server.addr).await;
    server_node.rotate().expect("rotate server");
    let after = presented_certificate(client_node.client_config(), server.addr).await;
    assert_ne!(before, after, "new handshakes get the new certificate");
    assert_eq!(after, server_node.node_certificate_chain()[0]);

    assert_eq!(
        ping(&pooled, server.addr).await,
        Ok(reqwest::StatusCode::OK)
    );
    assert_eq!(
        ping(&unpooled, server.addr).await,
        Ok(reqwest::StatusCode::OK)
    );

    // The client side rotates too; clients built before present the new certificate.
    let client_before = client_node.node_certificate_chain();
    client_node.rotate().expect("rotate client");
    assert_ne!(client_before, client_node.node_certificate_chain());
    assert_eq!(
        ping(&unpooled, server.addr).await,
        Ok(reqwest::StatusCode::OK)
    );
    assert_eq!(
        ping(&pooled, server.addr).await,
        Ok(reqwest::StatusCode::OK)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spawned_rotation_keeps_running_until_aborted() {
    let server_node = node(1, SECRET);
    let rotation = server_node.spawn_rotation();
    let server = serve(&server_node).await;
    let client = node(2, SECRET).https_client().expect("https client");
    assert_eq!(
        ping(&client, server.addr).await,
        Ok(reqwest::StatusCode::OK)
    );
    assert!(!rotation.is_finished());
    rotation.abort();
}
