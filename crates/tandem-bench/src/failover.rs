//! `tandem bench failover`: starts a 3-node cluster of this binary (or, with `--target etcd`, of
//! `etcd` from PATH) on 127.0.0.1, keeps a steady write load on it, stops the leader again and
//! again (SIGKILL or SIGTERM), and reports how long writes took to be acknowledged by a new
//! leader, and how many failed meanwhile.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use clap::Args;
use hdrhistogram::Histogram;
use serde_json::json;
use tandem_client::Client;
use tandem_testkit::{free_ports, poll_for, POLL_INTERVAL};

use crate::etcd::member_statuses;
use crate::local::{server_args, Folder, Processes, StopSignal};
use crate::target::{Acknowledger, KvStore, System};

/// Settings of the failover workload only.
#[derive(Args)]
#[command(next_help_heading = "Failover")]
pub struct FailoverArgs {
    /// How many times to stop the active node
    #[arg(long, default_value_t = 5)]
    rounds: u32,
    /// How the active node is stopped
    #[arg(long, value_enum, default_value = "kill")]
    signal: StopSignal,
    /// Extra flags for every node: `tandem server` flags (e.g. "--election-timeout-min-ms 500"),
    /// or etcd's with --target etcd (e.g. "--election-timeout=400")
    #[arg(long, allow_hyphen_values = true)]
    server_args: Option<String>,
    /// Keep the nodes' data and logs in this folder (it must not exist) instead of a temporary one
    #[arg(long)]
    keep_in: Option<PathBuf>,
}

const NODES: usize = 3;
const DEADLINE: Duration = Duration::from_secs(30);
/// How long one probe of a node's state may take.
const PROBE: Duration = Duration::from_millis(500);

/// One acknowledged write: when it completed and who acknowledged it.
struct Ack {
    at: Instant,
    by: Acknowledger,
}

/// The cluster under test: one process per node.
struct LocalCluster {
    system: System,
    nodes: Processes,
    /// Each node's client address: Tandem's API, etcd's client port.
    endpoints: Vec<String>,
}

const SECRET_API: &str = "bench-failover-api-secret-0001";

impl LocalCluster {
    fn start(system: System, extra: &[String], keep_in: Option<&PathBuf>) -> Result<LocalCluster> {
        let program = match system {
            System::Tandem => std::env::current_exe().context("cannot find this binary")?,
            System::Etcd => PathBuf::from("etcd"),
        };
        let dir = match keep_in {
            Some(path) => Folder::kept(path, true)?,
            None => Folder::temporary("tandem-bench-failover-")?,
        };
        // Per node: a port for its peers, then one for clients.
        let ports = free_ports(NODES * 2).context("cannot find free ports on 127.0.0.1")?;
        let peers: Vec<String> = (0..NODES)
            .map(|i| format!("127.0.0.1:{}", ports[2 * i]))
            .collect();
        let endpoints: Vec<String> = (0..NODES)
            .map(|i| format!("127.0.0.1:{}", ports[2 * i + 1]))
            .collect();
        let data_dir = |i: usize| dir.path().join(format!("n{}", i + 1)).display().to_string();
        let node_args: Vec<Vec<String>> = match system {
            System::Tandem => (0..NODES)
                .map(|i| {
                    server_args(
                        i,
                        &peers,
                        &endpoints,
                        dir.path(),
                        "bench-failover-raft-secret-001",
                        SECRET_API,
                    )
                })
                .collect(),
            // etcd's defaults otherwise, among them an fsync of its write-ahead log before a
            // write is acknowledged.
            System::Etcd => {
                let initial: Vec<String> = (0..NODES)
                    .map(|i| format!("n{}=http://{}", i + 1, peers[i]))
                    .collect();
                (0..NODES)
                    .map(|i| {
                        vec![
                            format!("--name=n{}", i + 1),
                            format!("--data-dir={}", data_dir(i)),
                            format!("--listen-peer-urls=http://{}", peers[i]),
                            format!("--initial-advertise-peer-urls=http://{}", peers[i]),
                            format!("--listen-client-urls=http://{}", endpoints[i]),
                            format!("--advertise-client-urls=http://{}", endpoints[i]),
                            format!("--initial-cluster={}", initial.join(",")),
                            "--initial-cluster-state=new".into(),
                            "--initial-cluster-token=tandem-bench".into(),
                            "--log-level=warn".into(),
                        ]
                    })
                    .collect()
            }
        };
        let mut nodes = Processes::new(program, dir, Some("warn"));
        for (i, mut args) in node_args.into_iter().enumerate() {
            args.extend(extra.iter().cloned());
            nodes.add(format!("node{}", i + 1), args);
        }
        nodes.spawn_all().with_context(|| match system {
            System::Tandem => "cannot start the cluster",
            System::Etcd => {
                "cannot start etcd: install it (Debian: apt-get install etcd-server) or put it on PATH"
            }
        })?;
        Ok(LocalCluster {
            system,
            nodes,
            endpoints,
        })
    }

    /// The leader's index in `endpoints` and how its acknowledgements look, once a majority
    /// has one. Gives up early, naming why, when so many nodes exited on their own (an etcd
    /// refusing a flag, say) that no majority is left.
    async fn leader(&mut self) -> Result<(usize, Acknowledger)> {
        let client = Client::new(&self.endpoints, Some(SECRET_API.into()))?.with_deadline(PROBE);
        let deadline = Instant::now() + DEADLINE;
        let mut exits = Vec::new();
        loop {
            let found = match self.system {
                System::Tandem => client
                    .get("/v1/sys/leader")
                    .await
                    .ok()
                    .and_then(|reply| reply.json().ok()?["leader_id"].as_u64())
                    .and_then(|id| {
                        Some((
                            usize::try_from(id).ok()?.checked_sub(1)?,
                            Acknowledger::Node(id),
                        ))
                    }),
                System::Etcd => self.etcd_leader().await,
            };
            if let Some(found) = found.filter(|(index, _)| *index < NODES) {
                return Ok(found);
            }
            while let Some((i, status)) = self.nodes.exited() {
                let log = std::fs::read_to_string(self.nodes.log_path(i)).unwrap_or_default();
                exits.push(format!(
                    "{} exited ({status}): {}",
                    self.nodes.name(i),
                    last_error(&log)
                ));
            }
            let majority_gone = exits.len() > NODES / 2;
            if majority_gone || Instant::now() >= deadline {
                let why = if majority_gone {
                    exits.join("; ")
                } else {
                    format!("none after {DEADLINE:?}")
                };
                bail!("no leader: {why}; logs in {}", self.nodes.dir().display());
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }

    async fn etcd_leader(&self) -> Option<(usize, Acknowledger)> {
        member_statuses(&self.endpoints, PROBE)
            .await
            .into_iter()
            .find_map(|(i, status)| {
                status
                    .is_leader
                    .then_some((i, Acknowledger::Term(status.term)))
            })
    }

    /// How far each answering node has committed and applied its log: (index, committed, applied).
    /// `nodes` holds a client of each Tandem node alone.
    async fn progress(&self, nodes: &[Client]) -> Vec<(usize, Option<u64>, Option<u64>)> {
        match self.system {
            System::Tandem => {
                let mut progress = Vec::new();
                for (i, node) in nodes.iter().enumerate() {
                    if let Some(health) =
                        node.get("/healthz").await.ok().and_then(|r| r.json().ok())
                    {
                        progress.push((
                            i,
                            health["commit_index"].as_u64(),
                            health["applied_index"].as_u64(),
                        ));
                    }
                }
                progress
            }
            System::Etcd => member_statuses(&self.endpoints, PROBE)
                .await
                .into_iter()
                .map(|(i, status)| (i, Some(status.committed_index), Some(status.applied_index)))
                .collect(),
        }
    }

    /// Waits until node `i` serves again and has caught up with the log the leader had
    /// committed when it came back, so every round starts from a healthy cluster.
    async fn caught_up(&self, i: usize) -> Result<()> {
        let nodes = self
            .endpoints
            .iter()
            .map(|endpoint| {
                Ok(Client::new(std::slice::from_ref(endpoint), None)?.with_deadline(PROBE))
            })
            .collect::<Result<Vec<_>>>()?;
        let mut target = None;
        poll_for(DEADLINE, POLL_INTERVAL, async || {
            let progress = self.progress(&nodes).await;
            if target.is_none() {
                // The highest commit index among the other nodes: the leader's.
                target = progress
                    .iter()
                    .filter(|(j, _, _)| *j != i)
                    .filter_map(|(_, committed, _)| *committed)
                    .max();
            }
            let applied = progress
                .iter()
                .find(|(j, _, _)| *j == i)
                .and_then(|(_, _, a)| *a);
            (target.is_some() && applied >= target).then_some(())
        })
        .await
        .map_err(|_| anyhow!("node {} did not catch up", i + 1))
    }
}

fn percentile_ms(h: &Histogram<u64>, q: f64) -> f64 {
    (h.value_at_quantile(q) as f64 / 10.0).round() / 100.0
}

/// Runs the failover workload with `concurrency` writers; `json` picks the output.
pub async fn failover(
    args: &FailoverArgs,
    system: System,
    concurrency: usize,
    json: bool,
) -> Result<()> {
    if args.rounds == 0 {
        bail!("--rounds must be at least 1");
    }
    let extra: Vec<String> = args
        .server_args
        .as_deref()
        .unwrap_or_default()
        .split_whitespace()
        .map(str::to_string)
        .collect();
    let mut cluster = LocalCluster::start(system, &extra, args.keep_in.as_ref())?;
    cluster.leader().await?;
    let acks = Arc::new(Mutex::new(Vec::<Ack>::new()));
    let failed = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let store = match system {
        System::Tandem => KvStore::Tandem(Arc::new(
            Client::new(&cluster.endpoints, Some(SECRET_API.into()))?.with_deadline(DEADLINE),
        )),
        System::Etcd => KvStore::etcd(&cluster.endpoints, DEADLINE).await?,
    };
    let mut writers = Vec::new();
    for worker in 0..concurrency {
        let (store, acks, failed, stop) =
            (store.clone(), acks.clone(), failed.clone(), stop.clone());
        writers.push(tokio::spawn(async move {
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                match store.put(&format!("failover-{worker}-{n}"), b"x").await {
                    Ok(by) => {
                        acks.lock().unwrap_or_else(|p| p.into_inner()).push(Ack {
                            at: Instant::now(),
                            by,
                        });
                    }
                    Err(_) => {
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }));
    }
    let mut took = Histogram::<u64>::new_with_bounds(1, 600_000_000, 3)?;
    let mut rounds = Vec::new();
    for round in 1..=args.rounds {
        let (index, leader) = cluster.leader().await?;
        let stopped_node = index + 1;
        let failed_before = failed.load(Ordering::Relaxed);
        let stopped_at = Instant::now();
        cluster.nodes.stop(index, args.signal)?;
        // Polled often: the time comes from the acknowledgement, but the next round waits.
        let first = poll_for(DEADLINE, Duration::from_millis(5), async || {
            acks.lock()
                .unwrap_or_else(|p| p.into_inner())
                .iter()
                .find(|a| a.at > stopped_at && a.by.is_after(&leader))
                .map(|a| a.at - stopped_at)
        })
        .await
        .map_err(|_| anyhow!("no write was acknowledged by a new leader within {DEADLINE:?}"))?;
        took.record(first.as_micros() as u64)?;
        let failed_in_round = failed.load(Ordering::Relaxed) - failed_before;
        rounds.push(json!({"round": round, "stopped_node": stopped_node, "ms": first.as_secs_f64() * 1000.0, "failed_writes": failed_in_round}));
        if !json {
            eprintln!(
                "round {round}: stopped node {stopped_node}; first write acknowledged by a new leader after {:.1} ms; {failed_in_round} failed writes",
                first.as_secs_f64() * 1000.0
            );
        }
        cluster.nodes.spawn(index)?;
        cluster.caught_up(index).await?;
    }
    stop.store(true, Ordering::Relaxed);
    for writer in writers {
        let _ = writer.await;
    }
    let acknowledged = acks.lock().unwrap_or_else(|p| p.into_inner()).len();
    let report = json!({
        "workload": "failover",
        "target": format!("{system:?}").to_lowercase(),
        "signal": format!("{:?}", args.signal).to_lowercase(),
        "rounds": args.rounds,
        "concurrency": concurrency,
        "acknowledged_writes": acknowledged,
        "failed_writes": failed.load(Ordering::Relaxed),
        "failover_ms": {
            "p50": percentile_ms(&took, 0.5),
            "p99": percentile_ms(&took, 0.99),
            "max": percentile_ms(&took, 1.0),
        },
        "per_round": rounds,
    });
    if json {
        println!("{report}");
    } else {
        println!(
            "{:<10} {:>7} {:>8} {:>10} {:>10} {:>10} {:>14}",
            "signal", "rounds", "acked", "failed", "p50 ms", "p99 ms", "max ms"
        );
        println!(
            "{:<10} {:>7} {:>8} {:>10} {:>10} {:>10} {:>14}",
            report["signal"].as_str().unwrap_or_default(),
            args.rounds,
            acknowledged,
            failed.load(Ordering::Relaxed),
            percentile_ms(&took, 0.5),
            percentile_ms(&took, 0.99),
            percentile_ms(&took, 1.0),
        );
    }
    Ok(())
}

/// The line of a log that says why a process stopped: its last line naming an error (usage
/// hints follow clap's), else its last line.
fn last_error(log: &str) -> &str {
    let mut lines = log.lines().rev().filter(|line| !line.trim().is_empty());
    let last = lines.clone().next();
    lines
        .find(|line| line.to_ascii_lowercase().contains("error"))
        .or(last)
        .unwrap_or("(nothing logged)")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_line_naming_the_error_is_picked_over_a_usage_hint() {
        let clap = "error: unexpected argument '--x' found\n\nUsage: tandem server\n\nFor more information, try '--help'.\n";
        assert_eq!(last_error(clap), "error: unexpected argument '--x' found");
        assert_eq!(last_error("started\nstopped\n\n"), "stopped");
        assert_eq!(last_error(""), "(nothing logged)");
    }
}
