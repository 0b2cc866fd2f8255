use tandem_mesh::ingress::Socks5Auth;
use tokio::net::TcpStream;

use crate::support::{
    ended, forward, limits, round_trip, socks5, socks_connect, EchoTarget, Ended, Route, StandIn,
    Target,
};

#[tokio::test]
async fn a_socks5_client_is_reset_when_its_mesh_stream_fails() {
    let echo = EchoTarget::start().await;
    let dialer = StandIn::with(&[("echo.internal", Route::Breakable(echo.addr))]);
    let (_ingress, proxy) = socks5(dialer.clone(), Socks5Auth::NoAuth, limits()).await;

    let (mut client, code) = socks_connect(proxy, Target::Domain("echo.internal", 80)).await;
    assert_eq!(code, 0x00);
    round_trip(&mut client, b"before the path dies").await;

    dialer.break_streams();
    // Reset, so the client knows the transfer failed; and not hung.
    assert_eq!(ended(&mut client).await, Ended::Reset);
    // The other side of the stream is closed too.
    echo.one_ended().await;
}

#[tokio::test]
async fn a_forwarded_client_is_reset_when_its_mesh_stream_fails() {
    let echo = EchoTarget::start().await;
    let dialer = StandIn::with(&[("db.internal", Route::Breakable(echo.addr))]);
    let (_ingress, listen) = forward(dialer.clone(), "db.internal:5432").await;

    let mut client = TcpStream::connect(listen).await.expect("connect");
    round_trip(&mut client, b"query").await;

    dialer.break_streams();
    assert_eq!(ended(&mut client).await, Ended::Reset);
    echo.one_ended().await;
}
