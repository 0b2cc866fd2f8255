use std::time::Duration;

use tandem_mesh::MeshDialer;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::{eventually, line_through_one_transit, Line};

/// Bytes sent through the ingress to an echo target and back.
const PAYLOAD: usize = 1024 * 1024;

#[tokio::test]
async fn every_agent_counts_the_bytes_it_carries_and_keeps_them_when_a_peer_goes() {
    let Line {
        target,
        exit: _exit,
        transit,
        ingress,
    } = line_through_one_transit().await;
    let transit_before = transit.status().traffic;
    let ingress_before = ingress.status().traffic;

    let mut stream = ingress
        .dial("127.0.0.1", target.addr.port())
        .await
        .expect("a stream through the mesh");
    let sent = vec![7u8; PAYLOAD];
    let (mut read, mut write) = tokio::io::split(&mut stream);
    let writer = async {
        write.write_all(&sent).await.expect("send");
    };
    let reader = async {
        let mut back = vec![0u8; PAYLOAD];
        read.read_exact(&mut back).await.expect("the echo");
        back
    };
    let ((), back) = tokio::join!(writer, reader);
    assert_eq!(back, sent);

    // The ingress sends the payload to the transit and receives the echo; the transit receives
    // each direction from one side and sends it to the other.
    let payload = PAYLOAD as u64;
    let ingress_now = ingress.status().traffic;
    assert!(
        ingress_now.sent - ingress_before.sent >= payload,
        "{ingress_now:?}"
    );
    assert!(
        ingress_now.received - ingress_before.received >= payload,
        "{ingress_now:?}"
    );
    let transit_now = transit.status().traffic;
    assert!(
        transit_now.sent - transit_before.sent >= 2 * payload,
        "{transit_now:?}"
    );
    assert!(
        transit_now.received - transit_before.received >= 2 * payload,
        "{transit_now:?}"
    );
    // Each peer's live connection shows its share.
    let to_ingress = transit
        .status()
        .peers
        .into_iter()
        .find(|p| {
            p.id.as_ref()
                .is_some_and(|id| id.to_string() == "ingress-1")
        })
        .and_then(|p| p.traffic)
        .expect("the ingress's connection");
    assert!(
        to_ingress.sent >= payload && to_ingress.received >= payload,
        "{to_ingress:?}"
    );

    // The ingress goes: the transit's totals keep what that connection carried.
    drop(stream);
    drop(ingress);
    eventually(
        Duration::from_secs(10),
        "the transit to see the ingress go",
        || transit.status().peer_count == 1,
    )
    .await;
    let transit_later = transit.status().traffic;
    assert!(transit_later.sent >= transit_now.sent, "{transit_later:?}");
    assert!(
        transit_later.received >= transit_now.received,
        "{transit_later:?}"
    );
}
