use std::time::Duration;

use tandem_mesh::transport::{MeshEndpoint, TransportSettings};
use tandem_mesh::{AgentId, Message, OriginProof, PathState, RouteSpec};

use crate::support::{addr, agent_tls, echo_through, eventually, exit, ingress, EchoTarget};

/// An enrolled agent that turns rogue cannot announce routes in another agent's name, nor
/// change what an origin announced while relaying it: the ingress refuses both (with a log
/// line), keeps its peer and keeps routing through the real exit. The same rogue relaying the
/// origin's advertisement untouched is believed, as any relay is.
#[tokio::test]
async fn forged_and_tampered_adverts_are_refused_and_traffic_keeps_flowing() {
    let target = EchoTarget::start().await;
    let exit = exit("exit-1", &[]);
    let ingress = ingress("ingress-1", &[addr(&exit)]);
    eventually(
        Duration::from_secs(5),
        "the ingress learns the exit's route",
        || ingress.status().route_count == 1,
    )
    .await;

    let rogue_tls = agent_tls("rogue");
    let rogue = MeshEndpoint::bind(
        "127.0.0.1:0".parse().expect("addr"),
        &rogue_tls,
        TransportSettings::default(),
    )
    .expect("rogue endpoint");
    // The rogue peers with the exit and hears its genuine, signed advertisement.
    let from_exit = rogue
        .dial(addr(&exit))
        .await
        .expect("rogue peers with the exit");
    let genuine = match tokio::time::timeout(Duration::from_secs(5), from_exit.recv()).await {
        Ok(Ok(Message::Advertise(advert))) => advert,
        other => panic!("expected the exit's advertisement, got {other:?}"),
    };
    let to_ingress = rogue
        .dial(addr(&ingress))
        .await
        .expect("rogue peers with the ingress");
    let rogue_id = AgentId::new("rogue").expect("name");
    let mut relayed = genuine.clone();
    relayed.path.push(rogue_id.clone());

    // In the exit's name, signed by the rogue's own (valid) key, newer than anything the
    // exit said and preferred by weight.
    let mut forged = relayed.clone();
    forged.seq += 1_000;
    forged.routes = vec![RouteSpec::new("127.0.0.0/8".parse().expect("net"), 1_000)];
    forged.proof = OriginProof {
        certificate: rogue_tls.certificate().to_vec(),
        signature: rogue_tls.sign(&forged.statement()).expect("signs"),
    };
    // The exit's own proof, with the sequence number and the weight raised on the way.
    let mut tampered = relayed.clone();
    tampered.seq += 1_000;
    tampered.routes[0].weight = 1_000;
    for message in [forged, tampered] {
        to_ingress
            .send(&Message::Advertise(message))
            .await
            .expect("sent");
    }
    // Sent after the forgeries on the same ordered stream: once it is stored, they were seen.
    to_ingress
        .send(&Message::Advertise(relayed))
        .await
        .expect("sent");
    eventually(
        Duration::from_secs(5),
        "the untouched relay is stored as a backup",
        || {
            ingress
                .status()
                .routes
                .iter()
                .any(|v| v.route.next_hop == rogue_id)
        },
    )
    .await;

    let status = ingress.status();
    assert_eq!(
        status.route_count, 1,
        "no route of the forger's: {status:?}"
    );
    for view in &status.routes {
        assert_eq!(view.route.weight, 100, "the origin's weight: {view:?}");
        if view.route.next_hop == rogue_id {
            assert_eq!(view.state, PathState::Backup);
        } else {
            assert_eq!(view.state, PathState::Selected);
            assert_eq!(view.route.next_hop.as_str(), "exit-1");
        }
    }
    echo_through(&ingress, target.addr.port())
        .await
        .expect("traffic still flows through the exit");
    assert!(to_ingress.close_reason().is_none(), "the peer stays");
}
