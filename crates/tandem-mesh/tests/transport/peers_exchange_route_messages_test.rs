use tandem_mesh::{Advertisement, AgentId, Message, RouteSpec, Withdrawal};

use crate::support::peered;

fn id(name: &str) -> AgentId {
    AgentId::new(name).expect("id")
}

#[tokio::test]
async fn two_agents_of_one_cluster_peer_and_exchange_route_messages() {
    let (_ea, _eb, a_to_b, b_from_a) = peered("ingress-1", "exit-1").await;
    assert_eq!(a_to_b.peer().as_str(), "exit-1");
    assert_eq!(b_from_a.peer().as_str(), "ingress-1");

    let advert = Message::Advertise(Advertisement {
        origin: id("exit-1"),
        seq: 1,
        path: vec![id("exit-1")],
        routes: vec![RouteSpec::new("10.0.0.0/8".parse().expect("dest"), 100)],
        ttl_ms: 60_000,
        issued_ms: 1_800_000_000_000,
        proof: tandem_mesh::OriginProof {
            certificate: b"certificate".to_vec(),
            signature: b"signature".to_vec(),
        },
    });
    let withdrawal = Message::Withdraw(Withdrawal {
        origin: id("exit-1"),
        seq: 2,
        path: vec![id("exit-1")],
    });
    // The acceptor speaks first too: the control stream is usable both ways at once.
    b_from_a.send(&advert).await.expect("send advert");
    b_from_a.send(&withdrawal).await.expect("send withdrawal");
    a_to_b.send(&advert).await.expect("send back");
    assert_eq!(a_to_b.recv().await.expect("recv"), advert);
    assert_eq!(a_to_b.recv().await.expect("recv"), withdrawal);
    assert_eq!(b_from_a.recv().await.expect("recv"), advert);
    assert!(a_to_b.rtt() < std::time::Duration::from_secs(1));
}
