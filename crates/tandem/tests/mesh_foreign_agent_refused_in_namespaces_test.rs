//! A peer without a valid credential is kept out of the mesh, with every agent in a network
//! namespace of its own: an agent enrolled with another cluster (another cluster secret, so
//! its certificate chains to another agent CA) dials the ingress and advertises the target with
//! a weight that would win. The ingress refuses it in the handshake (its log says so), never
//! lists it as a peer nor stores a path from it, and traffic keeps its path.

use std::path::Path;
use std::time::Duration;

use serde_json::json;
use tandem_testkit::mesh::{path_through, peer_up, selected_paths, MeshOptions, MeshTopology};
use tandem_testkit::{join_token, wait_until, AgentProcess, DEADLINE};
use tokio::time::Instant;

const FOREIGN_SECRET: &str = "another-cluster-raft-secret-5d21";
/// How long the ingress is watched for the intruder after the first refusal: longer than the
/// intruder's first redials (1 s, then 2 s).
const WATCH: Duration = Duration::from_secs(4);

#[tokio::test(flavor = "multi_thread")]
async fn an_agent_of_another_cluster_is_refused_in_the_handshake() {
    let binary = Path::new(env!("CARGO_BIN_EXE_tandem"));
    let options = MeshOptions {
        spares: 2,
        ..MeshOptions::default()
    };
    let mesh = MeshTopology::start(binary, options).await;
    mesh.wait_for_selected("e-1", "t-1").await;
    let foreign = mesh
        .cluster()
        .start_foreign_in(binary, mesh.spare(0), FOREIGN_SECRET)
        .await;
    foreign.leader().await;
    let token = join_token(&foreign, "mesh", json!({})).await;
    let network = mesh.network();
    let intruder_ip = network.node_ip(mesh.spare(1));
    let target_route = format!("{}/32", mesh.target.addr().ip());
    let intruder = AgentProcess::start_in_namespace(
        binary,
        &foreign,
        (network, mesh.spare(1)),
        "x-1",
        "mesh",
        Some(&token),
        &[
            "--mesh-listen",
            &format!("{intruder_ip}:4433"),
            "--mesh-peer",
            &mesh.mesh_addr("in-1"),
            "--exit-route",
            &target_route,
            "--exit-weight",
            "1000",
        ],
    );

    let refusal = |log: &str| {
        log.lines()
            .any(|l| l.contains("mesh peer refused") && l.contains(&intruder_ip))
    };
    wait_until(
        DEADLINE,
        "the ingress to refuse the intruder in the handshake",
        async || refusal(&mesh.agent("in-1").log()),
    )
    .await;
    assert!(
        intruder.log().contains("mesh peer not reached"),
        "the intruder's dial failed too:\n{}",
        intruder.log()
    );

    // Watching for something that must not happen: every look at the ingress over the window
    // must show no trace of the intruder.
    let watched = Instant::now();
    let mut looks = 0;
    while watched.elapsed() < WATCH {
        let seen = mesh.ingress_healthz().await;
        assert!(
            !seen["mesh"].is_null() && !peer_up(&seen, "x-1") && !path_through(&seen, "x-1"),
            "the intruder got into the mesh: {seen}"
        );
        assert_eq!(
            selected_paths(&seen),
            [("e-1".to_string(), "t-1".to_string())]
        );
        looks += 1;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let refusals = mesh
        .agent("in-1")
        .log()
        .lines()
        .filter(|l| l.contains("mesh peer refused"))
        .count();
    eprintln!("{refusals} handshake(s) refused; the intruder was absent in all {looks} looks");
    assert!(mesh.fetch_checked(10_000, 1, Duration::from_secs(5)).await);
    assert_eq!(
        mesh.target.sources().last(),
        Some(&mesh.ip("e-1")),
        "served by e-1, not the intruder"
    );
}
