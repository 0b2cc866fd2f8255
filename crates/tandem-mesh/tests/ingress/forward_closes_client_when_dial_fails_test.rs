use tandem_mesh::transport::OpenErrorKind;
use tokio::net::TcpStream;

use crate::support::{ended, forward, EchoTarget, Ended, Route, StandIn};

#[tokio::test]
async fn a_forward_with_no_route_resets_the_client_at_once() {
    let echo = EchoTarget::start().await;
    let dialer = StandIn::with(&[]);
    let (_ingress, listen) = forward(dialer.clone(), "db.internal:5432").await;

    let mut client = TcpStream::connect(listen).await.expect("connect");
    assert_eq!(ended(&mut client).await, Ended::Reset);
    assert_eq!(dialer.dial_count(), 1);
    assert_eq!(echo.accepted(), 0, "no direct connection");
}

#[tokio::test]
async fn a_forward_whose_exit_is_refused_resets_the_client() {
    let dialer = StandIn::with(&[(
        "db.internal",
        Route::Refuse(OpenErrorKind::ConnectionRefused),
    )]);
    let (_ingress, listen) = forward(dialer.clone(), "db.internal:5432").await;

    let mut client = TcpStream::connect(listen).await.expect("connect");
    assert_eq!(ended(&mut client).await, Ended::Reset);
}
