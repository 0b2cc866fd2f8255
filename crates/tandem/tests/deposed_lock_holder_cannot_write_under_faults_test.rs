//! Clients take a lock with a short lease and write to a key with its fencing token, some of
//! them stalling past their lease first, through every node while a seeded schedule of faults
//! runs. A deposed holder never gets a write accepted: accepted writes never go back in token,
//! none is accepted after its lease ran out, and no two leases overlap.

use std::path::Path;

use tandem_testkit::faults::FaultSchedule;
use tandem_testkit::history::run_under_faults;
use tandem_testkit::workloads::fencing::{self, FencingOp};
use tandem_testkit::Cluster;

#[tokio::test(flavor = "multi_thread")]
async fn a_deposed_lock_holder_cannot_write_under_every_fault() {
    let schedule = FaultSchedule::from_env();
    let tandem = Path::new(env!("CARGO_BIN_EXE_tandem"));
    let mut cluster = Cluster::start_in_namespaces(tandem, 3, &[]).await;
    let report = run_under_faults(&mut cluster, &schedule, 4, fencing::client).await;

    let history = &report.history;
    let granted = report.count(|op| matches!(op, FencingOp::Granted { .. }));
    let accepted = report.count(|op| matches!(op, FencingOp::Accepted { .. }));
    assert!(
        granted > 20 && accepted > 20,
        "the workload ran under the faults: {granted} locks granted, {accepted} fenced writes accepted"
    );
    if let Err(anomaly) = fencing::check(history) {
        panic!("{anomaly}\n{schedule}");
    }
    eprintln!(
        "{}",
        report.figures(
            "locks",
            &format!(
                "{} operations checked ({granted} locks granted, {accepted} fenced writes accepted)",
                history.len()
            )
        )
    );
}
