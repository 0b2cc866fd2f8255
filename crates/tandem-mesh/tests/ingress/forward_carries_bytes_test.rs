use tokio::net::TcpStream;

use crate::support::{forward, round_trip, EchoTarget, Route, StandIn};

#[tokio::test]
async fn a_port_forward_carries_bytes_to_its_target_through_the_dialer() {
    let echo = EchoTarget::start().await;
    let dialer = StandIn::with(&[("db.internal", Route::To(echo.addr))]);
    let (_ingress, listen) = forward(dialer.clone(), "db.internal:5432").await;

    for _ in 0..3 {
        let mut client = TcpStream::connect(listen).await.expect("connect");
        round_trip(&mut client, b"startup message").await;
        round_trip(&mut client, &[42u8; 200_000]).await;
    }

    assert_eq!(dialer.dials(), vec![("db.internal".to_string(), 5432); 3]);
    assert_eq!(echo.accepted(), 3);
}
