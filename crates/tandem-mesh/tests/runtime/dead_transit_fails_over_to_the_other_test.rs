use std::time::Duration;

use tokio::time::Instant;

use crate::support::{
    addr, config, echo_through, eventually, exit, ingress, selected_next_hop, start, EchoTarget,
};

#[tokio::test]
async fn a_new_dial_goes_through_the_other_transit_once_the_first_is_gone() {
    let target = EchoTarget::start().await;
    let exit = exit("exit-1", &[]);
    let transit_1 = start("transit-1", config(&[addr(&exit)]));
    let transit_2 = start("transit-2", config(&[addr(&exit)]));
    let ingress = ingress("ingress-1", &[addr(&transit_1), addr(&transit_2)]);

    eventually(
        Duration::from_secs(5),
        "a path through each transit",
        || ingress.status().routes.len() == 2,
    )
    .await;
    // Equal paths: the lowest next hop wins.
    assert_eq!(selected_next_hop(&ingress).as_deref(), Some("transit-1"));
    echo_through(&ingress, target.addr.port())
        .await
        .expect("echo via transit-1");

    drop(transit_1);
    eventually(
        Duration::from_secs(5),
        "the ingress notices transit-1 is gone",
        || ingress.status().peer_count == 1,
    )
    .await;
    let noticed = Instant::now();
    loop {
        match echo_through(&ingress, target.addr.port()).await {
            Ok(()) => break,
            Err(e) => assert!(
                noticed.elapsed() < Duration::from_secs(3),
                "no dial succeeded after the failure: {e}"
            ),
        }
    }
    let took = noticed.elapsed();
    assert!(took < Duration::from_secs(1), "failover took {took:?}");
    assert_eq!(selected_next_hop(&ingress).as_deref(), Some("transit-2"));
    assert_eq!(target.connections(), 2);
    drop(transit_2);
}
