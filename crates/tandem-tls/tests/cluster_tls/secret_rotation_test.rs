//! Moving a cluster from secret OLD to NEW one node at a time: first every node trusts both
//! (signing with OLD), then nodes switch to signing with NEW while still trusting OLD, then OLD
//! is dropped.

use tandem_tls::{ClusterTls, DerivedCaSettings};

use crate::support::{assert_client_refused, assert_refused, node, ping, serve};

const OLD: &str = "the-old-secret-raft-000000000001";
const NEW: &str = "the-new-secret-raft-000000000002";

fn node_with_second_secret(id: u64, secret: &str, also_trusted: &str) -> ClusterTls {
    let mut settings = DerivedCaSettings::new(id, secret);
    settings.also_trusted_secret = Some(also_trusted.to_string());
    ClusterTls::from_secret(settings).expect("cluster TLS with two secrets")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_of_the_previous_secret_is_accepted_while_it_is_trusted() {
    // A node still signing with OLD (and already trusting NEW, as in the first step).
    let old_node = node_with_second_secret(2, OLD, NEW);
    let client = old_node.https_client().expect("https client");

    let moved = serve(&node_with_second_secret(1, NEW, OLD)).await;
    assert_eq!(ping(&client, moved.addr).await, Ok(reqwest::StatusCode::OK));

    let finished = serve(&node(1, NEW)).await;
    assert_client_refused(ping(&client, finished.addr).await, "UnknownCA");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_on_either_side_of_the_move_talk_both_ways() {
    let old_node = node_with_second_secret(1, OLD, NEW);
    let new_node = node_with_second_secret(2, NEW, OLD);
    let old_server = serve(&old_node).await;
    let new_server = serve(&new_node).await;

    let from_old = old_node.https_client().expect("client");
    let from_new = new_node.https_client().expect("client");
    assert_eq!(
        ping(&from_old, new_server.addr).await,
        Ok(reqwest::StatusCode::OK)
    );
    assert_eq!(
        ping(&from_new, old_server.addr).await,
        Ok(reqwest::StatusCode::OK)
    );

    // A node that only knows OLD cannot verify a server that signs with NEW.
    let stale = node(3, OLD).https_client().expect("client");
    assert_refused(ping(&stale, new_server.addr).await, "UnknownIssuer");
}
