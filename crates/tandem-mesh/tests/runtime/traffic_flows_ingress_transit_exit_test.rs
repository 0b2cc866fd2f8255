use std::time::Duration;

use crate::support::{addr, config, echo_through, eventually, exit, ingress, start, EchoTarget};

#[tokio::test]
async fn a_dial_through_the_ingress_reaches_the_target_via_transit_and_exit() {
    let target = EchoTarget::start().await;
    let exit = exit("exit-1", &[]);
    let transit = start("transit-1", config(&[addr(&exit)]));
    let ingress = ingress("ingress-1", &[addr(&transit)]);

    eventually(
        Duration::from_secs(5),
        "the ingress learns the route",
        || ingress.status().route_count == 1,
    )
    .await;
    echo_through(&ingress, target.addr.port())
        .await
        .expect("echo through the mesh");
    assert_eq!(target.connections(), 1);

    let status = ingress.status();
    let path: Vec<String> = status.routes[0]
        .route
        .path
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(path, ["exit-1", "transit-1"]);
    // Every agent can carry traffic in its role.
    assert_eq!(ingress.health(), Ok(()));
    assert_eq!(transit.health(), Ok(()));
    assert_eq!(exit.health(), Ok(()));
}
