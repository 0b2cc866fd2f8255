use std::time::Duration;

use tandem_mesh::ingress::{IngressLimits, Socks5Auth};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::{
    ended, greeted, round_trip, socks5, socks_connect, within, EchoTarget, Route, StandIn, Target,
};

#[tokio::test]
async fn connections_over_the_cap_are_closed_at_once_and_room_is_given_back() {
    let echo = EchoTarget::start().await;
    let dialer = StandIn::with(&[("echo.internal", Route::To(echo.addr))]);
    let capped = IngressLimits {
        max_connections: 2,
        // Long, so the idle ones are held by the cap, not by the timeout.
        handshake_timeout: Duration::from_secs(60),
        ..IngressLimits::default()
    };
    let (_ingress, proxy) = socks5(dialer.clone(), Socks5Auth::NoAuth, capped).await;

    // Two clients fill the cap: one idle mid-handshake, one carrying bytes.
    let idle = greeted(proxy).await;
    let (mut busy, code) = socks_connect(proxy, Target::Domain("echo.internal", 80)).await;
    assert_eq!(code, 0x00);

    // The third is closed at once, without a word.
    let mut over = TcpStream::connect(proxy).await.expect("connect");
    ended(&mut over).await;

    // Those inside are unaffected.
    round_trip(&mut busy, b"inside the cap").await;

    // When one leaves, a new client gets in (once the server has seen it leave).
    drop(idle);
    within("a place frees up", async {
        loop {
            let mut client = TcpStream::connect(proxy).await.expect("connect");
            if client.write_all(&[5, 1, 0]).await.is_ok() {
                let mut choice = [0u8; 2];
                if client.read_exact(&mut choice).await.is_ok() {
                    assert_eq!(choice, [5, 0]);
                    return;
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
}
