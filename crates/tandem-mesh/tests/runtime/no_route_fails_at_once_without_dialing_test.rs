use std::time::Duration;

use tandem_mesh::runtime::MeshConfig;
use tandem_mesh::transport::OpenErrorKind;
use tandem_mesh::MeshDialer;
use tokio::time::Instant;

use crate::support::{addr, config, eventually, ingress, start, EchoTarget};

#[tokio::test]
async fn no_route_answers_no_route_at_once_and_never_dials_directly() {
    let target = EchoTarget::start().await;
    let mut exit_config: MeshConfig = config(&[]);
    exit_config.exit_routes = vec!["192.0.2.0/24".parse().expect("net")];
    let exit = start("exit-1", exit_config);
    let ingress = ingress("ingress-1", &[addr(&exit)]);
    eventually(
        Duration::from_secs(5),
        "the ingress learns 192.0.2.0/24",
        || ingress.status().route_count == 1,
    )
    .await;

    for host in ["127.0.0.1", "localhost", "db.internal.example"] {
        let asked = Instant::now();
        let err = match ingress.dial(host, target.addr.port()).await {
            Ok(_) => panic!("{host}: a stream without a route"),
            Err(e) => e,
        };
        assert_eq!(err.kind, OpenErrorKind::NoRoute, "{host}: {err}");
        assert!(asked.elapsed() < Duration::from_millis(100), "{host}");
    }
    // Give a stray connection time to show up, then check none came.
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(target.connections(), 0);
}
