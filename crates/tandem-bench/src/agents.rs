//! `tandem bench agents`: enrols many simulated agents from this one process, keeps them
//! heartbeating at 1 Hz, and measures what they cost the cluster (kv-put throughput with and
//! without them), how soon an agent that falls silent shows down, and how fast picks are
//! answered while they all report. It cleans up after itself: every simulated agent
//! deregisters and the join token is revoked.

use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{anyhow, bail, Context, Result};
use clap::Args;
use hdrhistogram::Histogram;
use serde_json::{json, Value};
use tandem_client::{segment, Client, Method, StatusCode};
use tandem_keys::{issue_token, Claims, SigningAlgorithm, SigningKey};
use tandem_registry::{
    AgentRecord, AgentState, Credential, Enrollment, Registration, Report, ReportAnswer,
};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::run::{latency_histogram, latency_ms, millis, run_workers, Load, Measured, Servers};
use crate::target::{acknowledged, KvStore};

/// Settings of the agents workload (and `--pool` of the pick workload).
#[derive(Args)]
#[command(next_help_heading = "Agents")]
pub struct AgentsArgs {
    /// Simulated agents to enrol and keep heartbeating at 1 Hz
    #[arg(long, default_value_t = 1000)]
    agents: usize,
    /// Agents silenced one after another (every 500 ms) to time how soon each shows down
    #[arg(long, default_value_t = 20)]
    detection_rounds: usize,
    /// The pool `pick` picks from, and the one `agents` enrols into [default for agents: a new
    /// pool, bench-<time>]
    #[arg(long)]
    pub(crate) pool: Option<String>,
}

/// Enrolments, registrations and deregistrations in flight at once.
const AT_ONCE: usize = 32;
const HEARTBEAT_EVERY: Duration = Duration::from_secs(1);
/// Lifetime of an agent's assertion; the servers refuse any valid for more than 10 minutes.
const ASSERTION_TTL_SECS: u64 = 300;
/// An assertion is signed again once it is this old, well before it expires.
const REMINT_AFTER: Duration = Duration::from_secs(240);
/// A detection round starts this often; rounds overlap.
const DETECTION_EVERY: Duration = Duration::from_millis(500);
const DETECTION_POLL: Duration = Duration::from_millis(20);
/// A silenced agent that is not shown down this long after its last heartbeat fails its round.
const DETECTION_DEADLINE: Duration = Duration::from_secs(60);
const PICK_CONCURRENCY: [usize; 3] = [1, 16, 64];
const MIN_PICK_RUN: Duration = Duration::from_secs(3);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// How long an agent keeps trying to deregister while the cluster cannot take writes.
const DEREGISTER_DEADLINE: Duration = Duration::from_secs(30);
const DEREGISTER_RETRY_PAUSE: Duration = Duration::from_millis(250);

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The address agent `i` registers: distinct for up to 2^24 agents.
fn agent_address(i: usize) -> String {
    format!(
        "10.{}.{}.{}:51820",
        (i >> 16) & 0xff,
        (i >> 8) & 0xff,
        i & 0xff
    )
}

/// When, within each heartbeat period, agent `i` of `count` reports: spread evenly so that the
/// servers see a steady rate rather than a burst every second.
fn heartbeat_phase(i: usize, count: usize) -> Duration {
    HEARTBEAT_EVERY.mul_f64(i as f64 / count.max(1) as f64)
}

/// Which agents (indices into the enrolled ones) the detection rounds silence: a different one
/// each round, spread over the whole set (and so over every server they talk to).
fn silenced_agents(enrolled: usize, rounds: usize) -> Vec<usize> {
    let rounds = rounds.min(enrolled);
    (0..rounds).map(|r| r * enrolled / rounds).collect()
}

/// How much of kv-put's throughput the agents took, in percent (negative when it rose).
fn cost_percent(alone_ops_per_sec: f64, with_agents_ops_per_sec: f64) -> f64 {
    if alone_ops_per_sec <= 0.0 {
        return 0.0;
    }
    let cost = (1.0 - with_agents_ops_per_sec / alone_ops_per_sec) * 100.0;
    (cost * 10.0).round() / 10.0
}

/// Plain HTTP from the simulated agents to the servers, over one pooled client. Agents start
/// spread over every `--addr` and then, as real agents do, follow the server list each answer
/// gives, which names the active server first.
struct AgentHttp {
    http: reqwest::Client,
    servers: Vec<String>,
}

impl AgentHttp {
    fn new(addrs: &[String]) -> Result<AgentHttp> {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(Duration::from_secs(2))
            .timeout(REQUEST_TIMEOUT)
            .build()
            .context("cannot build the HTTP client")?;
        Ok(AgentHttp {
            http,
            servers: addrs.iter().map(|a| tandem_client::base_url(a)).collect(),
        })
    }

    /// POSTs `body` (JSON, if any) to the server at `base` with `assertion` as the bearer
    /// token; answers the status and the body.
    async fn post(
        &self,
        base: &str,
        path: &str,
        assertion: Option<&str>,
        body: Option<Vec<u8>>,
    ) -> Result<(StatusCode, Vec<u8>), String> {
        let url = format!("{base}{path}");
        let mut request = self.http.post(&url);
        if let Some(assertion) = assertion {
            request = request.bearer_auth(assertion);
        }
        if let Some(body) = body {
            request = request
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body);
        }
        let response = request.send().await.map_err(|e| format!("{url}: {e}"))?;
        let status = response.status();
        let body = response.bytes().await.map_err(|e| format!("{url}: {e}"))?;
        Ok((status, body.to_vec()))
    }
}

/// An answer's body, when its status says the request was done.
fn done(path: &str, (status, body): (StatusCode, Vec<u8>)) -> Result<Vec<u8>, String> {
    if status.is_success() {
        Ok(body)
    } else {
        Err(format!(
            "{path}: HTTP {status}: {}",
            String::from_utf8_lossy(&body)
        ))
    }
}

/// What a detection round needs to know of an agent's heartbeats.
#[derive(Default)]
struct Beats {
    /// Set by a detection round: the agent sends no more heartbeats.
    silenced: bool,
    /// When the last heartbeat that the servers acknowledged was sent.
    last_heard_sent: Option<Instant>,
}

/// One simulated agent: its credential and what it has sent.
struct SimulatedAgent {
    name: String,
    /// The server this agent talks to: first one of `--addr`, then the first of each answer.
    server: Mutex<String>,
    address: String,
    key: SigningKey,
    /// The assertion it sends, and when it was signed.
    assertion: Mutex<(String, Instant)>,
    beats: Mutex<Beats>,
}

/// How a heartbeat went.
enum Heartbeat {
    Heard,
    /// The server no longer knew the agent (404 `agent_not_registered`); it registered again.
    Reregistered,
}

impl SimulatedAgent {
    fn new(name: String, server: String, address: String, key: SigningKey) -> Result<Self, String> {
        let assertion = Self::sign(&name, &key)?;
        Ok(SimulatedAgent {
            name,
            server: Mutex::new(server),
            address,
            key,
            assertion: Mutex::new((assertion, Instant::now())),
            beats: Mutex::new(Beats::default()),
        })
    }

    fn sign(name: &str, key: &SigningKey) -> Result<String, String> {
        let mut claims = Claims::new();
        claims.insert("sub".into(), name.into());
        issue_token(key, "tandem-agent", claims, now_secs(), ASSERTION_TTL_SECS)
            .map_err(|e| format!("cannot sign {name}'s assertion: {e}"))
    }

    /// The assertion to send: signed once, and again only when a run outlasts [`REMINT_AFTER`],
    /// so the servers verify each signature once.
    fn assertion(&self) -> Result<String, String> {
        let mut assertion = lock(&self.assertion);
        if assertion.1.elapsed() >= REMINT_AFTER {
            *assertion = (Self::sign(&self.name, &self.key)?, Instant::now());
        }
        Ok(assertion.0.clone())
    }

    async fn call(
        &self,
        http: &AgentHttp,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<(StatusCode, Vec<u8>), String> {
        let assertion = self.assertion()?;
        let server = lock(&self.server).clone();
        http.post(&server, path, Some(&assertion), body).await
    }

    /// Talks to the server the answer names first from now on (the active one).
    fn follow(&self, answer: &ReportAnswer) {
        if let Some(first) = answer.servers.first() {
            *lock(&self.server) = tandem_client::base_url(first);
        }
    }

    async fn register(&self, http: &AgentHttp) -> Result<(), String> {
        let registration = Registration {
            mesh: None,
            address: self.address.clone(),
            labels: Default::default(),
            version: "bench".into(),
            report: Report {
                checks: vec![],
                load: Some(rand::random::<f64>()),
            },
        };
        let body = serde_json::to_vec(&registration).map_err(|e| e.to_string())?;
        let path = "/v1/agent/register";
        let answer = done(path, self.call(http, path, Some(body)).await?)?;
        let answer = serde_json::from_slice::<ReportAnswer>(&answer)
            .map_err(|e| format!("{path} answered something else than a report answer: {e}"))?;
        self.follow(&answer);
        Ok(())
    }

    async fn heartbeat(&self, http: &AgentHttp) -> Result<Heartbeat, String> {
        let report = Report {
            checks: vec![],
            load: Some(rand::random::<f64>()),
        };
        let body = serde_json::to_vec(&report).map_err(|e| e.to_string())?;
        let path = "/v1/agent/report";
        let (status, answer) = self.call(http, path, Some(body)).await?;
        if status == StatusCode::NOT_FOUND
            && String::from_utf8_lossy(&answer).contains("agent_not_registered")
        {
            self.register(http).await?;
            return Ok(Heartbeat::Reregistered);
        }
        let answer = done(path, (status, answer))?;
        let answer = serde_json::from_slice::<ReportAnswer>(&answer)
            .map_err(|e| format!("{path} answered something else than a report answer: {e}"))?;
        self.follow(&answer);
        Ok(Heartbeat::Heard)
    }

    /// Deregisters, retrying while the cluster cannot take the write (an election, a timeout),
    /// so that the registry is left clean even after a troubled run.
    async fn deregister(&self, http: &AgentHttp) -> Result<(), String> {
        let path = "/v1/agent/deregister";
        let deadline = Instant::now() + DEREGISTER_DEADLINE;
        loop {
            let answer = self.call(http, path, None).await;
            let retry = match &answer {
                Ok((status, _)) => *status == StatusCode::SERVICE_UNAVAILABLE,
                Err(_) => true,
            };
            if !retry || Instant::now() >= deadline {
                return done(path, answer?).map(|_| ());
            }
            tokio::time::sleep(DEREGISTER_RETRY_PAUSE).await;
        }
    }

    /// Stops its heartbeats.
    fn silence(&self) {
        lock(&self.beats).silenced = true;
    }
}

/// Enrols agent `i` with `token` into `pool`: its key pair, traded with the token for a credential.
async fn enrol(
    http: &AgentHttp,
    token: &str,
    pool: &str,
    run: &str,
    i: usize,
) -> Result<SimulatedAgent, String> {
    // Unique per run: an enrolled name stays taken by its credential after the agent
    // deregisters, so a second run must not reuse the first one's names.
    let name = format!("bench-agent-{run}-{i}");
    let pending = SigningKey::generate(SigningAlgorithm::Es256, "pending".into())
        .map_err(|e| e.to_string())?;
    let enrollment = Enrollment {
        token: token.to_string(),
        name: name.clone(),
        pool: Some(pool.to_string()),
        public_key: serde_json::to_value(pending.public_jwk()).map_err(|e| e.to_string())?,
    };
    let body = serde_json::to_vec(&enrollment).map_err(|e| e.to_string())?;
    let server = http.servers[i % http.servers.len()].clone();
    let path = "/v1/agent/enroll";
    let answer = done(path, http.post(&server, path, None, Some(body)).await?)?;
    let credential: Credential = serde_json::from_slice(&answer)
        .map_err(|e| format!("{path} answered something else than a credential: {e}"))?;
    let key = SigningKey::from_pkcs8(
        SigningAlgorithm::Es256,
        credential.credential_id,
        pending.pkcs8().to_vec(),
    )
    .map_err(|e| e.to_string())?;
    SimulatedAgent::new(name, server, agent_address(i), key)
}

/// Runs `work(i)` for i in 0..count, [`AT_ONCE`] at a time; answers each i's result.
async fn at_most_at_once<T, F, Fut>(
    count: usize,
    progress: &indicatif::ProgressBar,
    work: F,
) -> Vec<(usize, Result<T, String>)>
where
    F: Fn(usize) -> Fut,
    Fut: Future<Output = Result<T, String>> + Send + 'static,
    T: Send + 'static,
{
    let permits = Arc::new(Semaphore::new(AT_ONCE));
    let mut tasks = JoinSet::new();
    for i in 0..count {
        let permits = permits.clone();
        let job = work(i);
        tasks.spawn(async move {
            let _permit = permits.acquire_owned().await;
            (i, job.await)
        });
    }
    let mut results = Vec::with_capacity(count);
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok(result) => results.push(result),
            Err(e) => results.push((usize::MAX, Err(format!("a task failed: {e}")))),
        }
        progress.inc(1);
    }
    results
}

/// Heartbeats counted over a stretch of the run.
struct HeartbeatTally {
    heard: u64,
    reregistered: u64,
    errors: u64,
    /// Microseconds per acknowledged heartbeat.
    latency: Histogram<u64>,
    last_error: Option<String>,
    since: Instant,
    /// When the count was taken; `None` while it still runs.
    until: Option<Instant>,
}

impl HeartbeatTally {
    fn new() -> HeartbeatTally {
        HeartbeatTally {
            heard: 0,
            reregistered: 0,
            errors: 0,
            latency: latency_histogram(),
            last_error: None,
            since: Instant::now(),
            until: None,
        }
    }

    fn figures(&self, agents: usize) -> Value {
        let until = self.until.unwrap_or_else(Instant::now);
        let seconds = (until - self.since).as_secs_f64().max(f64::EPSILON);
        json!({
            "agents": agents,
            "heard": self.heard,
            "reregistered": self.reregistered,
            "errors": self.errors,
            "per_sec": (self.heard as f64 / seconds * 10.0).round() / 10.0,
            "latency_ms": latency_ms(&self.latency),
            "last_error": self.last_error,
        })
    }
}

/// Every agent's heartbeat loop, and what they counted.
struct Heartbeats {
    loops: Mutex<JoinSet<()>>,
    tally: Arc<Mutex<HeartbeatTally>>,
    http: Arc<AgentHttp>,
    /// Agent `i` of `count` reports at `start + heartbeat_phase(i, count)` and every period after.
    start: tokio::time::Instant,
    count: usize,
}

impl Heartbeats {
    fn new(http: Arc<AgentHttp>, count: usize) -> Heartbeats {
        Heartbeats {
            loops: Mutex::new(JoinSet::new()),
            tally: Arc::new(Mutex::new(HeartbeatTally::new())),
            http,
            start: tokio::time::Instant::now(),
            count,
        }
    }

    /// Starts agent `i`'s heartbeats on its own phase of the period, the first within a period.
    fn start(&self, i: usize, agent: Arc<SimulatedAgent>) {
        let now = tokio::time::Instant::now();
        let mut first = self.start + heartbeat_phase(i, self.count);
        while first <= now {
            first += HEARTBEAT_EVERY;
        }
        let beating = beat(agent, self.http.clone(), self.tally.clone(), first);
        lock(&self.loops).spawn(beating);
    }

    /// What was counted since the last take, and a new count from now.
    fn take(&self) -> HeartbeatTally {
        let mut taken = std::mem::replace(&mut *lock(&self.tally), HeartbeatTally::new());
        taken.until = Some(Instant::now());
        taken
    }

    async fn stop(&self) -> HeartbeatTally {
        let mut loops = std::mem::take(&mut *lock(&self.loops));
        loops.shutdown().await;
        self.take()
    }
}

/// How a step done once per agent went: enrolment, registration, deregistration.
struct PerAgent {
    done: usize,
    errors: usize,
    last_error: Option<String>,
    took: Duration,
}

impl PerAgent {
    fn count<T>(results: &[(usize, Result<T, String>)], took: Duration) -> PerAgent {
        let errors: Vec<&String> = results
            .iter()
            .filter_map(|(_, r)| r.as_ref().err())
            .collect();
        PerAgent {
            done: results.len() - errors.len(),
            errors: errors.len(),
            last_error: errors.last().map(|e| e.to_string()),
            took,
        }
    }

    fn figures(&self) -> Value {
        json!({
            "done": self.done,
            "errors": self.errors,
            "seconds": (self.took.as_secs_f64() * 1000.0).round() / 1000.0,
            "last_error": self.last_error,
        })
    }
}

/// Registers every agent, [`AT_ONCE`] at a time, and starts each one's heartbeats as soon as it
/// has tried: a registered agent that stayed silent would soon be marked down, and one whose
/// registration failed registers again on its first heartbeat.
async fn register_all(
    fleet: &[Arc<SimulatedAgent>],
    http: &Arc<AgentHttp>,
    heartbeats: &Arc<Heartbeats>,
    show: bool,
) -> PerAgent {
    let progress = progress_bar(fleet.len() as u64, "agents registered", show);
    let started = Instant::now();
    let fleet = Arc::new(fleet.to_vec());
    let (http, heartbeats) = (http.clone(), heartbeats.clone());
    let results = at_most_at_once(fleet.len(), &progress, move |i| {
        let (fleet, http, heartbeats) = (fleet.clone(), http.clone(), heartbeats.clone());
        async move {
            let registered = fleet[i].register(&http).await;
            heartbeats.start(i, fleet[i].clone());
            registered
        }
    })
    .await;
    progress.finish_and_clear();
    PerAgent::count(&results, started.elapsed())
}

/// One agent's heartbeats, every second until it is silenced or the loop is stopped.
async fn beat(
    agent: Arc<SimulatedAgent>,
    http: Arc<AgentHttp>,
    tally: Arc<Mutex<HeartbeatTally>>,
    first: tokio::time::Instant,
) {
    let mut ticks = tokio::time::interval_at(first, HEARTBEAT_EVERY);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        if lock(&agent.beats).silenced {
            return;
        }
        let sent = Instant::now();
        let outcome = agent.heartbeat(&http).await;
        let took = sent.elapsed();
        if outcome.is_ok() {
            lock(&agent.beats).last_heard_sent = Some(sent);
        }
        let mut tally = lock(&tally);
        match outcome {
            Ok(Heartbeat::Heard) => {
                tally.heard += 1;
                tally.latency.saturating_record(took.as_micros() as u64);
            }
            Ok(Heartbeat::Reregistered) => tally.reregistered += 1,
            Err(e) => {
                tally.errors += 1;
                tally.last_error = Some(format!("{}: {e}", agent.name));
            }
        }
    }
}

/// Silences `agent` and polls the registry until it shows the agent down; answers the time
/// from the last heartbeat the agent sent (and the servers acknowledged) until then.
async fn time_detection(agent: &SimulatedAgent, api: &Client) -> Result<Duration, String> {
    agent.silence();
    let started = Instant::now();
    let path = format!("/v1/agents/{}", segment(&agent.name));
    loop {
        let reply = api.get(&path).await.map_err(|e| e.to_string())?;
        let seen = Instant::now();
        let reply = acknowledged(reply)?;
        let record: AgentRecord = serde_json::from_slice(&reply.body)
            .map_err(|e| format!("{path} answered something else than an agent: {e}"))?;
        if record.state == AgentState::Down {
            let last = lock(&agent.beats).last_heard_sent.unwrap_or(started);
            return Ok(seen.saturating_duration_since(last));
        }
        if started.elapsed() >= DETECTION_DEADLINE {
            return Err(format!(
                "{} was still {} {DETECTION_DEADLINE:?} after its heartbeats stopped",
                agent.name,
                record.state.as_str()
            ));
        }
        tokio::time::sleep(DETECTION_POLL).await;
    }
}

/// Detection times over the rounds.
struct Detection {
    /// Microseconds.
    took: Histogram<u64>,
    per_round: Vec<Value>,
    failed: u64,
    last_error: Option<String>,
}

async fn detection(
    fleet: &[Arc<SimulatedAgent>],
    api: &Arc<Client>,
    rounds: usize,
    show: bool,
) -> Detection {
    let chosen = silenced_agents(fleet.len(), rounds);
    let progress = progress_bar(chosen.len() as u64, "detection rounds", show);
    let mut tasks = JoinSet::new();
    for (round, index) in chosen.into_iter().enumerate() {
        let (agent, api) = (fleet[index].clone(), api.clone());
        let start = tokio::time::Instant::now() + DETECTION_EVERY * round as u32;
        tasks.spawn(async move {
            tokio::time::sleep_until(start).await;
            (
                round + 1,
                agent.name.clone(),
                time_detection(&agent, &api).await,
            )
        });
    }
    let mut found = Detection {
        took: latency_histogram(),
        per_round: Vec::new(),
        failed: 0,
        last_error: None,
    };
    let mut outcomes = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        progress.inc(1);
        match joined {
            Ok(outcome) => outcomes.push(outcome),
            Err(e) => {
                found.failed += 1;
                found.last_error = Some(format!("a detection round failed: {e}"));
            }
        }
    }
    progress.finish_and_clear();
    outcomes.sort_by_key(|(round, _, _)| *round);
    for (round, name, outcome) in outcomes {
        match outcome {
            Ok(took) => {
                found.took.saturating_record(took.as_micros() as u64);
                found.per_round.push(
                    json!({"round": round, "agent": name, "ms": millis(took.as_micros() as u64)}),
                );
            }
            Err(e) => {
                found.failed += 1;
                found.last_error = Some(e);
            }
        }
    }
    found
}

fn progress_bar(len: u64, what: &str, show: bool) -> indicatif::ProgressBar {
    if !show {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(len);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} {msg}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    bar.set_message(what.to_string());
    bar
}

/// Creates the join token the simulated agents enrol with; answers the token. This is the
/// first request of the run, so its errors say what to check.
async fn create_join_token(
    api: &Client,
    servers: &Servers,
    pool: &str,
    uses: usize,
) -> Result<String> {
    let body = json!({"pool": pool, "uses": uses, "ttl": "1h"});
    let reply = api
        .send(
            Method::POST,
            "/v1/join-tokens",
            Some(body.to_string().into_bytes()),
            "application/json",
        )
        .await
        .map_err(|e| {
            anyhow!(
                "cannot create a join token at {}: {e}; is a Tandem server listening there (--addr)?",
                servers.addrs.join(", ")
            )
        })?;
    let text = String::from_utf8_lossy(&reply.body).into_owned();
    match reply.status {
        status if status.is_success() => {}
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => bail!(
            "the servers refused the API secret (HTTP {}): give the cluster's API secret with --secret or TANDEM_SECRET_API",
            reply.status
        ),
        StatusCode::NOT_FOUND => bail!(
            "the servers have no join tokens (HTTP 404: {text}): they run a Tandem without the agent registry"
        ),
        status => bail!("creating a join token for pool {pool:?} failed: HTTP {status}: {text}"),
    }
    let answer: Value =
        serde_json::from_slice(&reply.body).context("the join token answer is not JSON")?;
    answer["token"]
        .as_str()
        .map(str::to_string)
        .ok_or_else(|| anyhow!("the join token answer holds no token: {text}"))
}

/// The steps measured once the agents are enrolled, as JSON, and the heartbeats' total.
struct Measurements {
    registration: PerAgent,
    kv_alone: Measured,
    kv_with_agents: Measured,
    heartbeats_during_kv: HeartbeatTally,
    detection: Detection,
    picks: Vec<(usize, Measured)>,
    heartbeats_after: HeartbeatTally,
}

/// The kv-put load measured with and without the agents.
struct KvPutLoad {
    load: Load,
    value: Arc<Vec<u8>>,
    /// Keys are `<prefix><phase>-<n>`.
    prefix: Arc<String>,
}

async fn measure(
    fleet: &[Arc<SimulatedAgent>],
    http: &Arc<AgentHttp>,
    api: &Arc<Client>,
    kv_put_load: KvPutLoad,
    pool: &str,
    rounds: usize,
) -> Measurements {
    let KvPutLoad {
        load: kv,
        value,
        prefix,
    } = kv_put_load;
    let show = kv.progress;
    let say = |text: &str| {
        if show {
            eprintln!("{text}");
        }
    };
    let store = KvStore::Tandem(api.clone());
    let kv_put = |phase: &'static str| {
        let (store, value, prefix) = (store.clone(), value.clone(), prefix.clone());
        move |_worker: usize, n: u64| {
            let (store, value, prefix) = (store.clone(), value.clone(), prefix.clone());
            async move {
                let started = Instant::now();
                store.put(&format!("{prefix}{phase}-{n}"), &value).await?;
                Ok(started.elapsed())
            }
        }
    };
    say(&format!(
        "kv-put alone for {}",
        humantime::format_duration(kv.duration)
    ));
    let kv_alone = run_workers(&kv, kv_put("alone")).await;

    say(&format!(
        "registering {} agents, each heartbeating at 1 Hz from then on",
        fleet.len()
    ));
    let heartbeats = Arc::new(Heartbeats::new(http.clone(), fleet.len()));
    let registration = register_all(fleet, http, &heartbeats, show).await;
    // A period for every agent to have reported once before the clock starts.
    tokio::time::sleep(HEARTBEAT_EVERY).await;
    heartbeats.take();
    say(&format!(
        "kv-put for {} while {} agents heartbeat",
        humantime::format_duration(kv.duration),
        fleet.len()
    ));
    let kv_with_agents = run_workers(&kv, kv_put("with-agents")).await;
    let heartbeats_during_kv = heartbeats.take();

    say(&format!(
        "detection: {} agents fall silent, one every {DETECTION_EVERY:?}",
        rounds.min(fleet.len())
    ));
    let detection = detection(fleet, api, rounds, show).await;

    let pick_for = (kv.duration / 2).max(MIN_PICK_RUN);
    let mut picks = Vec::new();
    for concurrency in PICK_CONCURRENCY {
        say(&format!(
            "pick at concurrency {concurrency} for {}",
            humantime::format_duration(pick_for)
        ));
        let load = Load {
            concurrency,
            ops: None,
            duration: pick_for,
            progress: show,
            stop_on_error: false,
        };
        let path = Arc::new(format!("/v1/pools/{}/pick", segment(pool)));
        let api = api.clone();
        let measured = run_workers(&load, move |_worker, _n| {
            let (api, path) = (api.clone(), path.clone());
            async move {
                let started = Instant::now();
                let reply = api.get(&path).await.map_err(|e| e.to_string())?;
                acknowledged(reply)?;
                Ok(started.elapsed())
            }
        })
        .await;
        picks.push((concurrency, measured));
    }
    let heartbeats_after = heartbeats.stop().await;
    Measurements {
        registration,
        kv_alone,
        kv_with_agents,
        heartbeats_during_kv,
        detection,
        picks,
        heartbeats_after,
    }
}

/// Runs the agents workload against `servers`: kv-put at `concurrency` for `duration` without
/// and with the agents, detection, picks; `json` picks the output.
pub async fn agents(
    args: &AgentsArgs,
    servers: &Servers,
    concurrency: usize,
    duration: Duration,
    value_size: usize,
    json: bool,
) -> Result<()> {
    if args.agents == 0 {
        bail!("--agents must be at least 1");
    }
    if args.detection_rounds >= args.agents {
        bail!(
            "--detection-rounds ({}) must be less than --agents ({}): each round silences a different agent",
            args.detection_rounds,
            args.agents
        );
    }
    let stamp = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    let run = format!("{stamp:x}");
    let pool = args
        .pool
        .clone()
        .unwrap_or_else(|| format!("bench-{stamp}"));
    tandem_registry::check_name("pool", &pool).map_err(anyhow::Error::msg)?;
    let api = Arc::new(Client::new(&servers.addrs, servers.secret.clone())?);
    let http = Arc::new(AgentHttp::new(&servers.addrs)?);
    let show = !json;

    // 1. The join token.
    let token = create_join_token(&api, servers, &pool, args.agents).await?;
    let token_id = token.split('.').next().unwrap_or_default().to_string();

    // 2. Enrol: each agent's credential. They register after the kv-put baseline (a registered
    // agent must heartbeat, or it is marked down, and coming back up is a replicated write).
    let progress = progress_bar(args.agents as u64, "agents enrolled", show);
    let enrolling = Instant::now();
    let enrolled = {
        let (http, token, pool, run) = (
            http.clone(),
            Arc::new(token),
            Arc::new(pool.clone()),
            Arc::new(run.clone()),
        );
        at_most_at_once(args.agents, &progress, move |i| {
            let (http, token, pool, run) = (http.clone(), token.clone(), pool.clone(), run.clone());
            async move { enrol(&http, &token, &pool, &run, i).await }
        })
        .await
    };
    progress.finish_and_clear();
    let enrolment = PerAgent::count(&enrolled, enrolling.elapsed());
    let mut enrolled: Vec<(usize, SimulatedAgent)> = enrolled
        .into_iter()
        .filter_map(|(i, result)| Some((i, result.ok()?)))
        .collect();
    enrolled.sort_by_key(|(i, _)| *i);
    let fleet: Vec<Arc<SimulatedAgent>> = enrolled
        .into_iter()
        .map(|(_, agent)| Arc::new(agent))
        .collect();
    if show {
        eprintln!(
            "{} of {} agents enrolled in pool {pool} in {:.1} s",
            fleet.len(),
            args.agents,
            enrolment.took.as_secs_f64()
        );
    }

    // 3 to 6 (registration is part of 4), only with enough agents; the clean-up runs either way.
    let measured = if fleet.len() > args.detection_rounds {
        let kv = KvPutLoad {
            load: Load {
                concurrency,
                ops: None,
                duration,
                progress: show,
                stop_on_error: false,
            },
            value: Arc::new(vec![b'x'; value_size]),
            prefix: Arc::new(format!("bench-agents-{run}/")),
        };
        Some(measure(&fleet, &http, &api, kv, &pool, args.detection_rounds).await)
    } else {
        None
    };

    // 7. Clean up: every agent deregisters, the token is revoked.
    let progress = progress_bar(fleet.len() as u64, "agents deregistered", show);
    let deregistering = Instant::now();
    let deregistered = {
        let (http, fleet) = (http.clone(), Arc::new(fleet.clone()));
        at_most_at_once(fleet.len(), &progress, move |i| {
            let (http, fleet) = (http.clone(), fleet.clone());
            async move { fleet[i].deregister(&http).await }
        })
        .await
    };
    progress.finish_and_clear();
    let deregistration = PerAgent::count(&deregistered, deregistering.elapsed());
    let revoked = match api
        .delete(&format!("/v1/join-tokens/{}", segment(&token_id)))
        .await
    {
        Ok(reply) => acknowledged(reply).map(|_| ()),
        Err(e) => Err(e.to_string()),
    };

    let Some(m) = measured else {
        bail!(
            "only {} of {} agents enrolled, too few for {} detection rounds; last error: {}",
            fleet.len(),
            args.agents,
            args.detection_rounds,
            enrolment.last_error.unwrap_or_default()
        );
    };
    let agents = fleet.len();
    let cost = cost_percent(m.kv_alone.ops_per_sec(), m.kv_with_agents.ops_per_sec());
    let heartbeats = m.heartbeats_during_kv.figures(agents);
    let after = m.heartbeats_after.figures(agents);
    let d = &m.detection;
    let report = json!({
        "workload": "agents",
        "endpoints": servers.addrs,
        "pool": pool,
        "agents": agents,
        "agents_asked": args.agents,
        "enrolment": enrolment.figures(),
        "registration": m.registration.figures(),
        "concurrency": concurrency,
        "kv_put_alone": m.kv_alone.figures(),
        "kv_put_with_agents": m.kv_with_agents.figures(),
        "cost_percent": cost,
        "heartbeats_during_kv_put": heartbeats,
        "heartbeats_after_kv_put": after,
        "detection_ms": {
            "rounds": d.per_round.len() as u64 + d.failed,
            "detected": d.per_round.len(),
            "failed": d.failed,
            "p50": millis(d.took.value_at_quantile(0.5)),
            "p99": millis(d.took.value_at_quantile(0.99)),
            "max": millis(d.took.max()),
            "per_round": d.per_round,
            "last_error": d.last_error,
        },
        "pick": m.picks.iter().map(|(c, measured)| {
            let mut figures = measured.figures();
            figures["concurrency"] = json!(c);
            figures
        }).collect::<Vec<_>>(),
        "deregistration": deregistration.figures(),
        "join_token_revoked": revoked.is_ok(),
        "join_token_error": revoked.as_ref().err(),
    });
    if json {
        println!("{report}");
        return Ok(());
    }
    print_table(&report, &m, agents);
    Ok(())
}

fn print_table(report: &Value, m: &Measurements, agents: usize) {
    let row = |step: &str, conc: &str, ops: u64, errors: u64, rate: &str, l: &Value| {
        let ms = |q: &str| format!("{:.2}", l[q].as_f64().unwrap_or_default());
        println!(
            "{step:<28} {conc:>6} {ops:>9} {errors:>7} {rate:>10} {:>9} {:>9} {:>9}",
            ms("p50"),
            ms("p99"),
            ms("max")
        );
    };
    println!(
        "{:<28} {:>6} {:>9} {:>7} {:>10} {:>9} {:>9} {:>9}",
        "step", "conc", "ops", "errors", "ops/s", "p50 ms", "p99 ms", "max ms"
    );
    let measured_row = |step: &str, conc: usize, measured: &Measured| {
        row(
            step,
            &conc.to_string(),
            measured.ops,
            measured.errors,
            &format!("{:.1}", measured.ops_per_sec()),
            &measured.figures()["latency_ms"],
        );
    };
    let conc = report["concurrency"].as_u64().unwrap_or_default() as usize;
    measured_row("kv-put alone", conc, &m.kv_alone);
    measured_row(
        &format!("kv-put with {agents} agents"),
        conc,
        &m.kv_with_agents,
    );
    let h = &report["heartbeats_during_kv_put"];
    row(
        "heartbeats during kv-put",
        &agents.to_string(),
        h["heard"].as_u64().unwrap_or_default(),
        h["errors"].as_u64().unwrap_or_default(),
        &format!("{:.1}", h["per_sec"].as_f64().unwrap_or_default()),
        &h["latency_ms"],
    );
    let d = &report["detection_ms"];
    row(
        "detection (silent → down)",
        "-",
        d["detected"].as_u64().unwrap_or_default(),
        d["failed"].as_u64().unwrap_or_default(),
        "-",
        d,
    );
    for (concurrency, measured) in &m.picks {
        measured_row("pick", *concurrency, measured);
    }
    println!(
        "cost of {agents} agents: {}% of kv-put throughput ({:.1} → {:.1} ops/s)",
        report["cost_percent"].as_f64().unwrap_or_default(),
        m.kv_alone.ops_per_sec(),
        m.kv_with_agents.ops_per_sec()
    );
    let after = &report["heartbeats_after_kv_put"];
    println!(
        "heartbeats after kv-put (detection, picks): {} heard, {} errors, {} re-registrations",
        after["heard"].as_u64().unwrap_or_default(),
        after["errors"].as_u64().unwrap_or_default(),
        after["reregistered"].as_u64().unwrap_or_default()
    );
    let once = |what: &str, figures: &Value| {
        println!(
            "{what}: {} agents in {:.1} s ({} errors)",
            figures["done"].as_u64().unwrap_or_default(),
            figures["seconds"].as_f64().unwrap_or_default(),
            figures["errors"].as_u64().unwrap_or_default()
        );
    };
    once("enrolment", &report["enrolment"]);
    once("registration", &report["registration"]);
    once("deregistration", &report["deregistration"]);
    println!(
        "join token revoked: {}",
        if report["join_token_revoked"].as_bool().unwrap_or_default() {
            "yes"
        } else {
            "no"
        }
    );
    let last_errors = [
        ("enrolment", &report["enrolment"]["last_error"]),
        ("registration", &report["registration"]["last_error"]),
        ("kv-put alone", &report["kv_put_alone"]["last_error"]),
        (
            "kv-put with agents",
            &report["kv_put_with_agents"]["last_error"],
        ),
        ("heartbeats", &h["last_error"]),
        ("heartbeats after kv-put", &after["last_error"]),
        ("detection", &d["last_error"]),
        ("deregistration", &report["deregistration"]["last_error"]),
        ("join token", &report["join_token_error"]),
    ];
    for (step, error) in last_errors {
        if let Some(error) = error.as_str() {
            eprintln!("last error ({step}): {error}");
        }
    }
    for (concurrency, measured) in &m.picks {
        if let Some(error) = &measured.last_error {
            eprintln!("last error (pick at {concurrency}): {error}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heartbeats_are_spread_over_the_second() {
        assert_eq!(heartbeat_phase(0, 4), Duration::ZERO);
        assert_eq!(heartbeat_phase(2, 4), Duration::from_millis(500));
        assert!(heartbeat_phase(999, 1000) < HEARTBEAT_EVERY);
    }

    #[test]
    fn each_detection_round_silences_a_different_agent() {
        let chosen = silenced_agents(1000, 20);
        assert_eq!(chosen.len(), 20);
        let mut distinct = chosen.clone();
        distinct.dedup();
        assert_eq!(distinct, chosen);
        assert!(chosen.iter().all(|&i| i < 1000));
        assert_eq!(silenced_agents(3, 20), vec![0, 1, 2]);
    }

    #[test]
    fn cost_is_the_share_of_throughput_lost() {
        assert_eq!(cost_percent(1000.0, 950.0), 5.0);
        assert_eq!(cost_percent(1000.0, 1010.0), -1.0);
        assert_eq!(cost_percent(0.0, 10.0), 0.0);
    }

    #[test]
    fn agents_get_distinct_addresses() {
        assert_eq!(agent_address(0), "10.0.0.0:51820");
        assert_eq!(agent_address(258), "10.0.1.2:51820");
        assert_ne!(agent_address(256), agent_address(0));
    }
}
