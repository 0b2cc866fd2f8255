use std::time::Duration;

use tandem_mesh::ingress::{IngressLimits, Socks5Auth};
use tokio::net::TcpStream;

use crate::support::{
    ended, greeted, round_trip, socks5, socks_connect, EchoTarget, Route, StandIn, Target,
};

fn capped(max_connections: usize) -> IngressLimits {
    IngressLimits {
        max_connections,
        // Long, so idle clients are held by the cap, not ended by the timeout.
        handshake_timeout: Duration::from_secs(60),
        ..IngressLimits::default()
    }
}

#[tokio::test]
async fn at_the_cap_the_oldest_client_in_its_handshake_makes_room() {
    let echo = EchoTarget::start().await;
    let dialer = StandIn::with(&[("echo.internal", Route::To(echo.addr))]);
    let (_ingress, proxy) = socks5(dialer.clone(), Socks5Auth::NoAuth, capped(2)).await;

    // Two clients fill the cap: one idle mid-handshake, one carrying bytes.
    let mut idle = greeted(proxy).await;
    let (mut busy, code) = socks_connect(proxy, Target::Domain("echo.internal", 80)).await;
    assert_eq!(code, 0x00);

    // A third gets in, and the idle one is cut off for it.
    let (mut third, code) = socks_connect(proxy, Target::Domain("echo.internal", 80)).await;
    assert_eq!(code, 0x00);
    ended(&mut idle).await;
    round_trip(&mut third, b"in place of the idle one").await;

    // Both inside are carried; with nobody left in a handshake, a fourth is closed at once.
    let mut over = TcpStream::connect(proxy).await.expect("connect");
    ended(&mut over).await;
    round_trip(&mut busy, b"carried, never cut to make room").await;
    round_trip(&mut third, b"this one too").await;
}

#[tokio::test]
async fn a_flood_of_idle_clients_cannot_keep_a_real_one_out() {
    let echo = EchoTarget::start().await;
    let dialer = StandIn::with(&[("echo.internal", Route::To(echo.addr))]);
    let cap = 200;
    let (_ingress, proxy) = socks5(dialer.clone(), Socks5Auth::NoAuth, capped(cap)).await;

    // Twice the cap of clients that connect and say nothing.
    let mut idle = Vec::with_capacity(2 * cap);
    for _ in 0..2 * cap {
        idle.push(TcpStream::connect(proxy).await.expect("connect idle"));
    }

    let (mut real, code) = socks_connect(proxy, Target::Domain("echo.internal", 80)).await;
    assert_eq!(code, 0x00, "a real client is served despite the idle flood");
    round_trip(&mut real, b"through the flood").await;

    // The oldest idle clients were the ones cut off.
    ended(&mut idle[0]).await;
    assert_eq!(echo.accepted(), 1, "idle clients dialed nothing");
}
