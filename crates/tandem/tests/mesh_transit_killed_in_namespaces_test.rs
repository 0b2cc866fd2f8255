//! kill -9 of the transit in use, with every agent in a network namespace of its own: new
//! connections take the other transit within a second or so (measured from the kill, printed,
//! and asserted with a generous bound), and a download that was running through the dead
//! transit is reset within the dead-peer time, not left hanging.

use std::path::Path;
use std::time::Duration;

use tandem_testkit::mesh::{MeshOptions, MeshTopology, DEAD_PEER};
use tandem_testkit::{wait_for, wait_until, DEADLINE};
use tokio::time::Instant;

/// The mesh moves new connections in about 300 ms (one unacknowledged open); this bound only
/// catches a failover that waits for the dead-peer time or worse.
const FAILOVER_BOUND: Duration = Duration::from_secs(3);
/// What the reset of a running download may take beyond the dead-peer time on a busy machine.
const RESET_MARGIN: Duration = Duration::from_secs(3);

#[tokio::test(flavor = "multi_thread")]
async fn new_connections_take_the_other_transit_and_running_ones_are_reset() {
    let binary = Path::new(env!("CARGO_BIN_EXE_tandem"));
    let mut mesh = MeshTopology::start(binary, MeshOptions::default()).await;
    mesh.wait_for_selected("e-1", "t-1").await;

    let mut download = mesh.start_download();
    wait_until(DEADLINE, "the download to run through t-1", async || {
        download.received() > 64 * 1024
    })
    .await;

    mesh.kill("t-1");
    let killed = Instant::now();
    let attempts = mesh.wait_for_traffic("a new connection through t-2").await;
    let failover = killed.elapsed();
    eprintln!(
        "kill -9 of t-1 -> first new connection through t-2: {failover:?} ({attempts} attempt(s))"
    );
    assert!(
        failover <= FAILOVER_BOUND,
        "new connections waited {failover:?} after the kill"
    );
    assert!(mesh.is_running("t-2"), "t-2 carries the traffic");

    let at_kill = download.received();
    let status = wait_for(
        (DEAD_PEER + RESET_MARGIN).saturating_sub(killed.elapsed()),
        "the download through the dead t-1 to be reset",
        async || download.exited(),
    )
    .await;
    let reset = killed.elapsed();
    eprintln!(
        "the download through t-1 ended {reset:?} after the kill ({status}, {} bytes, {at_kill} at the kill)",
        download.received()
    );
    assert!(!status.success(), "curl reports the cut download as failed");
    mesh.wait_for_selected("e-1", "t-2").await;
}
