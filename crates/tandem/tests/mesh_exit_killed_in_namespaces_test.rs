//! kill -9 of the exit in use, with every agent in a network namespace of its own: new
//! connections are served by the other exit (the target sees them come from e-2), and the
//! ingress selects a path to e-2.

use std::path::Path;
use std::time::Duration;

use tandem_testkit::mesh::{MeshOptions, MeshTopology};
use tokio::time::Instant;

#[tokio::test(flavor = "multi_thread")]
async fn the_other_exit_serves_when_the_exit_in_use_dies() {
    let binary = Path::new(env!("CARGO_BIN_EXE_tandem"));
    let mut mesh = MeshTopology::start(binary, MeshOptions::default()).await;
    mesh.wait_for_selected("e-1", "t-1").await;
    let (e1, e2) = (mesh.ip("e-1"), mesh.ip("e-2"));
    assert!(mesh.fetch_checked(10_000, 0, Duration::from_secs(5)).await);
    assert_eq!(mesh.target.sources().last(), Some(&e1), "e-1 serves first");

    mesh.kill("e-1");
    let killed = Instant::now();
    let attempts = mesh
        .wait_for_traffic("a new connection served by e-2")
        .await;
    eprintln!(
        "kill -9 of e-1 -> first connection served by e-2: {:?} ({attempts} attempt(s))",
        killed.elapsed()
    );
    assert_eq!(
        mesh.target.sources().last(),
        Some(&e2),
        "the connection came from e-2"
    );
    mesh.wait_for_selected("e-2", "t-1").await;
    for seed in 100..103 {
        assert!(
            mesh.fetch_checked(50_000, seed, Duration::from_secs(5))
                .await,
            "a fetch through e-2"
        );
        assert_eq!(mesh.target.sources().last(), Some(&e2));
    }
}
