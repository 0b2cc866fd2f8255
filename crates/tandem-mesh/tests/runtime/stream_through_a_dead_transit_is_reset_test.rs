use std::time::Duration;

use tandem_mesh::runtime::MeshRuntime;
use tandem_mesh::MeshStream;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::{addr, config, eventually, exit, start, EchoTarget, UdpRelay};

/// An open stream through `ingress` that has carried bytes.
async fn open_stream(ingress: &MeshRuntime, target: &EchoTarget) -> Box<dyn MeshStream> {
    eventually(
        Duration::from_secs(5),
        "the ingress learns the route",
        || ingress.status().route_count == 1,
    )
    .await;
    let mut stream = tandem_mesh::MeshDialer::dial(ingress, "127.0.0.1", target.addr.port())
        .await
        .expect("dial");
    stream.write_all(b"ping").await.expect("write");
    let mut back = [0u8; 4];
    stream.read_exact(&mut back).await.expect("echo");
    stream
}

/// Reads until the stream ends: an error (a reset) is what a dead hop must give, never a clean
/// end that a client could take for a complete download, and never a hang.
async fn read_outcome(stream: &mut Box<dyn MeshStream>, limit: Duration) -> std::io::Result<usize> {
    let mut buf = [0u8; 64];
    tokio::time::timeout(limit, stream.read(&mut buf))
        .await
        .expect("the stream hung past the dead-peer time")
}

#[tokio::test]
async fn a_stream_through_a_stopped_transit_is_reset_at_once() {
    let target = EchoTarget::start().await;
    let exit = exit("exit-1", &[]);
    let transit = start("transit-1", config(&[addr(&exit)]));
    let ingress = start("ingress-1", config(&[addr(&transit)]));
    let mut stream = open_stream(&ingress, &target).await;

    drop(transit);
    let outcome = read_outcome(&mut stream, Duration::from_secs(2)).await;
    assert!(
        outcome.is_err(),
        "a clean end instead of a reset: {outcome:?}"
    );
}

#[tokio::test]
async fn a_stream_through_a_silent_transit_is_reset_within_the_dead_peer_time() {
    let target = EchoTarget::start().await;
    let exit = exit("exit-1", &[]);
    let transit = start("transit-1", config(&[addr(&exit)]));
    let relay = UdpRelay::start(addr(&transit)).await;
    let ingress = start("ingress-1", config(&[relay.addr]));
    let mut stream = open_stream(&ingress, &target).await;

    relay.silence();
    // The idle timeout is 3 s; allow for scheduling.
    let outcome = read_outcome(&mut stream, Duration::from_secs(6)).await;
    assert!(
        outcome.is_err(),
        "a clean end instead of a reset: {outcome:?}"
    );
    drop(transit);
}

/// The hop that dies is beyond the transit: the transit's relay passes the reset back.
#[tokio::test]
async fn a_stream_is_reset_through_the_transit_when_the_exit_stops() {
    let target = EchoTarget::start().await;
    let exit = exit("exit-1", &[]);
    let transit = start("transit-1", config(&[addr(&exit)]));
    let ingress = start("ingress-1", config(&[addr(&transit)]));
    let mut stream = open_stream(&ingress, &target).await;

    drop(exit);
    let outcome = read_outcome(&mut stream, Duration::from_secs(2)).await;
    assert!(
        outcome.is_err(),
        "a clean end instead of a reset: {outcome:?}"
    );
    assert_eq!(
        ingress.status().peer_count,
        1,
        "the ingress still has its transit"
    );
}
