use std::time::Duration;

use tandem_mesh::runtime::MeshConfig;
use tandem_mesh::transport::{FlowError, MeshEndpoint, OpenErrorKind, TransportSettings};

use crate::support::{addr, agent_tls, config, start, EchoTarget};

/// A peer that asks an exit for a destination outside its routes gets OPEN-ERR NotAllowed,
/// and the exit does not dial it.
#[tokio::test]
async fn an_exit_refuses_what_it_does_not_advertise() {
    let target = EchoTarget::start().await;
    let mut exit_config: MeshConfig = config(&[]);
    exit_config.exit_routes = vec!["192.0.2.0/24".parse().expect("net")];
    exit_config.exit_domains =
        vec![tandem_mesh::DomainPattern::parse("*.internal.example").expect("pattern")];
    let exit = start("exit-1", exit_config);

    let peer = MeshEndpoint::bind(
        "127.0.0.1:0".parse().expect("addr"),
        &agent_tls("ingress-raw"),
        TransportSettings::default(),
    )
    .expect("bind");
    let conn = peer.dial(addr(&exit)).await.expect("dial the exit");

    for dest in [
        target.addr.to_string(),
        format!("localhost:{}", target.addr.port()),
    ] {
        let open = conn.open_flow(&dest, vec![]);
        let err = tokio::time::timeout(Duration::from_secs(5), open)
            .await
            .expect("an answer")
            .expect_err("OPEN-ERR");
        match err {
            FlowError::Refused { kind, .. } => {
                assert_eq!(kind, OpenErrorKind::NotAllowed, "{dest}")
            }
            other => panic!("{dest}: expected a refusal, got {other}"),
        }
    }
    assert_eq!(target.connections(), 0);
}
