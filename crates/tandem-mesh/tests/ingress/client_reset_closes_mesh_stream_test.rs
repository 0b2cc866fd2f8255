use tokio::net::TcpStream;

use crate::support::{forward, round_trip, EchoTarget, Route, StandIn};

#[tokio::test]
async fn a_client_reset_closes_its_mesh_stream() {
    let echo = EchoTarget::start().await;
    let dialer = StandIn::with(&[("db.internal", Route::To(echo.addr))]);
    let (_ingress, listen) = forward(dialer.clone(), "db.internal:5432").await;

    let mut client = TcpStream::connect(listen).await.expect("connect");
    round_trip(&mut client, b"hello").await;

    // The client dies: a reset, not an orderly close.
    client.set_zero_linger().expect("zero linger");
    drop(client);

    // The stream through the mesh (here, the target's connection) is not left half-open.
    echo.one_ended().await;
}
