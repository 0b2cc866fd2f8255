//! Clients put values in the cache and race to take them through every node while a seeded
//! schedule of faults runs: a value is taken at most once, and an acknowledged put stays
//! takeable until it is taken.

use std::path::Path;

use tandem_testkit::faults::FaultSchedule;
use tandem_testkit::history::run_under_faults;
use tandem_testkit::workloads::cache_take::{self, CacheOp, PutKeys, TakeOutcome};
use tandem_testkit::Cluster;

#[tokio::test(flavor = "multi_thread")]
async fn a_cached_value_is_taken_at_most_once_under_every_fault() {
    let schedule = FaultSchedule::from_env();
    let tandem = Path::new(env!("CARGO_BIN_EXE_tandem"));
    let mut cluster = Cluster::start_in_namespaces(tandem, 3, &[]).await;
    let keys = PutKeys::default();
    let mut report = run_under_faults(&mut cluster, &schedule, 4, |ctx| {
        cache_take::client(ctx, keys.clone())
    })
    .await;
    cache_take::take_the_rest(&cluster, &mut report.history).await;

    let history = &report.history;
    let puts = report.count(|op| matches!(op, CacheOp::Put { .. }));
    let taken = report.count(|op| {
        matches!(
            op,
            CacheOp::Take {
                outcome: TakeOutcome::Taken(_),
                ..
            }
        )
    });
    let takes = history.len() - puts;
    assert!(
        puts > 50 && taken > 50,
        "the workload ran under the faults: {puts} puts, {taken} values taken"
    );
    if let Err(anomaly) = cache_take::check(history) {
        panic!("{anomaly}\n{schedule}");
    }
    eprintln!(
        "{}",
        report.figures(
            "cache take",
            &format!(
                "{} operations checked ({puts} puts, {takes} takes of which {taken} got the value)",
                history.len()
            )
        )
    );
}
