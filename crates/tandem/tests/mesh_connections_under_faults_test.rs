//! Connections through the mesh under faults, with every agent in a network namespace of its
//! own: four clients keep fetching seeded bytes from the target through the ingress's SOCKS5
//! while a seeded schedule kills and restarts transits and exits and cuts links between agents.
//! Every connection brings exactly the bytes the target sent or fails with an error; none
//! stalls past the dead-peer time plus a margin, none delivers a wrong byte.

use std::path::Path;
use std::time::Duration;

use tandem_testkit::faults::{FaultKind, FaultSchedule};
use tandem_testkit::mesh::{MeshOptions, MeshTopology};
use tandem_testkit::workloads::mesh::{self, Outcome};

#[tokio::test(flavor = "multi_thread")]
async fn connections_complete_or_fail_cleanly_under_every_fault() {
    let schedule = FaultSchedule::from_env_of(&FaultKind::MESH);
    let binary = Path::new(env!("CARGO_BIN_EXE_tandem"));
    let mut topology = MeshTopology::start(binary, MeshOptions::default()).await;
    let report = mesh::run_under_faults(&mut topology, &schedule, 4).await;
    let history = &report.history;
    let complete = report.count(|c| c.outcome == Outcome::Complete);
    let failed = report.count(|c| matches!(c.outcome, Outcome::Failed { .. }));
    if let Err(anomaly) = mesh::check(history) {
        panic!("{anomaly}\n{schedule}");
    }
    assert!(
        complete > 100,
        "the workload ran under the faults: {complete} connections complete, {failed} failed"
    );
    let mut stages = std::collections::BTreeMap::<&str, usize>::new();
    for connection in history {
        if let Outcome::Failed { stage, .. } = connection.outcome {
            *stages.entry(stage).or_default() += 1;
        }
    }
    let (longest, longest_at) = history
        .iter()
        .map(|c| (c.longest_stall, c.longest_stall_at))
        .max()
        .unwrap_or((Duration::ZERO, ""));
    let bytes: usize = history
        .iter()
        .filter(|c| c.outcome == Outcome::Complete)
        .map(|c| c.len)
        .sum();
    eprintln!(
        "{}",
        report.figures(
            "mesh",
            &format!(
                "{} connections checked ({complete} complete with {bytes} bytes verified, {failed} failed with an error: {stages:?}); longest wait for one step {longest:?} (at {longest_at})",
                history.len()
            )
        )
    );
}
