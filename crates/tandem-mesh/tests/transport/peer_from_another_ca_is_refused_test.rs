use std::time::Duration;

use tandem_mesh::transport::PeeringError;

use crate::support::{addr_of, agent_tls, endpoint, none_revoked, OTHER_SECRET, SECRET};

#[tokio::test]
async fn an_agent_of_another_cluster_is_refused_in_the_handshake_both_ways() {
    let ours = endpoint(&agent_tls(SECRET, "a", none_revoked()));
    let stranger = endpoint(&agent_tls(OTHER_SECRET, "stranger", none_revoked()));

    let err = ours.dial(addr_of(&stranger)).await.expect_err("refused");
    assert!(matches!(err, PeeringError::Handshake { .. }), "{err}");
    let err = stranger.dial(addr_of(&ours)).await.expect_err("refused");
    assert!(matches!(err, PeeringError::Handshake { .. }), "{err}");

    // Neither side ever hands the other to the runtime.
    let quiet = Duration::from_millis(300);
    assert!(tokio::time::timeout(quiet, ours.accept()).await.is_err());
    assert!(tokio::time::timeout(quiet, stranger.accept())
        .await
        .is_err());
}
