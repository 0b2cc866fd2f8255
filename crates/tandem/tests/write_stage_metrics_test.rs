//! After writes to a 3-node cluster, `/metrics` shows each stage of a write as a histogram whose
//! count grew: on the active node the queue, its log append, the round trip to each follower
//! (labelled by the follower), commit → apply, the apply and the whole write; on each follower
//! its own handling of the appends and its log append.

use std::collections::BTreeMap;
use std::path::Path;

use tandem_testkit::{wait_for, Cluster, DEADLINE};

fn tandem() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_tandem"))
}

/// Observation counts of one server's histograms, by metric name and labels.
type Counts = BTreeMap<(String, BTreeMap<String, String>), f64>;

async fn histogram_counts(cluster: &Cluster, i: usize) -> Counts {
    let text = cluster.get(i, "/metrics").await.text();
    let lines = text.lines().map(|line| Ok(line.to_string()));
    let parsed =
        prometheus_parse::Scrape::parse(lines).expect("/metrics parses as Prometheus text");
    let mut counts = Counts::new();
    for sample in parsed.samples {
        if let prometheus_parse::Value::Histogram(buckets) = sample.value {
            let count = buckets.iter().map(|b| b.count).fold(0.0, f64::max);
            let labels = sample
                .labels
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            counts.insert((sample.metric, labels), count);
        }
    }
    counts
}

fn count(counts: &Counts, metric: &str, labels: &[(&str, &str)]) -> f64 {
    let labels = labels
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    counts
        .get(&(metric.to_string(), labels))
        .copied()
        .unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread")]
async fn every_write_stage_is_measured_on_the_servers_that_do_it() {
    let cluster = Cluster::start(tandem(), 3, &[]).await;
    let leader = cluster.leader().await;
    let followers: Vec<usize> = (0..3).filter(|&i| i != leader).collect();
    let mut before = Vec::new();
    for i in 0..3 {
        before.push(histogram_counts(&cluster, i).await);
    }

    for n in 0..20 {
        let reply = cluster.put(leader, &format!("/v1/kv/stage-{n}"), "v").await;
        assert!(reply.status.is_success(), "{reply:?}");
    }

    let on_leader = [
        "tandem_write_queue_seconds",
        "tandem_raft_propose_to_commit_seconds",
        "tandem_raft_log_append_seconds",
        "tandem_raft_commit_to_apply_seconds",
        "tandem_raft_apply_seconds",
        "tandem_raft_commit_to_answer_seconds",
        "tandem_write_seconds",
    ];
    let on_followers = [
        "tandem_raft_follower_append_seconds",
        "tandem_raft_log_append_seconds",
        "tandem_raft_commit_to_apply_seconds",
        "tandem_raft_apply_seconds",
    ];
    // Followers answer and apply after the write is acknowledged: wait for them.
    wait_for(DEADLINE, "every stage to count the writes", async || {
        let mut missing = Vec::new();
        let leader_now = histogram_counts(&cluster, leader).await;
        for metric in on_leader {
            if count(&leader_now, metric, &[]) <= count(&before[leader], metric, &[]) {
                missing.push(format!("{metric} on the leader"));
            }
        }
        for &f in &followers {
            let id = cluster.node_id(f).to_string();
            let label = [("follower", id.as_str())];
            let metric = "tandem_raft_replication_seconds";
            if count(&leader_now, metric, &label) <= count(&before[leader], metric, &label) {
                missing.push(format!("{metric} to follower {id}"));
            }
            let follower_now = histogram_counts(&cluster, f).await;
            for metric in on_followers {
                if count(&follower_now, metric, &[]) <= count(&before[f], metric, &[]) {
                    missing.push(format!("{metric} on follower {id}"));
                }
            }
        }
        if missing.is_empty() {
            Some(())
        } else {
            eprintln!("not yet counted: {missing:?}");
            None
        }
    })
    .await;
}
