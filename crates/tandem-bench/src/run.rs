//! `tandem bench`: drives a workload against a cluster with many concurrent clients and reports
//! throughput and latency percentiles. Only acknowledged (2xx) operations count as done.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use clap::{Args, ValueEnum};
use hdrhistogram::Histogram;
use serde_json::{json, Value};
use tandem_client::{segment, Client, Method};

use crate::target::{acknowledged, KvStore, ReadConsistency, System};

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Workload {
    /// PUT distinct keys `<prefix><n>`
    KvPut,
    /// PUT the --keys distinct keys `<prefix>0` .. as fast as the cluster takes them, from
    /// --concurrency writers: grows the state to a known size (reports keys per second)
    Fill,
    /// GET keys from a key space written before the run
    KvGet,
    /// One INSERT per request
    SqlInsert,
    /// `--batch` INSERTs in one transaction per request
    SqlInsertBatch,
    CachePut,
    CacheGet,
    /// Put (untimed) then take (timed) one entry per operation
    CacheTake,
    /// Acquire and release a lock per operation
    Lock,
    /// Issue a token (POST /v1/tokens) per operation
    TokenIssue,
    /// Verify one of `--keys` tokens issued before the run per operation
    TokenVerify,
    /// Rotate a server's signing key and wait until every --addr serves the new key in its
    /// JWKS; the latency is that whole time
    KeyRotation,
    /// Start a local 3-node cluster and stop its active node again and again under load
    Failover,
    /// fsyncs per second and their latency in the data folder (no server needed)
    Disk,
    /// One `GET /v1/pools/{--pool}/pick` per operation
    Pick,
    /// Enrol --agents simulated agents that heartbeat at 1 Hz; measure kv-put with and without
    /// them, how soon a silent agent shows down, and picks at concurrency 1, 16 and 64
    Agents,
    /// Start a 1-node server and a mesh of five agents (ingress, two transits, two exits);
    /// throughput and connect latency beside direct TCP and microsocks, then route failover
    Mesh,
}

/// The flags of `tandem bench` but those that name the servers, which every command of the
/// binary shares and which arrive as [`Servers`].
#[derive(Args)]
pub struct BenchArgs {
    #[arg(value_enum)]
    workload: Workload,
    /// The system to measure; for etcd, --addr names its client endpoints (host:2379)
    #[arg(long = "target", value_enum, default_value = "tandem")]
    system: System,
    /// Requests in flight at once
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    /// Run for this long (10s, 1m) [default: 10s unless --ops is given]
    #[arg(long, conflicts_with = "ops")]
    duration: Option<humantime::Duration>,
    /// Run exactly this many operations
    #[arg(long)]
    ops: Option<u64>,
    /// Bytes per value
    #[arg(long, default_value_t = 100)]
    value_size: usize,
    /// Key prefix; kv-put writes `<prefix><n>` for n = 0.. so the server can count them
    #[arg(long)]
    prefix: Option<String>,
    /// Keys in the read workloads' key space; for fill, the keys it writes
    #[arg(long, default_value_t = 1000)]
    keys: u64,
    /// Statements per request for sql-insert-batch
    #[arg(long, default_value_t = 10)]
    batch: usize,
    /// Print one JSON object instead of a table
    #[arg(long)]
    json: bool,
    /// Also report where the run's writes spent their time: each server's write-stage
    /// histograms from /metrics, read before and after the run (Tandem only)
    #[arg(long)]
    stages: bool,
    #[command(flatten)]
    failover: crate::failover::FailoverArgs,
    #[command(flatten)]
    disk: crate::disk::DiskArgs,
    #[command(flatten)]
    agents: crate::agents::AgentsArgs,
    #[command(flatten)]
    mesh: crate::mesh::MeshArgs,
}

/// The servers a bench talks to, as `--addr`, `--secret` and `--consistency` name them: Tandem's
/// API addresses, or etcd's client endpoints with `--target etcd`.
pub struct Servers {
    pub addrs: Vec<String>,
    /// The API secret, if any.
    pub secret: Option<String>,
    /// Read consistency: linearizable, active or stale.
    pub consistency: String,
}

/// What a run measured.
pub(crate) struct Measured {
    pub ops: u64,
    pub errors: u64,
    pub elapsed: Duration,
    /// Microseconds.
    pub latency: Histogram<u64>,
    pub last_error: Option<String>,
}

impl Measured {
    pub fn ops_per_sec(&self) -> f64 {
        let seconds = self.elapsed.as_secs_f64().max(f64::EPSILON);
        (self.ops as f64 / seconds * 10.0).round() / 10.0
    }

    /// The counts, rate and latency percentiles as the JSON reports show them.
    pub fn figures(&self) -> Value {
        let h = &self.latency;
        json!({
            "ops": self.ops,
            "errors": self.errors,
            "duration_s": (self.elapsed.as_secs_f64() * 1000.0).round() / 1000.0,
            "ops_per_sec": self.ops_per_sec(),
            "latency_ms": latency_ms(h),
            "last_error": self.last_error,
        })
    }
}

/// p50, p90, p99, max and mean of a histogram of microseconds, in milliseconds.
pub(crate) fn latency_ms(h: &Histogram<u64>) -> Value {
    json!({
        "p50": millis(h.value_at_quantile(0.50)),
        "p90": millis(h.value_at_quantile(0.90)),
        "p99": millis(h.value_at_quantile(0.99)),
        "max": millis(h.max()),
        "mean": millis(h.mean() as u64),
    })
}

struct Plan {
    args: BenchArgs,
    servers: Servers,
    store: KvStore,
    read: ReadConsistency,
    prefix: String,
    value: Vec<u8>,
    /// Tokens issued before a token-verify run.
    tokens: std::sync::OnceLock<Vec<String>>,
    /// Plain HTTP to one node at a time (key-rotation polls every node's key set).
    http: reqwest::Client,
}

impl Plan {
    async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
        content_type: &str,
    ) -> Result<(), String> {
        let reply = self
            .store
            .tandem()?
            .send(method, path, body, content_type)
            .await
            .map_err(|e| e.to_string())?;
        acknowledged(reply).map(|_| ())
    }

    /// Sends `body` as JSON and answers the 2xx answer's JSON.
    async fn post_json(&self, path: &str, body: Value) -> Result<Value, String> {
        let reply = self
            .store
            .tandem()?
            .send(
                Method::POST,
                path,
                Some(body.to_string().into_bytes()),
                "application/json",
            )
            .await
            .map_err(|e| e.to_string())?;
        acknowledged(reply)?.json().map_err(|e| e.to_string())
    }

    async fn issue_token(&self, n: u64) -> Result<String, String> {
        let issued = self
            .post_json(
                "/v1/tokens",
                json!({"claims": {"sub": format!("{}{n}", self.prefix)}, "ttl": "10m"}),
            )
            .await?;
        issued["token"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| "the answer holds no token".to_string())
    }

    /// Rotates the key of the server `worker` picks and waits until every address serves it.
    async fn rotate_and_wait(&self, worker: usize) -> Result<(), String> {
        let addrs = &self.servers.addrs;
        let rotated_on = &addrs[worker % addrs.len()];
        let rotated = self
            .http
            .post(format!("http://{rotated_on}/v1/keys/rotate"))
            .bearer_auth(self.servers.secret.as_deref().unwrap_or_default())
            .send()
            .await
            .map_err(|e| e.to_string())?;
        if !rotated.status().is_success() {
            return Err(format!("rotate on {rotated_on}: HTTP {}", rotated.status()));
        }
        let kid = rotated.json::<Value>().await.map_err(|e| e.to_string())?["kid"]
            .as_str()
            .map(str::to_string)
            .ok_or("rotate answered no kid")?;
        let deadline = Instant::now() + Duration::from_secs(30);
        for addr in addrs {
            loop {
                let set: Value = self
                    .http
                    .get(format!("http://{addr}/.well-known/jwks.json"))
                    .send()
                    .await
                    .map_err(|e| e.to_string())?
                    .json()
                    .await
                    .map_err(|e| e.to_string())?;
                let seen = set["keys"]
                    .as_array()
                    .is_some_and(|keys| keys.iter().any(|k| k["kid"] == kid.as_str()));
                if seen {
                    break;
                }
                if Instant::now() >= deadline {
                    return Err(format!("{addr} did not serve key {kid} within 30s"));
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
        Ok(())
    }

    async fn put_kv(&self, key: &str) -> Result<(), String> {
        self.store.put(key, &self.value).await.map(|_| ())
    }

    async fn put_cache(&self, n: u64) -> Result<(), String> {
        self.send(
            Method::PUT,
            &self.cache_path(n),
            Some(self.value.clone()),
            "application/octet-stream",
        )
        .await
    }

    fn cache_path(&self, n: u64) -> String {
        format!(
            "/v1/cache/bench/{}",
            segment(&format!("{}{n}", self.prefix))
        )
    }

    fn insert_body(&self, n: u64, count: usize) -> Vec<u8> {
        let statements: Vec<Value> = (0..count)
            .map(|i| {
                json!({"sql": "INSERT INTO bench_rows (k, v) VALUES (?, ?)",
                       "params": [format!("{}{n}-{i}", self.prefix), "x".repeat(self.args.value_size)]})
            })
            .collect();
        json!({"statements": statements}).to_string().into_bytes()
    }

    /// Writes whatever the workload reads before the clock starts.
    async fn prepare(&self) -> Result<()> {
        match self.args.workload {
            Workload::KvGet => {
                for n in 0..self.args.keys {
                    self.put_kv(&format!("{}{n}", self.prefix))
                        .await
                        .map_err(anyhow::Error::msg)?;
                }
            }
            Workload::CacheGet => {
                for n in 0..self.args.keys {
                    self.put_cache(n).await.map_err(anyhow::Error::msg)?;
                }
            }
            Workload::TokenVerify => {
                let mut tokens = Vec::new();
                for n in 0..self.args.keys.clamp(1, 1000) {
                    tokens.push(self.issue_token(n).await.map_err(anyhow::Error::msg)?);
                }
                let _ = self.tokens.set(tokens);
            }
            Workload::SqlInsert | Workload::SqlInsertBatch => {
                let body = json!({"sql": "CREATE TABLE IF NOT EXISTS bench_rows (id INTEGER PRIMARY KEY, k TEXT, v TEXT)"});
                self.send(
                    Method::POST,
                    "/v1/sql/execute",
                    Some(body.to_string().into_bytes()),
                    "application/json",
                )
                .await
                .map_err(anyhow::Error::msg)?;
            }
            _ => {}
        }
        Ok(())
    }

    /// One operation; answers the time it took (the timed part only).
    async fn operation(&self, worker: usize, n: u64) -> Result<Duration, String> {
        let read = format!("consistency={}", segment(&self.servers.consistency));
        let started = Instant::now();
        match self.args.workload {
            Workload::KvPut | Workload::Fill => self.put_kv(&format!("{}{n}", self.prefix)).await?,
            Workload::KvGet => {
                let key = format!("{}{}", self.prefix, n % self.args.keys.max(1));
                self.store.get(&key, self.read).await?
            }
            Workload::SqlInsert | Workload::SqlInsertBatch => {
                let count = if self.args.workload == Workload::SqlInsert {
                    1
                } else {
                    self.args.batch
                };
                self.send(
                    Method::POST,
                    "/v1/sql/execute",
                    Some(self.insert_body(n, count)),
                    "application/json",
                )
                .await?
            }
            Workload::CachePut => self.put_cache(n).await?,
            Workload::CacheGet => {
                let path = format!("{}?{read}", self.cache_path(n % self.args.keys.max(1)));
                self.send(Method::GET, &path, None, "").await?
            }
            Workload::CacheTake => {
                self.put_cache(n).await?;
                let started = Instant::now();
                self.send(
                    Method::POST,
                    &format!("{}/take", self.cache_path(n)),
                    None,
                    "",
                )
                .await?;
                return Ok(started.elapsed());
            }
            Workload::Pick => {
                let pool = self.args.agents.pool.as_deref().unwrap_or_default();
                self.send(
                    Method::GET,
                    &format!("/v1/pools/{}/pick", segment(pool)),
                    None,
                    "",
                )
                .await?
            }
            Workload::Failover | Workload::Disk | Workload::Agents | Workload::Mesh => {
                return Err("this workload has no single operation against a server".into());
            }
            Workload::TokenIssue => {
                self.issue_token(n).await?;
            }
            Workload::TokenVerify => {
                let tokens = self.tokens.get().map(Vec::as_slice).unwrap_or_default();
                let token = tokens
                    .get((n as usize) % tokens.len().max(1))
                    .ok_or("no tokens were issued before the run")?;
                self.post_json("/v1/tokens/verify", json!({ "token": token }))
                    .await?;
            }
            Workload::KeyRotation => self.rotate_and_wait(worker).await?,
            Workload::Lock => {
                let name = segment(&format!("{}lock-{worker}", self.prefix));
                let holder = format!("bench-{worker}");
                let acquire = json!({"holder": holder, "ttl": "10s"})
                    .to_string()
                    .into_bytes();
                let reply = self
                    .store
                    .tandem()?
                    .send(
                        Method::POST,
                        &format!("/v1/locks/{name}/acquire"),
                        Some(acquire),
                        "application/json",
                    )
                    .await
                    .map_err(|e| e.to_string())?;
                if !reply.status.is_success() {
                    return Err(format!("acquire: HTTP {}", reply.status));
                }
                let token = reply.json().map_err(|e| e.to_string())?["token"]
                    .as_u64()
                    .unwrap_or_default();
                let release = json!({"holder": holder, "token": token})
                    .to_string()
                    .into_bytes();
                self.send(
                    Method::POST,
                    &format!("/v1/locks/{name}/release"),
                    Some(release),
                    "application/json",
                )
                .await?
            }
        }
        Ok(started.elapsed())
    }
}

/// How hard and how long a closed-loop run drives its operation.
pub(crate) struct Load {
    /// Operations in flight at once.
    pub concurrency: usize,
    /// Exactly this many operations; `None` runs for `duration`.
    pub ops: Option<u64>,
    pub duration: Duration,
    /// Show a progress bar on the terminal.
    pub progress: bool,
    /// Stop every worker at the first failed operation (a fill that missed one key cannot
    /// make the state it was asked for, and would otherwise go on failing key after key).
    pub stop_on_error: bool,
}

/// Runs `operation(worker, n)` from `load.concurrency` workers, each starting its next as soon
/// as its last one answered, and measures the ones that succeeded. `operation` answers the time
/// its timed part took.
pub(crate) async fn run_workers<F, Fut>(load: &Load, operation: F) -> Measured
where
    F: Fn(usize, u64) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Duration, String>> + Send + 'static,
{
    let operation = Arc::new(operation);
    let next = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let last_error = Arc::new(Mutex::new(None));
    let limit = load.ops;
    let duration = load.duration;
    let stop_on_error = load.stop_on_error;
    let stopped = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let progress = if load.progress {
        match limit {
            Some(ops) => indicatif::ProgressBar::new(ops),
            None => indicatif::ProgressBar::new(duration.as_secs().max(1)),
        }
    } else {
        indicatif::ProgressBar::hidden()
    };
    progress.set_style(
        indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} {msg}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let started = Instant::now();
    let deadline = started + duration;
    let mut handles = Vec::new();
    for worker in 0..load.concurrency.max(1) {
        let (operation, next, done, errors, last_error, stopped) = (
            operation.clone(),
            next.clone(),
            done.clone(),
            errors.clone(),
            last_error.clone(),
            stopped.clone(),
        );
        handles.push(tokio::spawn(async move {
            let mut histogram = latency_histogram();
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                let finished = stopped.load(Ordering::Relaxed)
                    || match limit {
                        Some(ops) => n >= ops,
                        None => Instant::now() >= deadline,
                    };
                if finished {
                    break;
                }
                match operation(worker, n).await {
                    Ok(took) => {
                        histogram.saturating_record(took.as_micros() as u64);
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) => {
                        errors.fetch_add(1, Ordering::Relaxed);
                        *last_error.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
                        if stop_on_error {
                            stopped.store(true, Ordering::Relaxed);
                        }
                    }
                }
            }
            histogram
        }));
    }
    let ticker = {
        let (progress, done) = (progress.clone(), done.clone());
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(200)).await;
                match limit {
                    Some(_) => progress.set_position(done.load(Ordering::Relaxed)),
                    None => progress.set_position(started.elapsed().as_secs()),
                }
                progress.set_message(format!("{} ops", done.load(Ordering::Relaxed)));
            }
        })
    };
    let mut latency = latency_histogram();
    for handle in handles {
        if let Ok(h) = handle.await {
            let _ = latency.add(h);
        }
    }
    let elapsed = started.elapsed();
    ticker.abort();
    progress.finish_and_clear();
    let last_error = last_error.lock().unwrap_or_else(|p| p.into_inner()).take();
    Measured {
        ops: done.load(Ordering::Relaxed),
        errors: errors.load(Ordering::Relaxed),
        elapsed,
        latency,
        last_error,
    }
}

/// Latencies in microseconds, from 1 µs to a minute, to three significant figures.
pub(crate) fn latency_histogram() -> Histogram<u64> {
    Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("valid histogram bounds")
}

/// How long an etcd put keeps retrying: Tandem's client's default deadline.
const ETCD_DEADLINE: Duration = Duration::from_secs(15);

pub(crate) fn millis(micros: u64) -> f64 {
    (micros as f64 / 1000.0 * 100.0).round() / 100.0
}

/// Runs the workload `args` names against `servers` and prints what it measured.
pub async fn run(args: BenchArgs, servers: Servers) -> Result<()> {
    if args.concurrency == 0 {
        bail!("--concurrency must be at least 1");
    }
    if args.ops == Some(0) {
        bail!("--ops must be at least 1");
    }
    let etcd_runs = matches!(
        args.workload,
        Workload::KvPut | Workload::Fill | Workload::KvGet | Workload::Failover
    );
    if args.system == System::Etcd && !etcd_runs {
        bail!(
            "--target etcd runs kv-put, fill, kv-get and failover; the other workloads are Tandem's own"
        );
    }
    if args.workload == Workload::Fill && (args.ops.is_some() || args.duration.is_some()) {
        bail!("fill writes --keys keys and stops; --ops and --duration do not apply to it");
    }
    if args.workload == Workload::Fill && args.keys == 0 {
        bail!("--keys must be at least 1");
    }
    if args.system == System::Etcd {
        if args.stages {
            bail!("--stages reads Tandem's /metrics; etcd has no such stages");
        }
        crate::etcd::available()?;
    }
    let read = ReadConsistency::parse(&servers.consistency)?;
    match args.workload {
        Workload::Failover => {
            return crate::failover::failover(
                &args.failover,
                args.system,
                args.concurrency,
                args.json,
            )
            .await
        }
        Workload::Disk => {
            let duration = args
                .duration
                .map(Duration::from)
                .unwrap_or(Duration::from_secs(10));
            return crate::disk::disk(&args.disk, duration, args.ops, args.json);
        }
        Workload::Agents => {
            if args.ops.is_some() {
                bail!("agents runs each step for --duration; --ops does not apply to it");
            }
            let duration = args
                .duration
                .map(Duration::from)
                .unwrap_or(Duration::from_secs(10));
            return crate::agents::agents(
                &args.agents,
                &servers,
                args.concurrency,
                duration,
                args.value_size,
                args.json,
            )
            .await;
        }
        Workload::Mesh => {
            if args.ops.is_some() {
                bail!("mesh runs each throughput step for --duration and --connects connections for the latency; --ops does not apply to it");
            }
            let duration = args
                .duration
                .map(Duration::from)
                .unwrap_or(Duration::from_secs(10));
            return crate::mesh::mesh(&args.mesh, duration, args.json).await;
        }
        Workload::Pick if args.agents.pool.is_none() => {
            bail!("pick needs --pool: the pool to pick from, with agents registered in it (`tandem agents ls` lists them)");
        }
        _ => {}
    }
    let store = match args.system {
        System::Tandem => KvStore::Tandem(Arc::new(Client::new(
            &servers.addrs,
            servers.secret.clone(),
        )?)),
        System::Etcd => KvStore::etcd(&servers.addrs, ETCD_DEADLINE).await?,
    };
    let prefix = args.prefix.clone().unwrap_or_else(|| {
        let stamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or_default();
        format!("bench-{stamp}/")
    });
    let value = vec![b'x'; args.value_size];
    let plan = Arc::new(Plan {
        args,
        servers,
        store,
        read,
        prefix,
        tokens: std::sync::OnceLock::new(),
        http: reqwest::Client::new(),
        value,
    });
    plan.prepare().await?;
    let load = Load {
        concurrency: plan.args.concurrency,
        ops: match plan.args.workload {
            Workload::Fill => Some(plan.args.keys),
            _ => plan.args.ops,
        },
        duration: plan
            .args
            .duration
            .map(Duration::from)
            .unwrap_or(Duration::from_secs(10)),
        progress: !plan.args.json,
        stop_on_error: plan.args.workload == Workload::Fill,
    };
    let stages_before = if plan.args.stages {
        Some(crate::stages::scrape(&plan.http, &plan.servers.addrs).await?)
    } else {
        None
    };
    let operating = plan.clone();
    let measured = run_workers(&load, move |worker, n| {
        let plan = operating.clone();
        async move { plan.operation(worker, n).await }
    })
    .await;
    let mut report = json!({
        "workload": plan.args.workload.to_possible_value().map(|v| v.get_name().to_string()),
        "target": plan.args.system.to_possible_value().map(|v| v.get_name().to_string()),
        "consistency": plan.servers.consistency,
        "endpoints": plan.servers.addrs,
        "concurrency": plan.args.concurrency,
        "prefix": plan.prefix,
    });
    if let (Some(report), Value::Object(figures)) = (report.as_object_mut(), measured.figures()) {
        report.extend(figures);
    }
    let stages = match stages_before {
        Some(before) => {
            let after = crate::stages::scrape(&plan.http, &plan.servers.addrs).await?;
            crate::stages::rows(&plan.servers.addrs, &before, &after)
        }
        None => Vec::new(),
    };
    if plan.args.stages {
        report["stages"] = crate::stages::to_json(&stages);
    }
    if plan.args.json {
        println!("{report}");
    } else {
        let l = &report["latency_ms"];
        println!(
            "{:<16} {:>6} {:>10} {:>8} {:>11} {:>9} {:>9} {:>9} {:>9}",
            "workload", "conc", "ops", "errors", "ops/s", "p50 ms", "p90 ms", "p99 ms", "max ms"
        );
        println!(
            "{:<16} {:>6} {:>10} {:>8} {:>11} {:>9} {:>9} {:>9} {:>9}",
            report["workload"].as_str().unwrap_or_default(),
            plan.args.concurrency,
            measured.ops,
            measured.errors,
            report["ops_per_sec"].as_f64().unwrap_or_default(),
            l["p50"].as_f64().unwrap_or_default(),
            l["p90"].as_f64().unwrap_or_default(),
            l["p99"].as_f64().unwrap_or_default(),
            l["max"].as_f64().unwrap_or_default()
        );
        if let Some(e) = &measured.last_error {
            eprintln!("last error: {e}");
        }
        if plan.args.stages {
            crate::stages::print(&stages);
        }
    }
    if plan.args.workload == Workload::Fill && measured.errors > 0 {
        bail!(
            "the fill stopped at its first failed write ({}): {} of the {} keys were written, \
             so the state is smaller than asked; fix the cause and fill again",
            measured.last_error.as_deref().unwrap_or("no error kept"),
            measured.ops,
            plan.args.keys
        );
    }
    Ok(())
}
