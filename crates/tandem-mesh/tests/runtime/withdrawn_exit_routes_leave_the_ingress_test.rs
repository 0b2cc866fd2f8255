use std::time::Duration;

use crate::support::{addr, eventually, exit, ingress};

/// An exit that withdraws its routes (as its upstream probe does while it fails) takes them
/// from its peers at once, well before any TTL, and is unhealthy with the reason; restored,
/// they come back.
#[tokio::test]
async fn withdrawn_exit_routes_leave_the_ingress_and_come_back() {
    let exit = exit("exit-1", &[]);
    let ingress = ingress("ingress-1", &[addr(&exit)]);
    eventually(
        Duration::from_secs(5),
        "the ingress learns the route",
        || ingress.status().route_count == 1,
    )
    .await;
    assert_eq!(exit.health(), Ok(()));

    assert!(exit.withdraw_exits("probe tcp:10.0.0.1:5432 critical: refused"));
    assert!(
        !exit.withdraw_exits("probe tcp:10.0.0.1:5432 critical: timed out"),
        "withdrawn once; the reason is the latest"
    );
    eventually(
        Duration::from_secs(2),
        "the ingress drops the withdrawn route",
        || ingress.status().route_count == 0,
    )
    .await;
    let why = exit.health().expect_err("withdrawn: unhealthy");
    assert!(why.contains("exit routes withdrawn"), "{why}");
    assert_eq!(
        exit.status().exits_withdrawn.as_deref(),
        Some("probe tcp:10.0.0.1:5432 critical: timed out")
    );

    assert!(exit.restore_exits());
    assert!(!exit.restore_exits(), "restored once");
    eventually(
        Duration::from_secs(2),
        "the ingress learns the route again",
        || ingress.status().route_count == 1,
    )
    .await;
    assert_eq!(exit.health(), Ok(()));
    assert_eq!(exit.status().exits_withdrawn, None);
}
