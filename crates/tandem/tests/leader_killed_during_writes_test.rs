//! kill -9 of the leader in the middle of a run of writes: the writes resume on a new leader,
//! and every write that was acknowledged survives, on the survivors and on the killed node once
//! it is back.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tandem_testkit::{wait_until, Cluster, DEADLINE};

fn tandem() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_tandem"))
}

const WRITES: usize = 200;
const KILL_AFTER_ACKS: usize = 60;
const PREFIX: &str = "run-";

struct Acknowledged {
    key: String,
    served_by: Option<String>,
}

#[tokio::test(flavor = "multi_thread")]
async fn writes_resume_after_the_leader_is_killed_and_no_acknowledged_write_is_lost() {
    let mut cluster = Cluster::start(tandem(), 3, &[]).await;
    cluster.leader().await;

    let client = cluster.client();
    let acks = Arc::new(AtomicUsize::new(0));
    let writer = tokio::spawn({
        let acks = acks.clone();
        async move {
            let mut acknowledged = Vec::new();
            let mut failures = Vec::new();
            for n in 0..WRITES {
                let key = format!("{PREFIX}{n:03}");
                let path = format!("/v1/kv/{key}");
                match client
                    .put_bytes(&path, format!("value-{n}").into_bytes())
                    .await
                {
                    Ok(reply) if reply.status.is_success() => {
                        let served_by = reply
                            .headers
                            .get("tandem-node-id")
                            .and_then(|v| v.to_str().ok())
                            .map(str::to_string);
                        acknowledged.push(Acknowledged { key, served_by });
                        acks.fetch_add(1, Ordering::SeqCst);
                    }
                    Ok(reply) => failures.push(format!(
                        "{key}: HTTP {} {}",
                        reply.status,
                        String::from_utf8_lossy(&reply.body)
                    )),
                    Err(e) => failures.push(format!("{key}: {e}")),
                }
            }
            (acknowledged, failures)
        }
    });

    wait_until(DEADLINE, "60 writes to be acknowledged", async || {
        acks.load(Ordering::SeqCst) >= KILL_AFTER_ACKS
    })
    .await;
    let old_leader = cluster.leader().await;
    cluster.kill(old_leader);
    let acked_at_kill = acks.load(Ordering::SeqCst);
    let old_leader_id = cluster.node_id(old_leader).to_string();
    eprintln!("killed the leader (node {old_leader_id}) after {acked_at_kill} acknowledged writes");

    let (acknowledged, failures) = tokio::time::timeout(Duration::from_secs(120), writer)
        .await
        .expect("the writes finished within 120 s")
        .expect("the writer task did not panic");
    assert!(
        acked_at_kill < WRITES,
        "the leader was killed after the run had ended, not during it"
    );
    assert!(
        failures.is_empty(),
        "{} of {WRITES} writes were not acknowledged after the leader was killed: {failures:?}",
        failures.len()
    );
    let last = acknowledged.last().expect("writes were acknowledged");
    assert_ne!(
        last.served_by.as_deref(),
        Some(old_leader_id.as_str()),
        "the last write was served by the killed node"
    );

    let new_leader = cluster.leader().await;
    assert_ne!(new_leader, old_leader, "a new leader took over");
    let expected: BTreeSet<String> = acknowledged.iter().map(|a| a.key.clone()).collect();
    for i in cluster.live_nodes() {
        let held = cluster
            .keys_under(i, PREFIX)
            .await
            .unwrap_or_else(|| panic!("node index {i} could not list its keys"));
        let missing: Vec<_> = expected.difference(&held).collect();
        assert!(
            missing.is_empty(),
            "node index {i} lost acknowledged writes: {missing:?}"
        );
    }

    cluster.start_node(old_leader).await;
    wait_until(
        DEADLINE,
        "the restarted former leader to hold every acknowledged key",
        async || {
            cluster
                .keys_under(old_leader, PREFIX)
                .await
                .is_some_and(|held| expected.is_subset(&held))
        },
    )
    .await;
    let last_value = cluster
        .get_when_serving(old_leader, &format!("/v1/kv/{}", last.key))
        .await
        .expect_status(200);
    assert_eq!(last_value.text(), format!("value-{}", WRITES - 1));
}
