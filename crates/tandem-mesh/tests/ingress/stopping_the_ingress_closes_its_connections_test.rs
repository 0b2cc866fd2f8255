use tandem_mesh::ingress::Socks5Auth;
use tokio::net::TcpStream;

use crate::support::{
    ended, limits, round_trip, socks5, socks_connect, EchoTarget, Route, StandIn, Target,
};

#[tokio::test]
async fn dropping_the_ingress_closes_its_listener_and_its_connections() {
    let echo = EchoTarget::start().await;
    let dialer = StandIn::with(&[("echo.internal", Route::To(echo.addr))]);
    let (ingress, proxy) = socks5(dialer.clone(), Socks5Auth::NoAuth, limits()).await;

    let (mut client, code) = socks_connect(proxy, Target::Domain("echo.internal", 80)).await;
    assert_eq!(code, 0x00);
    round_trip(&mut client, b"hello").await;

    ingress.stop();

    ended(&mut client).await;
    echo.one_ended().await;
    assert!(TcpStream::connect(proxy).await.is_err(), "listener closed");
}
