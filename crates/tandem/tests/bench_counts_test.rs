//! `tandem bench` counts only acknowledged operations: a short kv-put run against a single node
//! reports exactly as many operations as the server then holds keys under the run's prefix;
//! with `--stages` it also reports the write stages the run moved.

use std::path::Path;
use std::time::Duration;

use tandem_testkit::{run_to_exit, tandem_command, Cluster, API_SECRET};

fn tandem() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_tandem"))
}

#[tokio::test(flavor = "multi_thread")]
async fn kv_put_reports_what_the_server_stored() {
    let cluster = Cluster::start(tandem(), 1, &[]).await;
    cluster.leader().await;
    let mut bench = tandem_command(tandem());
    bench
        .env("TANDEM_SECRET_API", API_SECRET)
        .args(["bench", "kv-put", "--addr", cluster.api_addr(0)])
        .args([
            "--concurrency",
            "4",
            "--ops",
            "150",
            "--prefix",
            "counted/",
            "--json",
        ]);
    let output = run_to_exit(bench, Duration::from_secs(60)).await;
    assert!(
        output.status.success(),
        "bench failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report: serde_json::Value =
        serde_json::from_slice(&output.stdout).expect("the bench prints one JSON object");
    assert_eq!(
        report["ops"], 150,
        "every operation was acknowledged: {report}"
    );
    assert_eq!(report["errors"], 0);
    for field in ["p50", "p90", "p99", "max"] {
        assert!(
            report["latency_ms"][field]
                .as_f64()
                .is_some_and(|v| v > 0.0),
            "{field} in {report}"
        );
    }
    assert!(report["ops_per_sec"].as_f64().is_some_and(|v| v > 0.0));
    let stored = cluster
        .keys_under(0, "counted/")
        .await
        .expect("the node lists its keys");
    assert_eq!(
        stored.len() as u64,
        report["ops"].as_u64().unwrap_or_default()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn disk_reports_fsyncs() {
    let folder = tempfile::tempdir().expect("temporary folder");
    let mut bench = tandem_command(tandem());
    bench
        .args(["bench", "disk", "--ops", "50", "--json", "--data-dir"])
        .arg(folder.path());
    let output = run_to_exit(bench, Duration::from_secs(60)).await;
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).expect("JSON");
    assert_eq!(report["ops"], 50);
    assert!(report["latency_ms"]["max"]
        .as_f64()
        .is_some_and(|v| v > 0.0));
    assert_eq!(
        std::fs::read_dir(folder.path()).expect("folder").count(),
        0,
        "the scratch file is removed"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn kv_put_with_stages_reports_where_the_writes_went() {
    let cluster = Cluster::start(tandem(), 1, &[]).await;
    cluster.leader().await;
    let mut bench = tandem_command(tandem());
    bench
        .env("TANDEM_SECRET_API", API_SECRET)
        .args(["bench", "kv-put", "--addr", cluster.api_addr(0)])
        .args(["--concurrency", "2", "--ops", "40", "--stages", "--json"]);
    let output = run_to_exit(bench, Duration::from_secs(60)).await;
    assert!(
        output.status.success(),
        "bench failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report: serde_json::Value =
        serde_json::from_slice(&output.stdout).expect("the bench prints one JSON object");
    let stages = report["stages"].as_array().expect("a list of stages");
    let counted = |stage: &str| {
        stages
            .iter()
            .filter(|row| row["stage"] == stage)
            .map(|row| row["count"].as_f64().unwrap_or_default())
            .sum::<f64>()
    };
    // A single node replicates to no one; every other stage saw each write (a batch of them
    // is one log append and one apply). The server's own writes, such as publishing its
    // signing key, may fall in the run too.
    assert!(counted("queue before propose") >= 40.0, "{report}");
    assert!(counted("write answered") >= 40.0, "{report}");
    for stage in ["log append + fsync", "commit -> apply", "apply in SQLite"] {
        assert!(counted(stage) >= 1.0, "{stage} in {report}");
    }
    for row in stages {
        let (p50, p99) = (row["p50_ms"].as_f64(), row["p99_ms"].as_f64());
        assert!(
            p50.is_some_and(|p| p > 0.0) && p50 <= p99,
            "percentiles of {row}"
        );
    }
}

/// Runs `tandem bench <args>` (with the API secret), checks that it failed, and answers what it
/// printed on stderr.
async fn failed_bench(args: &[&str]) -> String {
    let mut bench = tandem_command(tandem());
    bench
        .env("TANDEM_SECRET_API", API_SECRET)
        .arg("bench")
        .args(args);
    let output = run_to_exit(bench, Duration::from_secs(60)).await;
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(!output.status.success(), "{stderr}");
    stderr
}

/// A fill that cannot write stops at its first failed write (once the client has given up on
/// every server) with the reason, instead of going on failing key after key for hours.
#[tokio::test(flavor = "multi_thread")]
async fn a_fill_that_cannot_write_stops_at_its_first_failed_write_and_says_why() {
    let port = tandem_testkit::free_ports(1).expect("a free port")[0];
    let nobody = format!("127.0.0.1:{port}");
    let stderr = failed_bench(&["fill", "--addr", &nobody, "--keys", "1000000"]).await;
    assert!(
        stderr.contains("the fill stopped at its first failed write")
            && stderr.contains("no server answered")
            && stderr.contains("0 of the 1000000 keys were written"),
        "{stderr}"
    );
}

/// A failover bench whose nodes refuse their flags says so with each node's own error, at once,
/// instead of waiting for a leader that cannot come.
#[tokio::test(flavor = "multi_thread")]
async fn a_failover_bench_whose_nodes_exit_at_start_names_their_error() {
    let stderr = failed_bench(&[
        "failover",
        "--rounds",
        "1",
        "--server-args",
        "--no-such-flag",
    ])
    .await;
    assert!(
        stderr.contains("no leader: node")
            && stderr.contains("exited (exit status: 2)")
            && stderr.contains("--no-such-flag"),
        "{stderr}"
    );
    assert!(!stderr.contains("none after"), "{stderr}");
}
