//! Simulated agents heartbeat and clients pick through every node while a seeded schedule of
//! faults runs: a pick never answers a drained or revoked agent, nor one silent for longer than
//! `down_after` + 1 s since the active server could last have heard it.

use std::path::Path;

use tandem_testkit::faults::FaultSchedule;
use tandem_testkit::history::run_under_faults;
use tandem_testkit::workloads::registry::{self, RegistryOp};
use tandem_testkit::Cluster;

#[tokio::test(flavor = "multi_thread")]
async fn picks_stay_healthy_under_every_fault() {
    let schedule = FaultSchedule::from_env();
    let tandem = Path::new(env!("CARGO_BIN_EXE_tandem"));
    let mut cluster = Cluster::start_in_namespaces(tandem, 3, &[]).await;
    cluster.leader().await;
    let fleet = registry::enrol(&cluster).await;
    let report = run_under_faults(&mut cluster, &schedule, 4, |ctx| {
        registry::client(ctx, fleet.clone())
    })
    .await;
    let history = &report.history;
    let picks = report.count(|op| matches!(op, RegistryOp::Picked { agent: Some(_), .. }));
    let silences = report.count(|op| matches!(op, RegistryOp::Silenced { .. }));
    let exits =
        report.count(|op| matches!(op, RegistryOp::Drained { .. } | RegistryOp::Revoked { .. }));
    assert!(
        picks > 50 && silences > 0 && exits == 2,
        "the workload ran under the faults: {picks} picks, {silences} silences, {exits} drains and revocations"
    );
    if let Err(anomaly) = registry::check(history) {
        panic!("{anomaly}\n{schedule}");
    }
    eprintln!(
        "{}",
        report.figures(
            "registry",
            &format!(
                "{} operations checked ({picks} picks, {silences} agents fell silent, {exits} drained or revoked)",
                history.len()
            )
        )
    );
}
