use std::collections::BTreeMap;
use std::time::Duration;

use tandem_mesh::Restrictions;

use crate::support::{addr, config, echo_through, eventually, exit, start, EchoTarget};

const LIMIT: Duration = Duration::from_secs(5);

fn restricted(name: &str, allow: &[&str]) -> Restrictions {
    let lists = BTreeMap::from([(
        name.to_string(),
        allow.iter().map(|a| a.to_string()).collect(),
    )]);
    Restrictions::from_lists(&lists).0
}

fn peers(runtime: &tandem_mesh::runtime::MeshRuntime) -> Vec<(String, &'static str)> {
    runtime
        .status()
        .peers
        .into_iter()
        .map(|p| (p.id.map(|id| id.to_string()).unwrap_or_default(), p.state))
        .collect()
}

/// An ingress started with no peer learns the exit's address later, dials it and carries
/// traffic. A restriction the exit does not know of (it goes on advertising) makes the ingress
/// refuse and drop the route while the peer stays up; lifting it brings the route back at
/// once. An address no longer offered is dialed no more, but its connection stays.
#[tokio::test]
async fn learned_peers_are_dialed_and_restrictions_apply_while_running() {
    let target = EchoTarget::start().await;
    let exit = exit("exit-1", &[]);
    let mut ingress_config = config(&[]);
    ingress_config.ingress = true;
    let ingress = start("ingress-1", ingress_config);
    assert!(ingress.status().peers.is_empty());

    ingress.set_learned_peers([addr(&exit).to_string()]);
    eventually(LIMIT, "the ingress learns the route", || {
        ingress.status().route_count == 1
    })
    .await;
    echo_through(&ingress, target.addr.port())
        .await
        .expect("echo through the learned peer");

    ingress.restrict(restricted("exit-1", &["10.0.0.0/8"]));
    assert_eq!(ingress.status().route_count, 0, "the refused route stays");
    assert!(echo_through(&ingress, target.addr.port()).await.is_err());
    assert_eq!(peers(&ingress), [("exit-1".to_string(), "up")]);

    ingress.restrict(Restrictions::none());
    assert_eq!(ingress.status().route_count, 1, "the route is not back");
    echo_through(&ingress, target.addr.port())
        .await
        .expect("echo once the restriction is lifted");

    // The exit's own view: restricted to nothing, it withdraws its route; the ingress sees it go.
    exit.restrict(restricted("exit-1", &[]));
    eventually(LIMIT, "the exit's withdrawal reaches the ingress", || {
        ingress.status().route_count == 0
    })
    .await;
    exit.restrict(Restrictions::none());
    eventually(LIMIT, "the exit advertises again", || {
        ingress.status().route_count == 1
    })
    .await;

    ingress.set_learned_peers([]);
    assert_eq!(peers(&ingress), [("exit-1".to_string(), "up")]);
    echo_through(&ingress, target.addr.port())
        .await
        .expect("the connection stays after its address is no longer offered");
}
