//! Concurrent clients that record what they did while faults happen: every operation with the
//! time it was called and the time its answer came (in microseconds since the run began), and
//! what that answer says about whether a write took effect.

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use reqwest::{Method, StatusCode};
use tokio::time::Instant;

use crate::cluster::{Cluster, API_SECRET};
use crate::faults::{FaultCounts, FaultSchedule};
use crate::http::HttpReply;
use crate::wait::{wait_until, DEADLINE};

/// Longer than any fault's hold, so a request to a paused node mostly gets its answer late
/// rather than none; a request still unanswered then has an unknown outcome.
pub const OPERATION_TIMEOUT: Duration = Duration::from_secs(3);

/// What became of one request.
#[derive(Debug)]
pub enum Answer {
    /// The server answered, with any status.
    Reply(HttpReply),
    /// The connection was refused: the request never reached a server.
    NotSent,
    /// Sent, but no (complete) answer came back in time.
    NoAnswer,
}

/// What an answer to a write says about the write.
#[derive(Debug)]
pub enum WriteOutcome {
    Applied(HttpReply),
    /// Refused, redirected, or never sent: the write changed nothing.
    NotApplied(Option<HttpReply>),
    /// It may or may not have taken effect.
    Unknown,
}

impl Answer {
    /// As the API documents: 2xx applied; 4xx, 307 and `503 unavailable` not applied;
    /// `503 outcome_unknown`, any other failure and no answer at all: unknown.
    pub fn write_outcome(self) -> WriteOutcome {
        match self {
            Answer::NotSent => WriteOutcome::NotApplied(None),
            Answer::NoAnswer => WriteOutcome::Unknown,
            Answer::Reply(reply) => {
                let status = reply.status;
                let unavailable = status == StatusCode::SERVICE_UNAVAILABLE
                    && reply.text().contains("\"unavailable\"");
                if status.is_success() {
                    WriteOutcome::Applied(reply)
                } else if status.is_client_error()
                    || status == StatusCode::TEMPORARY_REDIRECT
                    || unavailable
                {
                    WriteOutcome::NotApplied(Some(reply))
                } else {
                    WriteOutcome::Unknown
                }
            }
        }
    }
}

/// One client's view of the run.
pub struct ClientContext<Op> {
    pub index: usize,
    pub rng: StdRng,
    urls: Vec<String>,
    http: reqwest::Client,
    started: Instant,
    stop: Arc<AtomicBool>,
    history: Arc<Mutex<Vec<Op>>>,
    recorded: Arc<AtomicUsize>,
}

impl<Op> ClientContext<Op> {
    /// False once the faults are over and the run is winding down.
    pub fn running(&self) -> bool {
        !self.stop.load(Ordering::Relaxed)
    }

    /// Microseconds since the run began, on a clock all clients share.
    pub fn now(&self) -> u64 {
        self.started.elapsed().as_micros() as u64
    }

    pub fn record(&self, op: Op) {
        self.history
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(op);
        self.recorded.fetch_add(1, Ordering::Relaxed);
    }

    /// One request with the API secret to a node picked at random.
    pub async fn request(
        &mut self,
        method: Method,
        path: &str,
        body: Option<(&str, Vec<u8>)>,
    ) -> Answer {
        self.request_as(API_SECRET, method, path, body).await
    }

    /// One request with `bearer` (the API secret, or an agent's assertion) to a node picked at
    /// random.
    pub async fn request_as(
        &mut self,
        bearer: &str,
        method: Method,
        path: &str,
        body: Option<(&str, Vec<u8>)>,
    ) -> Answer {
        let node = self.rng.random_range(0..self.urls.len());
        let url = format!("{}{path}", self.urls[node]);
        match crate::http::send(
            &self.http,
            method,
            url,
            Some(crate::http::Auth::Bearer(bearer)),
            body,
            Some(OPERATION_TIMEOUT),
        )
        .await
        {
            Ok(reply) => Answer::Reply(reply),
            Err(e) if e.is_connect() => Answer::NotSent,
            Err(_) => Answer::NoAnswer,
        }
    }
}

/// What a run under faults produced.
pub struct RunReport<Op> {
    pub history: Vec<Op>,
    pub faults: FaultCounts,
}

impl<Op> RunReport<Op> {
    /// How many recorded operations match.
    pub fn count(&self, matching: impl Fn(&Op) -> bool) -> usize {
        self.history.iter().filter(|op| matching(op)).count()
    }

    /// One line of figures for the test output.
    pub fn figures(&self, workload: &str, checked: &str) -> String {
        let faults: Vec<String> = self
            .faults
            .iter()
            .map(|(kind, n)| format!("{kind}: {n}"))
            .collect();
        format!(
            "{workload}: {checked}; faults injected: {} ({}); anomalies: 0",
            self.faults.values().sum::<usize>(),
            faults.join(", ")
        )
    }
}

/// Runs `clients` copies of `client` against every node of `cluster` while `schedule`'s faults
/// happen, stops them once the faults are healed, and answers everything they recorded.
pub async fn run_under_faults<Op, F, Fut>(
    cluster: &mut Cluster,
    schedule: &FaultSchedule,
    clients: usize,
    client: F,
) -> RunReport<Op>
where
    Op: Send + 'static,
    F: Fn(ClientContext<Op>) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let started = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let history = Arc::new(Mutex::new(Vec::new()));
    let recorded = Arc::new(AtomicUsize::new(0));
    let urls: Vec<String> = (0..cluster.len()).map(|i| cluster.api_url(i)).collect();
    let tasks: Vec<_> = (0..clients)
        .map(|index| {
            tokio::spawn(client(ClientContext {
                index,
                rng: StdRng::seed_from_u64(schedule.seed ^ ((index as u64 + 1) << 32)),
                urls: urls.clone(),
                http: cluster.http().clone(),
                started,
                stop: stop.clone(),
                history: history.clone(),
                recorded: recorded.clone(),
            }))
        })
        .collect();
    let progress = async || {
        let target = recorded.load(Ordering::Relaxed) + 5;
        wait_until(DEADLINE, "the clients get answers again", async || {
            recorded.load(Ordering::Relaxed) >= target
        })
        .await;
    };
    progress().await;
    let faults = cluster.run_fault_schedule(schedule, progress).await;
    stop.store(true, Ordering::Relaxed);
    for task in tasks {
        task.await.expect("a client task does not panic");
    }
    let history = std::mem::take(&mut *history.lock().unwrap_or_else(|p| p.into_inner()));
    RunReport { history, faults }
}

/// What a checker found wrong in a history, and the operations that show it.
#[derive(Debug)]
pub struct Violation<Op> {
    pub message: String,
    pub smallest: Vec<Op>,
}

impl<Op: std::fmt::Debug> std::fmt::Display for Violation<Op> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "{}; the operations that show it:", self.message)?;
        for op in &self.smallest {
            writeln!(f, "  {op:?}")?;
        }
        Ok(())
    }
}

/// A smallest part of `items` that still `fails`, found greedily: drop one item at a time and
/// keep it out when the rest still fails. `needed(rest, i)` keeps item `i` in while the rest
/// depends on it (a read of a value needs the write that wrote it).
pub fn shrink<T: Clone>(
    items: Vec<T>,
    fails: impl Fn(&[T]) -> bool,
    needed: impl Fn(&[T], usize) -> bool,
) -> Vec<T> {
    assert!(fails(&items), "only a failing history can be shrunk");
    let mut kept = items;
    let mut i = kept.len();
    while i > 0 {
        i -= 1;
        if needed(&kept, i) {
            continue;
        }
        let mut candidate = kept.clone();
        candidate.remove(i);
        if fails(&candidate) {
            kept = candidate;
        }
    }
    kept
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shrinking_keeps_only_what_the_failure_needs() {
        // Fails while it holds both 3 and 7.
        let fails = |items: &[u32]| items.contains(&3) && items.contains(&7);
        let shrunk = shrink((0..10).collect(), fails, |_, _| false);
        assert_eq!(shrunk, vec![3, 7]);
    }

    #[test]
    fn shrinking_keeps_what_others_depend_on() {
        let fails = |items: &[u32]| items.contains(&3);
        // 1 must stay while 3 is there.
        let needed = |rest: &[u32], i: usize| rest[i] == 1 && rest.contains(&3);
        assert_eq!(shrink(vec![1, 2, 3, 4], fails, needed), vec![1, 3]);
    }
}
