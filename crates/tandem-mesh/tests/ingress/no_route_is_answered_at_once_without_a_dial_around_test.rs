use std::time::{Duration, Instant};

use tandem_mesh::ingress::Socks5Auth;

use crate::support::{ended, limits, socks5, socks_connect, EchoTarget, Ended, StandIn, Target};

#[tokio::test]
async fn no_route_is_network_unreachable_and_the_target_sees_nothing() {
    // The target is up and reachable from here: a proxy that dials around the mesh would
    // reach it. The stand-in has no route to it.
    let echo = EchoTarget::start().await;
    let dialer = StandIn::with(&[]);
    let (_ingress, proxy) = socks5(dialer.clone(), Socks5Auth::NoAuth, limits()).await;

    let started = Instant::now();
    let (mut client, code) = socks_connect(proxy, Target::Ip(echo.addr)).await;
    assert_eq!(code, 0x03, "network unreachable");
    // "At once": far below any timeout the ingress has (generous bound, not a benchmark).
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(ended(&mut client).await, Ended::Closed);

    let (_client, code) = socks_connect(proxy, Target::Domain("nowhere.internal", 80)).await;
    assert_eq!(code, 0x03);

    assert_eq!(dialer.dial_count(), 2, "asked the mesh, once each");
    assert_eq!(echo.accepted(), 0, "no direct connection to the target");
}
