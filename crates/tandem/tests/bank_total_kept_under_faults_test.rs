//! Concurrent clients move money between accounts in SQL transactions through every node while a
//! seeded schedule of faults runs (a server removed, wiped and added back among them); every
//! linearizable read sees the same total and no negative balance, every acknowledged transfer
//! took effect and no refused one did, and the final balances are exactly what the transfers
//! that took effect make them.

use std::path::Path;

use tandem_testkit::faults::{FaultKind, FaultSchedule};
use tandem_testkit::history::run_under_faults;
use tandem_testkit::workloads::bank::{self, BankOp, TransferOutcome};
use tandem_testkit::Cluster;

#[tokio::test(flavor = "multi_thread")]
async fn bank_transfers_keep_the_total_under_every_fault() {
    let schedule = FaultSchedule::from_env_of(&FaultKind::WITH_MEMBERSHIP);
    let tandem = Path::new(env!("CARGO_BIN_EXE_tandem"));
    let mut cluster = Cluster::start_in_namespaces(tandem, 3, &[]).await;
    bank::open_accounts(&cluster).await;
    let report = run_under_faults(&mut cluster, &schedule, 4, bank::client).await;
    let end = bank::final_state(&cluster).await;

    let history = &report.history;
    let transfers = |wanted: TransferOutcome| {
        report.count(|op| matches!(op, BankOp::Transfer { outcome, .. } if *outcome == wanted))
    };
    let (applied, refused, unknown) = (
        transfers(TransferOutcome::Applied),
        transfers(TransferOutcome::Refused),
        transfers(TransferOutcome::Unknown),
    );
    let reads = report.count(|op| matches!(op, BankOp::Read { .. }));
    assert!(
        applied > 50 && reads > 20,
        "the workload ran under the faults: {applied} transfers applied, {reads} reads"
    );
    if let Err(anomaly) = bank::check(history, &end) {
        panic!("{anomaly}\n{schedule}");
    }
    eprintln!(
        "{}",
        report.figures(
            "bank",
            &format!(
                "{} operations checked ({reads} reads of every balance, {applied} transfers applied, {refused} refused or not served, {unknown} of unknown outcome; final balances {:?} with {} transfers recorded)",
                history.len(),
                end.balances,
                end.transfers.len()
            )
        )
    );
}
