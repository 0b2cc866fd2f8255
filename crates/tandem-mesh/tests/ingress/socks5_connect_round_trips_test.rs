use std::net::{Ipv6Addr, SocketAddr};

use fast_socks5::client::{Config, Socks5Stream};
use tandem_mesh::ingress::Socks5Auth;

use crate::support::{
    limits, round_trip, socks5, socks_connect, EchoTarget, Route, StandIn, Target,
};

#[tokio::test]
async fn connect_by_domain_passes_the_name_unresolved_and_carries_bytes() {
    let echo = EchoTarget::start().await;
    // A name no resolver knows: only the exit may resolve it.
    let dialer = StandIn::with(&[("echo.internal.example", Route::To(echo.addr))]);
    let (_ingress, proxy) = socks5(dialer.clone(), Socks5Auth::NoAuth, limits()).await;

    // A real client library, as an application would use.
    let mut stream = Socks5Stream::connect(
        proxy,
        "echo.internal.example".to_string(),
        7,
        Config::default(),
    )
    .await
    .expect("connect through the proxy");
    round_trip(&mut stream, b"hello through the mesh").await;

    assert_eq!(dialer.dials(), [("echo.internal.example".to_string(), 7)]);
    assert_eq!(echo.accepted(), 1);
}

#[tokio::test]
async fn connect_by_ipv4_carries_bytes() {
    let echo = EchoTarget::start().await;
    let dialer = StandIn::with(&[("10.1.2.3", Route::To(echo.addr))]);
    let (_ingress, proxy) = socks5(dialer.clone(), Socks5Auth::NoAuth, limits()).await;

    let target: SocketAddr = "10.1.2.3:5432".parse().expect("addr");
    let (mut client, code) = socks_connect(proxy, Target::Ip(target)).await;
    assert_eq!(code, 0x00);
    round_trip(&mut client, &[7u8; 100_000]).await;

    assert_eq!(dialer.dials(), [("10.1.2.3".to_string(), 5432)]);
}

#[tokio::test]
async fn connect_by_ipv6_carries_bytes() {
    let echo = EchoTarget::start().await;
    let dialer = StandIn::with(&[("fd00::1", Route::To(echo.addr))]);
    let (_ingress, proxy) = socks5(dialer.clone(), Socks5Auth::NoAuth, limits()).await;

    let ip: Ipv6Addr = "fd00::1".parse().expect("ip");
    let (mut client, code) = socks_connect(proxy, Target::Ip(SocketAddr::from((ip, 443)))).await;
    assert_eq!(code, 0x00);
    round_trip(&mut client, b"v6").await;

    // The dialer gets the address without brackets, as a host.
    assert_eq!(dialer.dials(), [("fd00::1".to_string(), 443)]);
}

#[tokio::test]
async fn many_clients_at_once_each_get_their_own_bytes() {
    let echo = EchoTarget::start().await;
    let dialer = StandIn::with(&[("echo.internal", Route::To(echo.addr))]);
    let (_ingress, proxy) = socks5(dialer.clone(), Socks5Auth::NoAuth, limits()).await;

    let clients = (0..16u8).map(|i| async move {
        let (mut client, code) = socks_connect(proxy, Target::Domain("echo.internal", 80)).await;
        assert_eq!(code, 0x00);
        round_trip(&mut client, &[i; 4096]).await;
    });
    futures_join_all(clients).await;
    assert_eq!(dialer.dial_count(), 16);
}

async fn futures_join_all<F: std::future::Future<Output = ()> + Send + 'static>(
    futures: impl Iterator<Item = F>,
) {
    let tasks: Vec<_> = futures.map(tokio::spawn).collect();
    for task in tasks {
        task.await.expect("client task");
    }
}
