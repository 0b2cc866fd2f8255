//! `tandem bench failover`: starts a 3-node cluster of this binary on 127.0.0.1, keeps a steady
//! write load on it, stops the active node again and again (SIGKILL or SIGTERM), and reports how
//! long writes took to be acknowledged by a new active node, and how many failed meanwhile.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::{Args, ValueEnum};
use hdrhistogram::Histogram;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::json;
use tandem_client::Client;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum StopSignal {
    /// A crash: SIGKILL
    Kill,
    /// A graceful stop: SIGTERM (the active node hands over before exiting)
    Term,
}

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
    /// Extra `tandem server` flags for every node (e.g. "--election-timeout-min-ms 500")
    #[arg(long, allow_hyphen_values = true)]
    server_args: Option<String>,
    /// Keep the nodes' data and logs in this folder (it must not exist) instead of a temporary one
    #[arg(long)]
    keep_in: Option<PathBuf>,
}

const NODES: usize = 3;
const DEADLINE: Duration = Duration::from_secs(30);

/// One acknowledged write: when it completed and which node served it.
struct Ack {
    at: Instant,
    served_by: u64,
}

/// Where the nodes keep their data and logs.
enum Folder {
    Temporary(tempfile::TempDir),
    Kept(PathBuf),
}

impl Folder {
    fn path(&self) -> &std::path::Path {
        match self {
            Folder::Temporary(dir) => dir.path(),
            Folder::Kept(path) => path,
        }
    }
}

struct LocalCluster {
    binary: PathBuf,
    dir: Folder,
    node_args: Vec<Vec<String>>,
    /// Each node's API address.
    api: Vec<String>,
    children: Vec<Option<Child>>,
    client: Client,
}

const SECRET_API: &str = "bench-failover-api-secret-0001";

impl Drop for LocalCluster {
    fn drop(&mut self) {
        for child in self.children.iter_mut().flatten() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn free_ports(count: usize) -> Result<Vec<u16>> {
    let listeners = (0..count)
        .map(|_| TcpListener::bind("127.0.0.1:0"))
        .collect::<std::io::Result<Vec<_>>>()
        .context("cannot find free ports on 127.0.0.1")?;
    listeners
        .iter()
        .map(|l| Ok(l.local_addr()?.port()))
        .collect()
}

impl LocalCluster {
    fn start(extra: &[String], keep_in: Option<&PathBuf>) -> Result<LocalCluster> {
        let binary = std::env::current_exe().context("cannot find this binary")?;
        let dir = match keep_in {
            Some(path) => {
                if path.exists() {
                    bail!("{} already exists; name a new folder", path.display());
                }
                std::fs::create_dir_all(path)?;
                Folder::Kept(path.clone())
            }
            None => {
                Folder::Temporary(tempfile::tempdir().context("cannot make a temporary folder")?)
            }
        };
        let ports = free_ports(NODES * 2)?;
        let api: Vec<String> = (0..NODES)
            .map(|i| format!("127.0.0.1:{}", ports[2 * i + 1]))
            .collect();
        let nodes: Vec<String> = (0..NODES)
            .map(|i| format!("{} 127.0.0.1:{} {}", i + 1, ports[2 * i], api[i]))
            .collect();
        let node_args = (0..NODES)
            .map(|i| {
                let mut args: Vec<String> = [
                    "server",
                    "--node-id",
                    &(i + 1).to_string(),
                    "--nodes",
                    &nodes.join("\n"),
                    "--data-dir",
                    &dir.path().join(format!("n{}", i + 1)).display().to_string(),
                    "--secret-raft",
                    "bench-failover-raft-secret-001",
                    "--secret-api",
                    SECRET_API,
                ]
                .iter()
                .map(|s| s.to_string())
                .collect();
                args.extend(extra.iter().cloned());
                args
            })
            .collect();
        let client = Client::new(&api, Some(SECRET_API.into()))?.with_deadline(DEADLINE);
        let mut cluster = LocalCluster {
            binary,
            dir,
            node_args,
            api,
            children: (0..NODES).map(|_| None).collect(),
            client,
        };
        for i in 0..NODES {
            cluster.spawn(i)?;
        }
        Ok(cluster)
    }

    fn log_path(&self, i: usize) -> PathBuf {
        self.dir.path().join(format!("node{}.log", i + 1))
    }

    fn spawn(&mut self, i: usize) -> Result<()> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path(i))?;
        let child = Command::new(&self.binary)
            .args(&self.node_args[i])
            .env("TANDEM_LOG_LEVEL", "warn")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("cannot start {}", self.binary.display()))?;
        self.children[i] = Some(child);
        Ok(())
    }

    fn stop(&mut self, i: usize, signal: StopSignal) -> Result<()> {
        let Some(mut child) = self.children[i].take() else {
            bail!("node {} is not running", i + 1);
        };
        let pid = Pid::from_raw(i32::try_from(child.id())?);
        let signal = match signal {
            StopSignal::Kill => Signal::SIGKILL,
            StopSignal::Term => Signal::SIGTERM,
        };
        kill(pid, signal)?;
        child.wait()?;
        Ok(())
    }

    /// The active node's id, once a majority has one.
    async fn active(&self) -> Result<u64> {
        let started = Instant::now();
        loop {
            if let Ok(reply) = self.client.get("/v1/sys/leader").await {
                if let Some(id) = reply.json().ok().and_then(|v| v["leader_id"].as_u64()) {
                    return Ok(id);
                }
            }
            if started.elapsed() > DEADLINE {
                bail!(
                    "no active node after {DEADLINE:?}; logs in {}",
                    self.dir.path().display()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until node `i` serves again and has caught up with the log the active node had
    /// committed when it came back, so every round starts from a healthy cluster.
    async fn caught_up(&self, i: usize) -> Result<()> {
        let probe = Client::new(&self.api[i..=i], None)?.with_deadline(Duration::from_millis(200));
        let healthz = |reply: tandem_client::Reply| reply.json().ok();
        let started = Instant::now();
        let mut target = None;
        loop {
            if target.is_none() {
                // The highest commit index among the other nodes: the active node's.
                for other in (0..NODES).filter(|j| *j != i) {
                    let peer = Client::new(&self.api[other..=other], None)?
                        .with_deadline(Duration::from_millis(200));
                    if let Ok(reply) = peer.get("/healthz").await {
                        let commit = healthz(reply).and_then(|v| v["commit_index"].as_u64());
                        target = target.max(commit);
                    }
                }
            }
            if let (Some(target), Ok(reply)) = (target, probe.get("/healthz").await) {
                let applied = healthz(reply).and_then(|v| v["applied_index"].as_u64());
                if applied.is_some_and(|a| a >= target) {
                    return Ok(());
                }
            }
            if started.elapsed() > DEADLINE {
                bail!("node {} did not catch up", i + 1);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

fn percentile_ms(h: &Histogram<u64>, q: f64) -> f64 {
    (h.value_at_quantile(q) as f64 / 10.0).round() / 100.0
}

/// Runs the failover workload with `concurrency` writers; `json` picks the output.
pub async fn failover(args: &FailoverArgs, concurrency: usize, json: bool) -> Result<()> {
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
    let mut cluster = LocalCluster::start(&extra, args.keep_in.as_ref())?;
    cluster.active().await?;
    let acks = Arc::new(Mutex::new(Vec::<Ack>::new()));
    let failed = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let client =
        Arc::new(Client::new(&cluster.api, Some(SECRET_API.into()))?.with_deadline(DEADLINE));
    let mut writers = Vec::new();
    for worker in 0..concurrency {
        let (client, acks, failed, stop) =
            (client.clone(), acks.clone(), failed.clone(), stop.clone());
        writers.push(tokio::spawn(async move {
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                let path = format!("/v1/kv/failover-{worker}-{n}");
                match client.put_bytes(&path, b"x".to_vec()).await {
                    Ok(reply) if reply.status.is_success() => {
                        let served_by = reply
                            .headers
                            .get("tandem-node-id")
                            .and_then(|v| v.to_str().ok())
                            .and_then(|v| v.parse().ok())
                            .unwrap_or_default();
                        acks.lock().unwrap_or_else(|p| p.into_inner()).push(Ack {
                            at: Instant::now(),
                            served_by,
                        });
                    }
                    _ => {
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }));
    }
    let mut took = Histogram::<u64>::new_with_bounds(1, 600_000_000, 3)?;
    let mut rounds = Vec::new();
    for round in 1..=args.rounds {
        let active = cluster.active().await?;
        let index = usize::try_from(active)? - 1;
        let failed_before = failed.load(Ordering::Relaxed);
        let stopped_at = Instant::now();
        cluster.stop(index, args.signal)?;
        let first = loop {
            let found = acks
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .iter()
                .find(|a| a.at > stopped_at && a.served_by != active && a.served_by != 0)
                .map(|a| a.at - stopped_at);
            if let Some(d) = found {
                break d;
            }
            if stopped_at.elapsed() > DEADLINE {
                bail!("no write was acknowledged by a new active node within {DEADLINE:?}");
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        };
        took.record(first.as_micros() as u64)?;
        let failed_in_round = failed.load(Ordering::Relaxed) - failed_before;
        rounds.push(json!({"round": round, "stopped_node": active, "ms": first.as_secs_f64() * 1000.0, "failed_writes": failed_in_round}));
        if !json {
            eprintln!(
                "round {round}: stopped node {active}; first write on a new active node after {:.1} ms; {failed_in_round} failed writes",
                first.as_secs_f64() * 1000.0
            );
        }
        cluster.spawn(index)?;
        cluster.caught_up(index).await?;
    }
    stop.store(true, Ordering::Relaxed);
    for writer in writers {
        let _ = writer.await;
    }
    let acknowledged = acks.lock().unwrap_or_else(|p| p.into_inner()).len();
    let report = json!({
        "workload": "failover",
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
            report["failed_writes"],
            report["failover_ms"]["p50"],
            report["failover_ms"]["p99"],
            report["failover_ms"]["max"],
        );
    }
    Ok(())
}
