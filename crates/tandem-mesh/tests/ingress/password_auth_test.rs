use fast_socks5::client::{Config, Socks5Stream};
use tandem_mesh::ingress::Socks5Auth;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::{
    ended, limits, round_trip, socks5, within, EchoTarget, Ended, Route, StandIn,
};

fn alice() -> Socks5Auth {
    Socks5Auth::password(|user: &str, password: &str| user == "alice" && password == "s3cret")
}

#[tokio::test]
async fn the_right_password_is_accepted() {
    let echo = EchoTarget::start().await;
    let dialer = StandIn::with(&[("db.internal", Route::To(echo.addr))]);
    let (_ingress, proxy) = socks5(dialer.clone(), alice(), limits()).await;

    let mut stream = Socks5Stream::connect_with_password(
        proxy,
        "db.internal".to_string(),
        5432,
        "alice".to_string(),
        "s3cret".to_string(),
        Config::default(),
    )
    .await
    .expect("authenticated connect");
    round_trip(&mut stream, b"select 1").await;
    assert_eq!(dialer.dial_count(), 1);
}

#[tokio::test]
async fn a_wrong_password_is_answered_0x01_and_closed_without_a_dial() {
    let echo = EchoTarget::start().await;
    let dialer = StandIn::with(&[("db.internal", Route::To(echo.addr))]);
    let (_ingress, proxy) = socks5(dialer.clone(), alice(), limits()).await;

    let mut client = TcpStream::connect(proxy).await.expect("connect");
    client.write_all(&[5, 1, 2]).await.expect("greeting");
    let mut choice = [0u8; 2];
    within("method", client.read_exact(&mut choice))
        .await
        .expect("method");
    assert_eq!(choice, [5, 2], "username/password chosen");

    client
        .write_all(b"\x01\x05alice\x05wrong")
        .await
        .expect("credentials");
    let mut status = [0u8; 2];
    within("status", client.read_exact(&mut status))
        .await
        .expect("status");
    assert_eq!(status, [1, 0x01]);
    assert_eq!(ended(&mut client).await, Ended::Closed);

    assert_eq!(dialer.dial_count(), 0);
    assert_eq!(echo.accepted(), 0);
}

#[tokio::test]
async fn a_client_offering_no_password_is_refused_when_one_is_required() {
    let dialer = StandIn::with(&[]);
    let (_ingress, proxy) = socks5(dialer.clone(), alice(), limits()).await;

    let mut client = TcpStream::connect(proxy).await.expect("connect");
    client.write_all(&[5, 1, 0]).await.expect("greeting");
    let mut choice = [0u8; 2];
    within("method", client.read_exact(&mut choice))
        .await
        .expect("method");
    assert_eq!(choice, [5, 0xff], "no acceptable method");
    assert_eq!(ended(&mut client).await, Ended::Closed);
    assert_eq!(dialer.dial_count(), 0);
}

#[tokio::test]
async fn the_client_library_reports_a_wrong_password_as_an_error() {
    let dialer = StandIn::with(&[]);
    let (_ingress, proxy) = socks5(dialer.clone(), alice(), limits()).await;

    let result = within(
        "client gives up",
        Socks5Stream::connect_with_password(
            proxy,
            "db.internal".to_string(),
            5432,
            "alice".to_string(),
            "guess".to_string(),
            Config::default(),
        ),
    )
    .await;
    assert!(result.is_err());
    assert_eq!(dialer.dial_count(), 0);
}
