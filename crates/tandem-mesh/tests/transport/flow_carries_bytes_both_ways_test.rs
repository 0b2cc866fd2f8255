use crate::support::{echo_target, peered, serve_exit};

#[tokio::test]
async fn a_flow_from_a_through_exit_b_carries_bytes_both_ways() {
    let target = echo_target().await;
    let (_ea, _eb, a_to_b, b_from_a) = peered("ingress-1", "exit-1").await;
    serve_exit(b_from_a);

    let flow = a_to_b
        .open_flow(&target.to_string(), vec![])
        .await
        .expect("OPEN-OK");
    let (mut send, mut recv) = (flow.send, flow.recv);
    let payload: Vec<u8> = (0..512 * 1024u32).map(|i| (i % 251) as u8).collect();
    let writer = {
        let payload = payload.clone();
        tokio::spawn(async move {
            send.write_all(&payload).await.expect("write");
            send.finish().expect("finish");
        })
    };
    let mut echoed = vec![0u8; payload.len()];
    tokio::time::timeout(
        std::time::Duration::from_secs(5),
        recv.read_exact(&mut echoed),
    )
    .await
    .expect("echo in time")
    .expect("read echo");
    assert!(echoed == payload, "the echo differs from what was sent");
    writer.await.expect("writer");

    // Several flows at once on one connection.
    let mut flows = Vec::new();
    for i in 0..8u8 {
        let flow = a_to_b
            .open_flow(&target.to_string(), vec![])
            .await
            .expect("OPEN-OK");
        flows.push((i, flow));
    }
    for (i, mut flow) in flows {
        flow.send.write_all(&[i; 100]).await.expect("write");
        let mut back = [0u8; 100];
        flow.recv.read_exact(&mut back).await.expect("read");
        assert_eq!(back, [i; 100]);
    }
}
