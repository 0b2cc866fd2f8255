//! Concurrent clients read and write a few keys through every node while the active node is
//! killed, restarted and paused; the recorded history must be linearizable. An acknowledged write
//! is never lost or reordered, a read never sees a stale value, and a deposed leader changes
//! nothing.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use tandem_testkit::linearizability::{check_registers, Operation, RegisterOp, RegisterOutput};
use tandem_testkit::{wait_until, Cluster, API_SECRET, DEADLINE};

fn tandem() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_tandem"))
}

const KEYS: [&str; 3] = ["reg-a", "reg-b", "reg-c"];
const CLIENTS: usize = 4;

/// A small deterministic generator, so a failing run can be repeated with the same choices.
struct Choices(u64);

impl Choices {
    fn next(&mut self, below: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % below
    }
}

/// One request, and what it tells the history: `None` when it certainly did nothing (and is
/// left out), otherwise its output.
async fn perform(http: &reqwest::Client, url: &str, op: &RegisterOp) -> Option<RegisterOutput> {
    let request = match op {
        RegisterOp::Read => http.get(url),
        RegisterOp::Write(value) => http.put(url).body(value.clone()),
    };
    let sent = request
        .header("authorization", format!("Bearer {API_SECRET}"))
        .timeout(Duration::from_secs(3))
        .send()
        .await;
    let response = match sent {
        Ok(response) => response,
        // Never reached the server: nothing happened.
        Err(e) if e.is_connect() => return None,
        Err(_) => return matches!(op, RegisterOp::Write(_)).then_some(RegisterOutput::Unknown),
    };
    let status = response.status();
    let body = response.text().await.ok();
    match (op, status) {
        (RegisterOp::Read, StatusCode::OK) => Some(RegisterOutput::Read(body)),
        (RegisterOp::Read, StatusCode::NOT_FOUND) => Some(RegisterOutput::Read(None)),
        (RegisterOp::Read, _) => None,
        (RegisterOp::Write(_), s) if s.is_success() => Some(RegisterOutput::Written),
        // The outcome of this write is not known: it may have been applied.
        (RegisterOp::Write(_), StatusCode::SERVICE_UNAVAILABLE)
            if body
                .as_deref()
                .is_some_and(|b| b.contains("outcome_unknown")) =>
        {
            Some(RegisterOutput::Unknown)
        }
        // Redirected or refused before it was proposed: nothing happened.
        (RegisterOp::Write(_), _) => None,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_register_stays_linearizable_while_the_active_node_is_killed_and_paused() {
    let mut cluster = Cluster::start(tandem(), 3, &[]).await;
    cluster.leader().await;
    let started = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let history = Arc::new(Mutex::new(Vec::<Operation>::new()));
    let urls: Vec<String> = (0..cluster.len()).map(|i| cluster.api_url(i)).collect();
    let mut clients = Vec::new();
    for client in 0..CLIENTS {
        let (stop, history, urls, http) = (
            stop.clone(),
            history.clone(),
            urls.clone(),
            cluster.http().clone(),
        );
        clients.push(tokio::spawn(async move {
            let mut choices = Choices(0x9e37_79b9_7f4a_7c15 ^ (client as u64 + 1));
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                let key = KEYS[choices.next(KEYS.len() as u64) as usize];
                let node = choices.next(urls.len() as u64) as usize;
                let op = if choices.next(2) == 0 {
                    RegisterOp::Read
                } else {
                    RegisterOp::Write(format!("c{client}-{n}"))
                };
                let url = format!("{}/v1/kv/{key}", urls[node]);
                let call = started.elapsed().as_micros() as u64;
                let Some(output) = perform(&http, &url, &op).await else {
                    continue;
                };
                let ret = (output != RegisterOutput::Unknown)
                    .then(|| started.elapsed().as_micros() as u64);
                history
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push(Operation {
                        client,
                        key: key.to_string(),
                        op,
                        output,
                        call,
                        ret,
                    });
            }
        }));
    }
    let recorded = || history.lock().unwrap_or_else(|p| p.into_inner()).len();
    let progress = async |more: usize| {
        let target = recorded() + more;
        wait_until(DEADLINE, "the clients make progress", async || {
            recorded() >= target
        })
        .await;
    };

    // Faults: kill the active node, bring it back, then pause the next active node long enough
    // for an election and wake it up deposed.
    progress(50).await;
    let first = cluster.leader().await;
    cluster.kill(first);
    let second = cluster.leader().await;
    progress(50).await;
    cluster.start_node(first).await;
    progress(50).await;
    let second_active = cluster.leader().await;
    assert!(cluster.is_live(second) || second_active != second);
    cluster.pause(second_active);
    wait_until(
        DEADLINE,
        "another node takes over from the paused one",
        async || {
            cluster
                .current_leader()
                .await
                .is_some_and(|l| l != second_active)
        },
    )
    .await;
    progress(50).await;
    cluster.resume(second_active);
    progress(50).await;
    stop.store(true, Ordering::Relaxed);
    for client in clients {
        client.await.expect("a client task does not panic");
    }

    let history = history.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let reads = history.iter().filter(|o| o.op == RegisterOp::Read).count();
    let acknowledged = history
        .iter()
        .filter(|o| o.output == RegisterOutput::Written)
        .count();
    let unknown = history
        .iter()
        .filter(|o| o.output == RegisterOutput::Unknown)
        .count();
    eprintln!(
        "checked {} operations: {reads} reads, {acknowledged} acknowledged writes, {unknown} writes of unknown outcome; faults: kill -9, restart, SIGSTOP, SIGCONT",
        history.len()
    );
    assert!(
        reads > 50 && acknowledged > 50,
        "the workload ran under the faults"
    );
    if let Err(anomaly) = check_registers(&history) {
        panic!("{anomaly}");
    }
}
