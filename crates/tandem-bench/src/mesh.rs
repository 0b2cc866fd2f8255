//! `tandem bench mesh`: starts a 1-node server and five agents of this binary on 127.0.0.1 (two
//! exits, two transits, one SOCKS5 ingress), a sink and an echo target in this process, and
//! measures side by side: direct loopback TCP, the mesh (ingress → transit → exit, two QUIC hops)
//! and a one-hop plaintext SOCKS5 proxy (Debian's `microsocks`, when it is on PATH). Throughput
//! of one and of `--streams` streams with the processor time each path spent per megabyte,
//! connect latency (SOCKS5 CONNECT to the first byte echoed), then route failover: kill -9 the
//! transit in use, and time until a new connection succeeds.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use clap::Args;
use hdrhistogram::Histogram;
use serde_json::{json, Value};
use tandem_testkit::{free_ports, join_token, poll_for, AgentProcess, Cluster};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::run::{latency_histogram, latency_ms, millis};

/// Settings of the mesh workload only.
#[derive(Args)]
#[command(next_help_heading = "Mesh")]
pub struct MeshArgs {
    /// How many times to kill -9 the transit in use
    #[arg(long, default_value_t = 20)]
    failover_rounds: u32,
    /// Connections opened one after another per path for the connect latency
    #[arg(long, default_value_t = 200)]
    connects: u32,
    /// Streams at once in the second throughput run (the first has one)
    #[arg(long, default_value_t = 16)]
    streams: usize,
}

const POOL: &str = "mesh";
/// How long the mesh may take to come up, or to come back after a restart.
const DEADLINE: Duration = Duration::from_secs(60);
/// How long one connection attempt may take before it counts as failed.
const ATTEMPT: Duration = Duration::from_secs(5);
/// Bytes per write of a throughput stream.
const CHUNK: usize = 64 * 1024;
const EXIT_ROUTE: &str = "127.0.0.0/8";

/// A way to reach the targets.
#[derive(Clone, Copy)]
enum Via {
    Direct,
    Socks(SocketAddr),
}

impl Via {
    /// Opens a TCP connection to `target`, through the SOCKS5 proxy if there is one.
    async fn connect(self, target: SocketAddr) -> Result<TcpStream> {
        match self {
            Via::Direct => Ok(TcpStream::connect(target).await?),
            Via::Socks(proxy) => socks5_connect(proxy, target).await,
        }
    }
}

/// A SOCKS5 CONNECT without authentication (RFC 1928), to an IPv4 or IPv6 address.
async fn socks5_connect(proxy: SocketAddr, target: SocketAddr) -> Result<TcpStream> {
    let mut stream = TcpStream::connect(proxy).await?;
    stream.set_nodelay(true)?;
    stream.write_all(&[5, 1, 0]).await?;
    let mut choice = [0u8; 2];
    stream.read_exact(&mut choice).await?;
    if choice != [5, 0] {
        bail!("the proxy wants authentication method {}", choice[1]);
    }
    let mut request = vec![5, 1, 0];
    match target.ip() {
        std::net::IpAddr::V4(ip) => {
            request.push(1);
            request.extend(ip.octets());
        }
        std::net::IpAddr::V6(ip) => {
            request.push(4);
            request.extend(ip.octets());
        }
    }
    request.extend(target.port().to_be_bytes());
    stream.write_all(&request).await?;
    let mut head = [0u8; 4];
    stream.read_exact(&mut head).await?;
    if head[1] != 0 {
        bail!("SOCKS5 CONNECT refused with reply {}", head[1]);
    }
    let rest = match head[3] {
        1 => 4 + 2,
        4 => 16 + 2,
        3 => {
            let mut len = [0u8; 1];
            stream.read_exact(&mut len).await?;
            usize::from(len[0]) + 2
        }
        other => bail!("SOCKS5 reply with address type {other}"),
    };
    let mut bound = vec![0u8; rest];
    stream.read_exact(&mut bound).await?;
    Ok(stream)
}

/// The targets in this process: a sink that counts what it received, and an echo.
struct Targets {
    sink: SocketAddr,
    echo: SocketAddr,
    received: Arc<AtomicU64>,
    /// Connections to the sink whose last byte has not arrived yet.
    sinking: Arc<AtomicU64>,
}

impl Targets {
    async fn start() -> Result<Targets> {
        let sink = TcpListener::bind("127.0.0.1:0").await?;
        let echo = TcpListener::bind("127.0.0.1:0").await?;
        let received = Arc::new(AtomicU64::new(0));
        let sinking = Arc::new(AtomicU64::new(0));
        let targets = Targets {
            sink: sink.local_addr()?,
            echo: echo.local_addr()?,
            received: received.clone(),
            sinking: sinking.clone(),
        };
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = sink.accept().await {
                let received = received.clone();
                let sinking = sinking.clone();
                sinking.fetch_add(1, Ordering::Relaxed);
                tokio::spawn(async move {
                    let mut buffer = vec![0u8; CHUNK];
                    while let Ok(n) = stream.read(&mut buffer).await {
                        if n == 0 {
                            break;
                        }
                        received.fetch_add(n as u64, Ordering::Relaxed);
                    }
                    sinking.fetch_sub(1, Ordering::Relaxed);
                });
            }
        });
        tokio::spawn(async move {
            while let Ok((stream, _)) = echo.accept().await {
                tokio::spawn(async move {
                    let _ = stream.set_nodelay(true);
                    let (mut read, mut write) = stream.into_split();
                    let _ = tokio::io::copy(&mut read, &mut write).await;
                });
            }
        });
        Ok(targets)
    }
}

/// Linux counts processor time in `/proc` in ticks of 1/100 s on every architecture it runs
/// Tandem on (`USER_HZ`, fixed by its ABI whatever the kernel's own tick).
const USER_HZ: f64 = 100.0;

/// Processor seconds a process has used so far, all its threads, user and system time, from
/// `/proc/<pid>/stat`; 0 when it cannot be read (the process is gone).
fn process_cpu_seconds(pid: u32) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    // The command name, in parentheses, may hold spaces: count the fields after it, where the
    // line's 14th and 15th fields (utime, stime) are the 12th and 13th.
    let Some((_, after_name)) = stat.rsplit_once(')') else {
        return 0.0;
    };
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let ticks: u64 = [11, 12]
        .iter()
        .filter_map(|&i| fields.get(i)?.parse::<u64>().ok())
        .sum();
    ticks as f64 / USER_HZ
}

/// The machine's processor time so far, all cores, as (busy, total) ticks: the first line of
/// `/proc/stat`, where idle and waiting for I/O count as not busy.
fn machine_cpu_ticks() -> (u64, u64) {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let ticks: Vec<u64> = stat
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .skip(1)
        .take(8)
        .filter_map(|field| field.parse().ok())
        .collect();
    let total: u64 = ticks.iter().sum();
    let idle: u64 = ticks.iter().skip(3).take(2).sum();
    (total.saturating_sub(idle), total)
}

/// What a throughput run cost in processor time, so that paths are compared per byte as well as
/// per second: on a machine whose cores are all busy, throughput is what the processor time
/// per byte allows.
#[derive(Clone, Copy)]
struct CpuCost {
    /// This process (the writers and the sink), in core-milliseconds per MB that reached the sink.
    bench: f64,
    /// The processes that carry the bytes between them (the agents, or the proxy), likewise.
    carriers: f64,
    /// The one of them that used the most, likewise.
    busiest_carrier: f64,
    /// How much of the machine's processor time was busy during the run, in per cent.
    machine_busy_percent: f64,
}

/// Processor time used so far by this process, the carriers, and the machine.
struct CpuSnapshot {
    bench: f64,
    carriers: Vec<f64>,
    machine: (u64, u64),
}

impl CpuSnapshot {
    fn take(carriers: &[u32]) -> CpuSnapshot {
        CpuSnapshot {
            bench: process_cpu_seconds(std::process::id()),
            carriers: carriers
                .iter()
                .map(|&pid| process_cpu_seconds(pid))
                .collect(),
            machine: machine_cpu_ticks(),
        }
    }

    /// The cost from `self` to `later`, over `mb` megabytes carried.
    fn cost_until(&self, later: &CpuSnapshot, mb: f64) -> CpuCost {
        let per_mb =
            |seconds: f64| (seconds * 1000.0 / mb.max(f64::MIN_POSITIVE) * 1000.0).round() / 1000.0;
        let busy = later.machine.0.saturating_sub(self.machine.0) as f64;
        let total = later.machine.1.saturating_sub(self.machine.1).max(1) as f64;
        let carriers: Vec<f64> = later
            .carriers
            .iter()
            .zip(&self.carriers)
            .map(|(after, before)| after - before)
            .collect();
        CpuCost {
            bench: per_mb(later.bench - self.bench),
            // Folded from +0.0: a sum of no carriers (the direct path) is then 0, not -0.
            carriers: per_mb(carriers.iter().fold(0.0, |total, used| total + used)),
            busiest_carrier: per_mb(carriers.iter().copied().fold(0.0, f64::max)),
            machine_busy_percent: (busy / total * 1000.0).round() / 10.0,
        }
    }
}

/// Megabytes (10^6 bytes) a second that reached the sink through `path` from `streams`
/// streams that write for `duration` once all of them are connected, and what that cost in
/// processor time.
async fn throughput(
    path: &MeasuredPath<'_>,
    targets: &Targets,
    streams: usize,
    duration: Duration,
) -> Result<(f64, CpuCost)> {
    let mut connections = Vec::new();
    for _ in 0..streams {
        let stream = tokio::time::timeout(ATTEMPT, path.via.connect(targets.sink))
            .await
            .map_err(|_| anyhow!("connecting took over {ATTEMPT:?}"))??;
        connections.push(stream);
    }
    let before = targets.received.load(Ordering::Relaxed);
    let cpu_before = CpuSnapshot::take(path.carriers);
    let started = Instant::now();
    let deadline = tokio::time::Instant::now() + duration;
    let mut writers = Vec::new();
    for mut stream in connections {
        writers.push(tokio::spawn(async move {
            let buffer = vec![0x5au8; CHUNK];
            while tokio::time::timeout_at(deadline, stream.write_all(&buffer))
                .await
                .is_ok_and(|written| written.is_ok())
            {}
        }));
    }
    tokio::time::sleep_until(deadline).await;
    let after = targets.received.load(Ordering::Relaxed);
    let elapsed = started.elapsed();
    let cpu_after = CpuSnapshot::take(path.carriers);
    for writer in writers {
        let _ = writer.await;
    }
    // What the path still buffers is delivered before the next measurement starts, so that it
    // does not queue behind this run's tail.
    poll_for(DEADLINE, Duration::from_millis(10), async || {
        (targets.sinking.load(Ordering::Relaxed) == 0).then_some(())
    })
    .await
    .map_err(|_| anyhow!("the sink did not get the end of every stream within {DEADLINE:?}"))?;
    let mb = (after - before) as f64 / 1e6;
    Ok((
        (mb / elapsed.as_secs_f64() * 10.0).round() / 10.0,
        cpu_before.cost_until(&cpu_after, mb),
    ))
}

/// Connects through `path` to the echo target and waits for one byte to come back.
async fn echo_once(path: Via, echo: SocketAddr) -> Result<()> {
    let mut stream = path.connect(echo).await?;
    stream.write_all(b"x").await?;
    let mut byte = [0u8; 1];
    stream.read_exact(&mut byte).await?;
    Ok(())
}

/// The connect latency through `path` over `count` connections one after another, in
/// microseconds, and how many failed.
async fn connect_latency(path: Via, echo: SocketAddr, count: u32) -> (Histogram<u64>, u64) {
    let mut histogram = latency_histogram();
    let mut failed = 0;
    for _ in 0..count {
        let started = Instant::now();
        match tokio::time::timeout(ATTEMPT, echo_once(path, echo)).await {
            Ok(Ok(())) => histogram.saturating_record(started.elapsed().as_micros() as u64),
            _ => failed += 1,
        }
    }
    (histogram, failed)
}

/// `microsocks` on a free port, killed when dropped.
struct Microsocks {
    child: Child,
    addr: SocketAddr,
}

impl Drop for Microsocks {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Microsocks {
    /// Starts it, or answers `None` when it is not on PATH.
    async fn start() -> Result<Option<Microsocks>> {
        let port = free_ports(1)?[0];
        let child = match Command::new("microsocks")
            .args(["-i", "127.0.0.1", "-p", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
        {
            Ok(child) => child,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e).context("cannot start microsocks"),
        };
        let proxy = Microsocks {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
        };
        poll_for(DEADLINE, Duration::from_millis(20), async || {
            TcpStream::connect(proxy.addr).await.ok().map(|_| ())
        })
        .await
        .map_err(|_| anyhow!("microsocks did not listen on {}", proxy.addr))?;
        Ok(Some(proxy))
    }
}

/// One agent's name and the flags after the harness's own.
struct AgentSpec {
    name: String,
    args: Vec<String>,
}

/// The server and the five agents; every process is killed when dropped.
struct Mesh {
    binary: PathBuf,
    cluster: Cluster,
    token: String,
    /// Every agent's data folder lives in here, so a restarted agent finds its own.
    dir: tempfile::TempDir,
    specs: Vec<AgentSpec>,
    agents: Vec<AgentProcess>,
    socks: SocketAddr,
    http: reqwest::Client,
}

const INGRESS: usize = 4;
const TRANSITS: [usize; 2] = [2, 3];

impl Mesh {
    async fn start() -> Result<Mesh> {
        let binary = std::env::current_exe().context("cannot find this binary")?;
        let cluster = Cluster::start(&binary, 1, &[]).await;
        cluster.leader().await;
        let token = join_token(&cluster, POOL, json!({})).await;
        let ports = free_ports(6).context("cannot find free ports on 127.0.0.1")?;
        let addr = |port: u16| format!("127.0.0.1:{port}");
        let mesh = |listen: u16, peers: &[u16]| {
            let mut args = vec!["--mesh-listen".to_string(), addr(listen)];
            for &peer in peers {
                args.extend(["--mesh-peer".to_string(), addr(peer)]);
            }
            args
        };
        let (e1, e2, t1, t2, ingress, socks) =
            (ports[0], ports[1], ports[2], ports[3], ports[4], ports[5]);
        let exit = |listen| {
            let mut args = mesh(listen, &[]);
            args.extend(["--exit-route".to_string(), EXIT_ROUTE.to_string()]);
            args
        };
        let mut ingress_args = mesh(ingress, &[t1, t2]);
        ingress_args.extend(["--socks5-listen".to_string(), addr(socks)]);
        let specs = vec![
            ("exit-a", exit(e1)),
            ("exit-b", exit(e2)),
            ("transit-a", mesh(t1, &[e1, e2])),
            ("transit-b", mesh(t2, &[e1, e2])),
            ("ingress", ingress_args),
        ]
        .into_iter()
        .map(|(name, args)| AgentSpec {
            name: name.to_string(),
            args,
        })
        .collect();
        let mut mesh = Mesh {
            binary,
            cluster,
            token,
            dir: tempfile::tempdir().context("cannot make a temporary folder")?,
            specs,
            agents: Vec::new(),
            socks: SocketAddr::from(([127, 0, 0, 1], socks)),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(2))
                .build()?,
        };
        for i in 0..mesh.specs.len() {
            let agent = mesh.spawn(i)?;
            mesh.agents.push(agent);
        }
        Ok(mesh)
    }

    /// The running agents' process ids.
    fn process_ids(&self) -> Vec<u32> {
        self.agents
            .iter()
            .filter_map(AgentProcess::process_id)
            .collect()
    }

    fn data_dir(&self, i: usize) -> PathBuf {
        self.dir.path().join(&self.specs[i].name)
    }

    /// Starts agent `i` with its data folder (made on the first start).
    fn spawn(&self, i: usize) -> Result<AgentProcess> {
        let data_dir = self.data_dir(i);
        std::fs::create_dir_all(&data_dir)?;
        let spec = &self.specs[i];
        let args: Vec<&str> = spec.args.iter().map(String::as_str).collect();
        Ok(AgentProcess::start_in(
            &self.binary,
            &self.cluster,
            &spec.name,
            POOL,
            Some(&self.token),
            &args,
            Path::new(&data_dir),
        ))
    }

    /// The ingress's routes as its `/healthz` shows them (`mesh.routes`).
    async fn routes(&self) -> Vec<Value> {
        let url = format!("{}/healthz", self.agents[INGRESS].health_url());
        let Ok(reply) = self.http.get(url).send().await else {
            return Vec::new();
        };
        let health: Value = reply.json().await.unwrap_or_default();
        health["mesh"]["routes"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// Waits until the ingress stores a two-hop path through every transit, and answers the
    /// index of the transit its selected path goes through.
    async fn both_paths(&self) -> Result<usize> {
        let names: Vec<&str> = TRANSITS
            .iter()
            .map(|&i| self.specs[i].name.as_str())
            .collect();
        poll_for(DEADLINE, Duration::from_millis(50), async || {
            let routes = self.routes().await;
            let through = |name: &str| {
                routes
                    .iter()
                    .any(|r| r["metric"] == 2 && r["next_hop"] == name)
            };
            if !names.iter().all(|name| through(name)) {
                return None;
            }
            let selected = routes
                .iter()
                .find(|r| r["state"] == "selected")?
                .get("next_hop")?
                .as_str()?
                .to_string();
            TRANSITS
                .iter()
                .copied()
                .find(|&i| self.specs[i].name == selected)
        })
        .await
        .map_err(|_| {
            anyhow!(
                "the ingress had no paths through both transits within {DEADLINE:?}; its log:\n{}",
                self.agents[INGRESS].log()
            )
        })
    }

    /// Waits until the ingress no longer stores a path through agent `i`.
    async fn forgotten(&self, i: usize) -> Result<()> {
        let name = self.specs[i].name.as_str();
        poll_for(DEADLINE, Duration::from_millis(50), async || {
            let routes = self.routes().await;
            (!routes.iter().any(|r| r["next_hop"] == name)).then_some(())
        })
        .await
        .map_err(|_| anyhow!("the ingress kept paths through {name} for {DEADLINE:?}"))
    }
}

/// One column of the table.
struct Column {
    name: &'static str,
    mb_s: Vec<f64>,
    cpu: Vec<CpuCost>,
    latency: Histogram<u64>,
    failed: u64,
}

impl Column {
    fn json(&self, streams: &[usize]) -> Value {
        let throughput: serde_json::Map<String, Value> = streams
            .iter()
            .zip(&self.mb_s)
            .map(|(n, mb)| (format!("streams_{n}"), json!(mb)))
            .collect();
        let cpu: serde_json::Map<String, Value> = streams
            .iter()
            .zip(&self.cpu)
            .map(|(n, cost)| {
                let cost = json!({
                    "bench_core_ms_per_mb": cost.bench,
                    "carriers_core_ms_per_mb": cost.carriers,
                    "busiest_carrier_core_ms_per_mb": cost.busiest_carrier,
                    "machine_busy_percent": cost.machine_busy_percent,
                });
                (format!("streams_{n}"), cost)
            })
            .collect();
        json!({
            "path": self.name,
            "throughput_mb_s": throughput,
            "cpu": cpu,
            "connect_ms": latency_ms(&self.latency),
            "connect_failed": self.failed,
        })
    }
}

/// A path to measure: its column's name, the way to the targets, and the processes that carry
/// its bytes.
struct MeasuredPath<'a> {
    name: &'static str,
    via: Via,
    carriers: &'a [u32],
}

async fn measure(
    path: MeasuredPath<'_>,
    targets: &Targets,
    streams: &[usize],
    duration: Duration,
    connects: u32,
    quiet: bool,
) -> Result<Column> {
    let name = path.name;
    let mut mb_s = Vec::new();
    let mut cpu = Vec::new();
    for &n in streams {
        let (rate, cost) = throughput(&path, targets, n, duration)
            .await
            .with_context(|| format!("throughput through {name} with {n} streams"))?;
        if !quiet {
            eprintln!(
                "{name}: {n} stream(s): {rate} MB/s; core-ms per MB: bench {}, carriers {} (busiest {}); machine {} % busy",
                cost.bench, cost.carriers, cost.busiest_carrier, cost.machine_busy_percent
            );
        }
        mb_s.push(rate);
        cpu.push(cost);
    }
    let (latency, failed) = connect_latency(path.via, targets.echo, connects).await;
    if !quiet {
        eprintln!(
            "{name}: connect p50 {} ms, p99 {} ms, {failed} failed",
            millis(latency.value_at_quantile(0.5)),
            millis(latency.value_at_quantile(0.99))
        );
    }
    Ok(Column {
        name,
        mb_s,
        cpu,
        latency,
        failed,
    })
}

/// Runs the mesh workload; `json` picks the output.
pub async fn mesh(args: &MeshArgs, duration: Duration, json: bool) -> Result<()> {
    if args.failover_rounds == 0 || args.connects == 0 || args.streams == 0 {
        bail!("--failover-rounds, --connects and --streams must be at least 1");
    }
    let targets = Targets::start().await?;
    let mut mesh = Mesh::start().await?;
    let started = Instant::now();
    mesh.both_paths().await?;
    poll_for(DEADLINE, Duration::from_millis(50), async || {
        echo_once(Via::Socks(mesh.socks), targets.echo).await.ok()
    })
    .await
    .map_err(|_| anyhow!("no connection through the mesh within {DEADLINE:?}"))?;
    if !json {
        eprintln!(
            "mesh up after {:.1} s: ingress → transit-a|transit-b → exit-a|exit-b",
            started.elapsed().as_secs_f64()
        );
    }
    let microsocks = Microsocks::start().await?;
    if microsocks.is_none() && !json {
        eprintln!("microsocks is not on PATH: no one-hop proxy column (Debian: apt-get install microsocks)");
    }
    let streams = [1, args.streams];
    let mut columns = vec![
        measure(
            MeasuredPath {
                name: "direct",
                via: Via::Direct,
                carriers: &[],
            },
            &targets,
            &streams,
            duration,
            args.connects,
            json,
        )
        .await?,
        measure(
            MeasuredPath {
                name: "mesh",
                via: Via::Socks(mesh.socks),
                carriers: &mesh.process_ids(),
            },
            &targets,
            &streams,
            duration,
            args.connects,
            json,
        )
        .await?,
    ];
    if let Some(proxy) = &microsocks {
        columns.push(
            measure(
                MeasuredPath {
                    name: "microsocks",
                    via: Via::Socks(proxy.addr),
                    carriers: &[proxy.child.id()],
                },
                &targets,
                &streams,
                duration,
                args.connects,
                json,
            )
            .await?,
        );
    }
    drop(microsocks);

    let mut took = Histogram::<u64>::new_with_bounds(1, 600_000_000, 3)?;
    let mut rounds = Vec::new();
    for round in 1..=args.failover_rounds {
        let victim = mesh.both_paths().await?;
        let name = mesh.specs[victim].name.clone();
        let killed = Instant::now();
        mesh.agents[victim].kill();
        let mut failed_attempts = 0u32;
        let moved = loop {
            match tokio::time::timeout(ATTEMPT, echo_once(Via::Socks(mesh.socks), targets.echo))
                .await
            {
                Ok(Ok(())) => break killed.elapsed(),
                _ => failed_attempts += 1,
            }
            if killed.elapsed() > DEADLINE {
                bail!("no connection through the mesh within {DEADLINE:?} of killing {name}");
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        };
        took.record(moved.as_micros() as u64)?;
        if !json {
            eprintln!(
                "round {round}: killed {name}; first new connection after {:.1} ms ({failed_attempts} failed attempts)",
                moved.as_secs_f64() * 1000.0
            );
        }
        rounds.push(json!({"round": round, "killed": name, "ms": moved.as_secs_f64() * 1000.0, "failed_attempts": failed_attempts}));
        // Start again only once the ingress let go of the dead path, so that the next round
        // waits for the new one.
        mesh.forgotten(victim).await?;
        mesh.agents[victim] = mesh.spawn(victim)?;
    }

    let names: Vec<&str> = columns.iter().map(|c| c.name).collect();
    let failover = json!({
        "rounds": args.failover_rounds,
        "p50": millis(took.value_at_quantile(0.5)),
        "p99": millis(took.value_at_quantile(0.99)),
        "max": millis(took.max()),
    });
    let report = json!({
        "workload": "mesh",
        "duration_s": duration.as_secs_f64(),
        "connects": args.connects,
        "microsocks": names.contains(&"microsocks"),
        "paths": columns.iter().map(|c| c.json(&streams)).collect::<Vec<_>>(),
        "failover_ms": failover,
        "per_round": rounds,
    });
    if json {
        println!("{report}");
        return Ok(());
    }
    print!("{:<32}", "");
    for name in &names {
        print!(" {name:>12}");
    }
    println!();
    for (k, n) in streams.iter().enumerate() {
        print!("{:<32}", format!("MB/s, {n} stream(s)"));
        for column in &columns {
            print!(" {:>12.1}", column.mb_s[k]);
        }
        println!();
    }
    type CostField = fn(&CpuCost) -> f64;
    let cost_rows: [(&str, CostField); 4] = [
        ("bench core-ms/MB", |cost| cost.bench),
        ("carriers core-ms/MB", |cost| cost.carriers),
        ("busiest carrier core-ms/MB", |cost| cost.busiest_carrier),
        ("machine busy %", |cost| cost.machine_busy_percent),
    ];
    for (label, value) in cost_rows {
        for (k, n) in streams.iter().enumerate() {
            print!("{:<32}", format!("{label}, {n}"));
            for column in &columns {
                print!(" {:>12.3}", value(&column.cpu[k]));
            }
            println!();
        }
    }
    for (label, q) in [("connect p50 ms", 0.5), ("connect p99 ms", 0.99)] {
        print!("{label:<32}");
        for column in &columns {
            print!(" {:>12.2}", millis(column.latency.value_at_quantile(q)));
        }
        println!();
    }
    print!("{:<32}", "connects failed");
    for column in &columns {
        print!(" {:>12}", column.failed);
    }
    println!();
    if !names.contains(&"microsocks") {
        println!("(microsocks not on PATH: no one-hop proxy column)");
    }
    println!(
        "failover, {} rounds (kill -9 of the transit in use → first new connection): p50 {} ms, p99 {} ms, max {} ms",
        args.failover_rounds, failover["p50"], failover["p99"], failover["max"]
    );
    Ok(())
}
