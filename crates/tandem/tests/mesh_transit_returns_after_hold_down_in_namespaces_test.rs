//! A dead transit that comes back takes the traffic back only after the hold-down, with every
//! agent in a network namespace of its own: t-1 (the transit in use) is killed, the ingress
//! moves to t-2 and forgets the paths through t-1; t-1 is started again; from the moment the
//! ingress stores a path through t-1 again, the selection stays on t-2 for the hold-down and
//! moves back to t-1 right after it.

use std::path::Path;
use std::time::Duration;

use tandem_testkit::mesh::{has_path, path_through, selected_paths, MeshOptions, MeshTopology};
use tandem_testkit::{wait_for, wait_until, DEADLINE, POLL_INTERVAL};
use tokio::time::Instant;

const HOLD_DOWN: Duration = Duration::from_secs(3);
/// How much earlier than the hold-down the return may be seen: the path is stored a poll (and
/// a `/healthz` round trip) before the test sees it.
const EARLY_SLACK: Duration = Duration::from_millis(500);
/// How much later: the table's clock fires at the hold-down's end; the rest is polling on a
/// busy machine.
const LATE_SLACK: Duration = Duration::from_secs(2);

#[tokio::test(flavor = "multi_thread")]
async fn traffic_moves_back_to_a_returned_transit_only_after_the_hold_down() {
    let binary = Path::new(env!("CARGO_BIN_EXE_tandem"));
    let mut mesh = MeshTopology::start(binary, MeshOptions::with_hold_down(HOLD_DOWN)).await;
    mesh.wait_for_selected("e-1", "t-1").await;

    mesh.kill("t-1");
    wait_until(
        DEADLINE,
        "the ingress to drop every path through the dead t-1",
        async || !path_through(&mesh.ingress_healthz().await, "t-1"),
    )
    .await;
    mesh.wait_for_selected("e-1", "t-2").await;
    assert!(mesh.fetch_checked(10_000, 1, Duration::from_secs(5)).await);

    mesh.restart("t-1");
    let seen = wait_for(
        DEADLINE,
        "the ingress to store a path through the restarted t-1",
        async || {
            let seen = mesh.ingress_healthz().await;
            has_path(&seen, "e-1", "t-1").then_some(seen)
        },
    )
    .await;
    let back = Instant::now();
    let t2 = vec![("e-1".to_string(), "t-2".to_string())];
    assert_eq!(
        selected_paths(&seen),
        t2,
        "not before the hold-down: {seen}"
    );

    // Every poll until the hold-down is over must still see t-2 selected.
    let moved = wait_for(
        HOLD_DOWN + LATE_SLACK,
        "the selection to move back to t-1",
        async || {
            let seen = mesh.ingress_healthz().await;
            let selected = selected_paths(&seen);
            if selected == t2 {
                return None;
            }
            let at = back.elapsed();
            assert_eq!(
                selected,
                [("e-1".to_string(), "t-1".to_string())],
                "after {at:?}: {seen}"
            );
            Some(at)
        },
    )
    .await;
    eprintln!(
        "the path through t-1 was back; the selection moved to it {moved:?} later (hold-down {HOLD_DOWN:?}, polled every {POLL_INTERVAL:?})"
    );
    assert!(
        moved + EARLY_SLACK >= HOLD_DOWN,
        "moved back after {moved:?}, before the hold-down of {HOLD_DOWN:?}"
    );
    assert!(mesh.fetch_checked(10_000, 2, Duration::from_secs(5)).await);
}
