use crate::support::{echo_through, line_through_one_transit, Line};

#[tokio::test]
async fn a_dial_through_the_ingress_reaches_the_target_via_transit_and_exit() {
    let Line {
        target,
        exit,
        transit,
        ingress,
    } = line_through_one_transit().await;
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
