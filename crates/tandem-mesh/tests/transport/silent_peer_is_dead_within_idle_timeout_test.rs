use std::time::{Duration, Instant};

use crate::support::{
    addr_of, agent_tls, echo_target, endpoint, none_revoked, serve_exit, within, UdpRelay, SECRET,
};

#[tokio::test]
async fn a_silent_peer_is_dead_within_the_idle_timeout_and_its_flows_fail() {
    let target = echo_target().await;
    let a = endpoint(&agent_tls(SECRET, "ingress-1", none_revoked()));
    let b = endpoint(&agent_tls(SECRET, "exit-1", none_revoked()));
    let relay = UdpRelay::start(addr_of(&b)).await;

    let (dialed, accepted) = tokio::join!(a.dial(relay.addr), within(b.accept()));
    let a_to_b = dialed.expect("dial through the relay");
    serve_exit(accepted);

    let mut flow = a_to_b
        .open_flow(&target.to_string(), vec![])
        .await
        .expect("OPEN-OK");
    flow.send.write_all(b"ping").await.expect("write");
    let mut back = [0u8; 4];
    flow.recv.read_exact(&mut back).await.expect("read");
    assert_eq!(&back, b"ping");

    // B stops answering, as if killed with -9.
    relay.silence();
    let silent_since = Instant::now();
    let reason = tokio::time::timeout(Duration::from_secs(6), a_to_b.closed())
        .await
        .expect("the dead peer is noticed");
    let took = silent_since.elapsed();
    assert!(
        took < Duration::from_secs(5),
        "dead peer noticed after {took:?} ({reason})"
    );
    assert!(
        matches!(reason, quinn::ConnectionError::TimedOut),
        "{reason}"
    );

    // The open flow errors out instead of hanging, and so does a new open.
    let read = tokio::time::timeout(Duration::from_secs(1), flow.recv.read(&mut back))
        .await
        .expect("no hang");
    assert!(read.is_err(), "{read:?}");
    let open = tokio::time::timeout(
        Duration::from_secs(1),
        a_to_b.open_flow(&target.to_string(), vec![]),
    )
    .await
    .expect("no hang");
    assert!(open.is_err());
}
