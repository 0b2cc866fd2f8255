//! Clients issue, verify and rotate through every node while a seeded schedule of faults runs:
//! no node refuses a valid token (a node that is behind asks the active node), no rotation
//! reuses a key id, and after the faults tokens from the whole run verify on every node.

use std::path::Path;

use tandem_testkit::faults::FaultSchedule;
use tandem_testkit::history::run_under_faults;
use tandem_testkit::workloads::tokens::{self, IssuedTokens, TokenOp};
use tandem_testkit::Cluster;

#[tokio::test(flavor = "multi_thread")]
async fn tokens_stay_valid_under_every_fault() {
    let schedule = FaultSchedule::from_env();
    let tandem = Path::new(env!("CARGO_BIN_EXE_tandem"));
    let mut cluster = Cluster::start_in_namespaces(tandem, 3, &[]).await;
    let issued = IssuedTokens::default();
    let report = run_under_faults(&mut cluster, &schedule, 4, |ctx| {
        tokens::client(ctx, issued.clone())
    })
    .await;
    let history = &report.history;
    let issues = report.count(|op| matches!(op, TokenOp::Issued { .. }));
    let verifies = report.count(|op| matches!(op, TokenOp::Verified { .. }));
    let rotations = report.count(|op| matches!(op, TokenOp::Rotated { .. }));
    assert!(
        issues > 50 && verifies > 50 && rotations > 0,
        "the workload ran under the faults: {issues} issued, {verifies} verified, {rotations} rotations"
    );
    if let Err(anomaly) = tokens::check(history) {
        panic!("{anomaly}\n{schedule}");
    }
    let checked_after = tokens::verify_everywhere(&cluster, &issued).await;
    eprintln!(
        "{}",
        report.figures(
            "tokens",
            &format!(
                "{} operations checked ({issues} tokens issued, {verifies} verdicts, {rotations} rotations), then {} of them verified on all {} nodes",
                history.len(),
                checked_after,
                cluster.len()
            )
        )
    );
}
