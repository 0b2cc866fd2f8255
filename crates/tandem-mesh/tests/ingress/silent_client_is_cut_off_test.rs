use std::time::Duration;

use tandem_mesh::ingress::{IngressLimits, Socks5Auth};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use crate::support::{ended, socks5, StandIn};

#[tokio::test]
async fn a_client_that_never_finishes_its_handshake_is_closed_after_the_timeout() {
    let dialer = StandIn::with(&[]);
    let short = IngressLimits {
        handshake_timeout: Duration::from_millis(300),
        ..IngressLimits::default()
    };
    let (_ingress, proxy) = socks5(dialer.clone(), Socks5Auth::NoAuth, short).await;

    // Says nothing at all.
    let mut silent = TcpStream::connect(proxy).await.expect("connect");
    // Says half a greeting and stops.
    let mut halfway = TcpStream::connect(proxy).await.expect("connect");
    halfway
        .write_all(&[5, 2, 0])
        .await
        .expect("half a greeting");

    ended(&mut silent).await;
    ended(&mut halfway).await;
    assert_eq!(dialer.dial_count(), 0);
}
