use tandem_mesh::ingress::Socks5Auth;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use crate::support::{
    ended, limits, round_trip, socks5, socks_connect, EchoTarget, Route, StandIn, Target,
};

/// Sends `bytes` (then, if `eof`, ends the write half) and waits for the server to close.
async fn cut_off(proxy: std::net::SocketAddr, bytes: &[u8], eof: bool) {
    let mut client = TcpStream::connect(proxy).await.expect("connect");
    client.write_all(bytes).await.expect("garbage");
    if eof {
        client.shutdown().await.expect("shutdown");
    }
    // Closed or reset, whichever: not served, not hung.
    ended(&mut client).await;
}

#[tokio::test]
async fn garbage_closes_that_connection_and_others_are_still_served() {
    let echo = EchoTarget::start().await;
    let dialer = StandIn::with(&[("echo.internal", Route::To(echo.addr))]);
    let (_ingress, proxy) = socks5(dialer.clone(), Socks5Auth::NoAuth, limits()).await;

    // SOCKS4, an HTTP request, a greeting cut short, a request cut short.
    cut_off(proxy, &[4, 1, 0, 80, 127, 0, 0, 1, 0], false).await;
    cut_off(proxy, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", false).await;
    cut_off(proxy, &[5, 200, 0, 1], true).await;
    cut_off(proxy, &[5, 1, 0, 5, 1, 0, 3, 50, b'a', b'b'], true).await;
    // A request with a wrong version after a good greeting.
    cut_off(proxy, &[5, 1, 0, 4, 1, 0, 1, 127, 0, 0, 1, 0, 80], false).await;
    // An unknown address type.
    cut_off(proxy, &[5, 1, 0, 5, 1, 0, 7, 1, 2, 3, 4, 0, 80], false).await;
    // Binary noise.
    let noise: Vec<u8> = (0..=255u8).rev().collect();
    cut_off(proxy, &noise, false).await;

    assert_eq!(dialer.dial_count(), 0);

    let (mut client, code) = socks_connect(proxy, Target::Domain("echo.internal", 80)).await;
    assert_eq!(code, 0x00);
    round_trip(&mut client, b"still serving").await;
}
