use std::time::Duration;

use tokio::time::Instant;

use crate::support::{
    addr, config, echo_through, eventually, exit, ingress, selected_next_hop, start, EchoTarget,
    UdpRelay,
};

/// A transit that goes silent (killed with -9: no close) is found out by the first open that
/// is not acknowledged, long before the 3 s dead-peer time: that dial takes the other transit.
#[tokio::test]
async fn an_unacknowledged_open_takes_the_other_transit_before_the_peer_is_dead() {
    let target = EchoTarget::start().await;
    let exit = exit("exit-1", &[]);
    let transit_1 = start("transit-1", config(&[addr(&exit)]));
    let transit_2 = start("transit-2", config(&[addr(&exit)]));
    let relay = UdpRelay::start(addr(&transit_1)).await;
    let ingress = ingress("ingress-1", &[relay.addr, addr(&transit_2)]);

    eventually(
        Duration::from_secs(5),
        "a path through each transit",
        || ingress.status().routes.len() == 2,
    )
    .await;
    assert_eq!(selected_next_hop(&ingress).as_deref(), Some("transit-1"));
    echo_through(&ingress, target.addr.port())
        .await
        .expect("echo via transit-1");

    relay.silence();
    let silenced = Instant::now();
    echo_through(&ingress, target.addr.port())
        .await
        .expect("the dial takes transit-2 after the open timeout");
    let took = silenced.elapsed();
    assert!(took < Duration::from_secs(2), "the dial took {took:?}");
    // transit-1 is suspected now (its connection is not dead yet): the choice moved at once.
    assert_eq!(selected_next_hop(&ingress).as_deref(), Some("transit-2"));
    assert_eq!(ingress.status().peer_count, 2, "transit-1 is not dead yet");
    let again = Instant::now();
    echo_through(&ingress, target.addr.port())
        .await
        .expect("echo via transit-2");
    assert!(again.elapsed() < Duration::from_millis(300));
    drop(transit_1);
}
