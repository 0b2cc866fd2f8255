//! A flapping link does not make the route flap, with every agent in a network namespace of its
//! own: while the link between the ingress and t-1 (the transit in use) goes down and up every
//! 200 ms and a client keeps fetching through the mesh, the ingress changes its choice at most
//! once per hold-down (its `route_changes` counter in `/healthz`), and the fetches go on.

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tandem_testkit::mesh::{route_changes, MeshOptions, MeshTopology};
use tokio::time::Instant;

const HOLD_DOWN: Duration = Duration::from_secs(2);
const FLAP_EVERY: Duration = Duration::from_millis(200);
const FLAPPING_FOR: Duration = Duration::from_secs(8);

#[tokio::test(flavor = "multi_thread")]
async fn a_link_flapping_every_200_ms_changes_the_choice_at_most_once_per_hold_down() {
    let binary = Path::new(env!("CARGO_BIN_EXE_tandem"));
    let mesh = Arc::new(MeshTopology::start(binary, MeshOptions::with_hold_down(HOLD_DOWN)).await);
    mesh.wait_for_selected("e-1", "t-1").await;
    let before = route_changes(&mesh.ingress_healthz().await).expect("route_changes in /healthz");

    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let client = tokio::spawn({
        let (mesh, stop, ok, failed) = (mesh.clone(), stop.clone(), ok.clone(), failed.clone());
        async move {
            let mut seed = 0;
            while !stop.load(Ordering::SeqCst) {
                seed += 1;
                let counter = if mesh
                    .fetch_checked(20_000, seed, Duration::from_secs(5))
                    .await
                {
                    &ok
                } else {
                    &failed
                };
                counter.fetch_add(1, Ordering::SeqCst);
            }
        }
    });

    let (ingress, t1) = (mesh.namespace_of("in-1"), mesh.namespace_of("t-1"));
    let started = Instant::now();
    let (mut flaps, mut down) = (0u32, Duration::ZERO);
    while started.elapsed() < FLAPPING_FOR {
        let cut = Instant::now();
        mesh.network().partition(&[vec![ingress], vec![t1]]);
        // The flap's own rhythm, not a wait for anything.
        tokio::time::sleep(FLAP_EVERY).await;
        mesh.network().heal_nodes(&[ingress, t1]);
        down += cut.elapsed();
        tokio::time::sleep(FLAP_EVERY).await;
        flaps += 1;
    }
    let flapped = started.elapsed();
    let after = route_changes(&mesh.ingress_healthz().await).expect("route_changes in /healthz");
    stop.store(true, Ordering::SeqCst);
    client.await.expect("the client task does not panic");

    let changes = after - before;
    let allowed = (flapped.as_millis() / HOLD_DOWN.as_millis()) as u64 + 1;
    let (ok, failed) = (ok.load(Ordering::SeqCst), failed.load(Ordering::SeqCst));
    eprintln!(
        "{flaps} flaps in {flapped:?} (down {:?} each on average): the ingress changed its choice {changes} time(s) (allowed {allowed}); fetches: {ok} ok, {failed} failed",
        down / flaps
    );
    assert!(
        changes <= allowed,
        "{changes} route changes in {flapped:?} with a hold-down of {HOLD_DOWN:?}"
    );
    assert!(ok > 0, "fetches got through while the link flapped");
}
