use tandem_mesh::transport::{FlowError, OpenErrorKind};

use crate::support::{peered, serve_exit};

#[tokio::test]
async fn an_exit_that_cannot_dial_answers_open_err_at_once() {
    // A port that was just free: nothing listens there.
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("addr")
    };
    let (_ea, _eb, a_to_b, b_from_a) = peered("ingress-1", "exit-1").await;
    serve_exit(b_from_a);

    let err = a_to_b
        .open_flow(&closed.to_string(), vec![])
        .await
        .expect_err("OPEN-ERR");
    match err {
        FlowError::Refused { kind, peer, .. } => {
            assert_eq!(kind, OpenErrorKind::ConnectionRefused);
            assert_eq!(peer.as_str(), "exit-1");
        }
        other => panic!("expected a refusal, got {other}"),
    }
    // The connection carries on.
    assert!(a_to_b.close_reason().is_none());
}
