//! A full disk is a state, not a crash: once the data folder's disk runs low, or the folder
//! outgrows its quota, writes are refused early with 507 naming the cause, reads and deletes
//! are still served, `/v1/sys/health` and `/metrics` show it, nothing acknowledged is lost, the
//! server stays up, and writes resume by themselves once there is room again.

use std::path::Path;
use std::time::Duration;

use reqwest::Method;
use tandem_testkit::{wait_for, ApiErrorBody, Cluster, SmallDisk, DEADLINE};

fn tandem() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_tandem"))
}

/// Each write stores this many bytes, so a small disk fills in a few hundred writes.
const VALUE_BYTES: usize = 64 * 1024;
/// More writes than any of these disks or quotas can hold.
const MOST_WRITES: usize = 5_000;
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

fn key(n: usize) -> String {
    format!("/v1/kv/fill-{n}")
}

fn value(n: usize) -> Vec<u8> {
    vec![(n % 251) as u8; VALUE_BYTES]
}

async fn put(cluster: &Cluster, n: usize) -> tandem_testkit::HttpReply {
    cluster
        .try_send(
            0,
            Method::PUT,
            &key(n),
            Some(("application/octet-stream", value(n))),
            REQUEST_TIMEOUT,
        )
        .await
        .unwrap_or_else(|e| panic!("write {n}: the server did not answer: {e}"))
}

/// Writes until a write is refused; answers the writes acknowledged and the refusal.
async fn fill_until_refused(cluster: &Cluster) -> (Vec<usize>, ApiErrorBody) {
    let mut acknowledged = Vec::new();
    for n in 0..MOST_WRITES {
        let reply = put(cluster, n).await;
        match reply.status.as_u16() {
            200 => acknowledged.push(n),
            507 => return (acknowledged, reply.expect_api_error(507)),
            _ => panic!(
                "write {n} answered {} before storage was full: {}",
                reply.status,
                reply.text()
            ),
        }
    }
    panic!("{MOST_WRITES} writes of {VALUE_BYTES} bytes were all accepted");
}

/// Every acknowledged write reads back with its value.
async fn assert_kept(cluster: &Cluster, acknowledged: &[usize]) {
    for &n in acknowledged {
        let reply = cluster.get(0, &key(n)).await.expect_status(200);
        assert!(
            reply.body == value(n),
            "{} came back with {} bytes that differ from the value written",
            key(n),
            reply.body.len()
        );
    }
}

/// `/v1/sys/health`'s `nospace`, and the `tandem_storage_full` gauge, agree with `full`.
async fn assert_shown(cluster: &Cluster, full: bool) {
    let health = cluster.get(0, "/v1/sys/health").await.json();
    assert_eq!(health["nospace"], full, "/v1/sys/health: {health}");
    let metrics = cluster.get(0, "/metrics").await.text();
    let gauge = format!("tandem_storage_full {}", u8::from(full));
    assert!(
        metrics.lines().any(|line| line == gauge),
        "/metrics has no line {gauge:?}"
    );
}

/// Retries one write until it is accepted.
async fn wait_for_writes(cluster: &Cluster, n: usize) {
    wait_for(DEADLINE, "writes to be accepted again", async || {
        (put(cluster, n).await.status.as_u16() == 200).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_full_disk_refuses_writes_until_it_grows() {
    if !SmallDisk::can_mount() {
        eprintln!("skipped: mounting a small disk needs root (the fault suite runs as root)");
        return;
    }
    let mut cluster = Cluster::start(tandem(), 1, &["--storage-reserve", "16MiB"]).await;
    cluster.wait_for_leader(DEADLINE).await;
    cluster.stop(0).await;
    // Declared after the cluster, so dropped (unmounted) first, even when the test fails.
    let disk = SmallDisk::mount_over(cluster.data_dir(0), "48m");
    cluster.start_node(0).await;
    cluster.wait_for_leader(DEADLINE).await;

    let (mut acknowledged, refused) = fill_until_refused(&cluster).await;
    assert_eq!(refused.code, "storage_full");
    assert!(
        refused.message.contains("disk nearly full") && refused.message.contains("storage_reserve"),
        "the refusal names the disk and the setting: {}",
        refused.message
    );
    assert!(
        acknowledged.len() >= 10,
        "only {} writes fit on the disk",
        acknowledged.len()
    );
    assert_shown(&cluster, true).await;
    assert_kept(&cluster, &acknowledged).await;
    // A delete frees space, so it is still accepted.
    let deleted = acknowledged.pop().expect("a write was acknowledged");
    cluster.delete(0, &key(deleted)).await.expect_status(200);
    assert!(cluster.is_running(0), "the server stays up");

    disk.resize("256m");
    wait_for_writes(&cluster, MOST_WRITES).await;
    acknowledged.push(MOST_WRITES);
    assert_shown(&cluster, false).await;
    assert_kept(&cluster, &acknowledged).await;
    assert!(cluster.is_running(0), "the server stayed up");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_storage_quota_refuses_writes_until_keys_are_deleted() {
    // Snapshots often, so the log of the writes does not outlive their keys for long.
    let cluster = Cluster::start(
        tandem(),
        1,
        &[
            "--storage-quota",
            "24MiB",
            "--snapshot-every",
            "20",
            "--snapshot-logs-to-keep",
            "5",
        ],
    )
    .await;
    cluster.wait_for_leader(DEADLINE).await;

    let (acknowledged, refused) = fill_until_refused(&cluster).await;
    assert_eq!(refused.code, "storage_full");
    assert!(
        refused.message.contains("storage quota exceeded")
            && refused.message.contains("storage_quota"),
        "the refusal names the quota: {}",
        refused.message
    );
    assert_shown(&cluster, true).await;
    let healthz = cluster.get(0, "/healthz").await.json();
    assert_eq!(healthz["storage"]["cause"], "quota", "/healthz: {healthz}");
    assert_kept(&cluster, &acknowledged).await;

    for &n in &acknowledged {
        cluster.delete(0, &key(n)).await.expect_status(200);
    }
    wait_for_writes(&cluster, MOST_WRITES).await;
    assert_shown(&cluster, false).await;
    assert_kept(&cluster, &[MOST_WRITES]).await;
    assert!(cluster.is_running(0), "the server stayed up");
}
