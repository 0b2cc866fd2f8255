use std::time::Duration;

use tandem_mesh::transport::PeeringError;

use crate::support::{addr_of, agent_tls, endpoint, none_revoked, revoked, SECRET};

#[tokio::test]
async fn a_revoked_agent_is_refused_in_the_handshake_both_ways() {
    let a = endpoint(&agent_tls(SECRET, "a", revoked(&["gone"])));
    let gone = endpoint(&agent_tls(SECRET, "gone", none_revoked()));

    let err = gone.dial(addr_of(&a)).await.expect_err("refused");
    assert!(matches!(err, PeeringError::Handshake { .. }), "{err}");
    let err = a.dial(addr_of(&gone)).await.expect_err("refused");
    assert!(matches!(err, PeeringError::Handshake { .. }), "{err}");
    assert!(tokio::time::timeout(Duration::from_millis(300), a.accept())
        .await
        .is_err());
}
