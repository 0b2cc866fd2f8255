//! Concurrent clients read, write and compare-and-set a few keys through every node while a
//! seeded schedule of faults runs (kill -9, SIGSTOP, partitions, one-way partitions, packet loss, a
//! server removed, wiped and added back); the recorded history must be linearizable. An
//! acknowledged write is never lost or reordered, a read never sees a stale value, and a deposed
//! active node changes nothing.

use std::path::Path;

use tandem_testkit::faults::{FaultKind, FaultSchedule};
use tandem_testkit::history::run_under_faults;
use tandem_testkit::linearizability::{check_registers, RegisterOp, RegisterOutput};
use tandem_testkit::workloads::register;
use tandem_testkit::Cluster;

#[tokio::test(flavor = "multi_thread")]
async fn registers_stay_linearizable_under_every_fault() {
    let schedule = FaultSchedule::from_env_of(&FaultKind::WITH_MEMBERSHIP);
    let tandem = Path::new(env!("CARGO_BIN_EXE_tandem"));
    let mut cluster = Cluster::start_in_namespaces(tandem, 3, &[]).await;
    let report = run_under_faults(&mut cluster, &schedule, 4, register::client).await;

    let history = &report.history;
    let reads = report.count(|o| o.op == RegisterOp::Read);
    let cas = report.count(|o| matches!(o.op, RegisterOp::Cas { .. }));
    let acknowledged = report.count(|o| o.output == RegisterOutput::Written);
    let unknown = report.count(|o| o.output == RegisterOutput::Unknown);
    assert!(
        reads > 50 && acknowledged > 50 && cas > 20,
        "the workload ran under the faults: {reads} reads, {acknowledged} acknowledged writes, {cas} compare-and-sets"
    );
    if let Err(anomaly) = check_registers(history) {
        panic!("{anomaly}\n{schedule}");
    }
    eprintln!(
        "{}",
        report.figures(
            "register",
            &format!(
                "{} operations checked for linearizability ({reads} reads, {cas} compare-and-sets, {acknowledged} acknowledged writes, {unknown} of unknown outcome)",
                history.len()
            )
        )
    );
}
