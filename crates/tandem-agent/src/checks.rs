//! Health checks of Consul's kinds, each in its own task with its own interval and timeout:
//! `http` (a GET), `tcp` (a connection) and `exec` (a command). What a result means is decided
//! by the plain functions at the top; the rest only runs things and keeps the latest result.

use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tandem_registry::{truncate_output, CheckKind, CheckReport, CheckStatus, MAX_CHECK_OUTPUT};
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::sync::Notify;

use crate::settings::CheckSpec;

/// HTTP: 2xx is passing, 429 (too many requests) warning, anything else critical.
pub fn http_status(code: u16) -> CheckStatus {
    match code {
        200..=299 => CheckStatus::Passing,
        429 => CheckStatus::Warning,
        _ => CheckStatus::Critical,
    }
}

/// How a check command ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExecEnd {
    Exited(i32),
    /// Killed by a signal (no exit code).
    Signalled,
    TimedOut,
    /// It could not be started at all.
    NotStarted,
}

/// Exec: exit 0 is passing, 1 warning, anything else (another code, a signal, a timeout, no
/// start) critical.
pub fn exec_status(end: ExecEnd) -> CheckStatus {
    match end {
        ExecEnd::Exited(0) => CheckStatus::Passing,
        ExecEnd::Exited(1) => CheckStatus::Warning,
        _ => CheckStatus::Critical,
    }
}

/// TCP: a connection opened in time is passing, anything else critical.
pub fn tcp_status(connected: bool) -> CheckStatus {
    if connected {
        CheckStatus::Passing
    } else {
        CheckStatus::Critical
    }
}

/// What one run of a check found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckResult {
    pub status: CheckStatus,
    pub output: String,
}

impl CheckResult {
    fn new(status: CheckStatus, mut output: String) -> CheckResult {
        truncate_output(&mut output, MAX_CHECK_OUTPUT);
        CheckResult { status, output }
    }
}

/// Reads `reader` to its end, keeping only its first `limit` bytes: the rest is read into a
/// small buffer and dropped, so a check that prints megabytes costs no memory and never blocks
/// on a full pipe.
pub async fn read_capped<R: AsyncRead + Unpin>(mut reader: R, limit: usize) -> Vec<u8> {
    let mut kept = Vec::new();
    let mut buffer = [0u8; 8192];
    loop {
        match reader.read(&mut buffer).await {
            Ok(0) | Err(_) => return kept,
            Ok(n) => {
                let room = limit.saturating_sub(kept.len());
                kept.extend_from_slice(&buffer[..n.min(room)]);
            }
        }
    }
}

/// Runs `sh -c command`, in a process group of its own, for at most `timeout`; at the timeout
/// the whole group is killed. Answers how it ended and its output (stdout, then stderr), cut to
/// `limit` bytes.
pub async fn run_command(command: &str, timeout: Duration, limit: usize) -> (ExecEnd, String) {
    let spawned = tokio::process::Command::new("sh")
        .arg("-c")
        .arg(command)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true)
        .spawn();
    let mut child = match spawned {
        Ok(child) => child,
        Err(e) => return (ExecEnd::NotStarted, format!("cannot start sh: {e}")),
    };
    let stdout = child.stdout.take();
    let stderr = child.stderr.take();
    let finished = async {
        let read_out = async {
            match stdout {
                Some(out) => read_capped(out, limit).await,
                None => Vec::new(),
            }
        };
        let read_err = async {
            match stderr {
                Some(err) => read_capped(err, limit).await,
                None => Vec::new(),
            }
        };
        let (out, err, status) = tokio::join!(read_out, read_err, child.wait());
        (out, err, status)
    };
    match tokio::time::timeout(timeout, finished).await {
        Ok((mut out, err, status)) => {
            out.extend_from_slice(&err);
            let mut text = String::from_utf8_lossy(&out).into_owned();
            truncate_output(&mut text, limit);
            let end = match status {
                Ok(status) => status.code().map_or(ExecEnd::Signalled, ExecEnd::Exited),
                Err(_) => ExecEnd::Signalled,
            };
            (end, text)
        }
        Err(_) => {
            kill_group(&mut child);
            // Reap it, so no zombie is left behind.
            let _ = child.wait().await;
            (
                ExecEnd::TimedOut,
                format!("timed out after {}", tandem_settings::Span(timeout)),
            )
        }
    }
}

/// Kills the command's process group (the shell and whatever it started), then the shell.
fn kill_group(child: &mut tokio::process::Child) {
    if let Some(pid) = child.id().and_then(|id| i32::try_from(id).ok()) {
        let _ = nix::sys::signal::killpg(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
    let _ = child.start_kill();
}

pub async fn run_exec(command: &str, timeout: Duration) -> CheckResult {
    let (end, output) = run_command(command, timeout, MAX_CHECK_OUTPUT).await;
    let output = match end {
        ExecEnd::Exited(_) | ExecEnd::TimedOut | ExecEnd::NotStarted => output,
        ExecEnd::Signalled => format!("killed by a signal\n{output}"),
    };
    CheckResult::new(exec_status(end), output)
}

pub async fn run_tcp(addr: &str, timeout: Duration) -> CheckResult {
    match tokio::time::timeout(timeout, tokio::net::TcpStream::connect(addr)).await {
        Ok(Ok(_)) => CheckResult::new(tcp_status(true), format!("connected to {addr}")),
        Ok(Err(e)) => CheckResult::new(tcp_status(false), format!("cannot connect to {addr}: {e}")),
        Err(_) => CheckResult::new(
            tcp_status(false),
            format!(
                "no connection to {addr} within {}",
                tandem_settings::Span(timeout)
            ),
        ),
    }
}

pub async fn run_http(http: &reqwest::Client, url: &str, timeout: Duration) -> CheckResult {
    let attempt = async {
        let mut response = http.get(url).timeout(timeout).send().await?;
        let status = response.status();
        let mut output = format!("HTTP {status}\n").into_bytes();
        // The first bytes of the body only; the rest is never read.
        while output.len() < MAX_CHECK_OUTPUT {
            match response.chunk().await? {
                Some(chunk) => output.extend_from_slice(&chunk),
                None => break,
            }
        }
        Ok::<_, reqwest::Error>((status.as_u16(), output))
    };
    match tokio::time::timeout(timeout, attempt).await {
        Ok(Ok((code, output))) => {
            let text = String::from_utf8_lossy(&output).into_owned();
            CheckResult::new(http_status(code), text)
        }
        Ok(Err(e)) => CheckResult::new(CheckStatus::Critical, format!("GET {url}: {e}")),
        Err(_) => CheckResult::new(
            CheckStatus::Critical,
            format!(
                "GET {url}: no answer within {}",
                tandem_settings::Span(timeout)
            ),
        ),
    }
}

/// The latest result of every check, and a signal for each change of a check's status.
pub struct CheckBoard {
    reports: Mutex<Vec<CheckReport>>,
    changed: Notify,
}

impl CheckBoard {
    /// Every check starts critical, "not run yet", until its first run says otherwise.
    pub fn new(specs: &[CheckSpec]) -> CheckBoard {
        CheckBoard {
            reports: Mutex::new(
                specs
                    .iter()
                    .map(|spec| CheckReport {
                        name: spec.name(),
                        kind: spec.kind,
                        status: CheckStatus::Critical,
                        output: "not run yet".into(),
                    })
                    .collect(),
            ),
            changed: Notify::new(),
        }
    }

    pub fn reports(&self) -> Vec<CheckReport> {
        self.reports
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Records check `index`'s result; answers whether its status changed (and then wakes
    /// whoever waits in [`CheckBoard::status_changed`]).
    pub fn record(&self, index: usize, result: CheckResult) -> bool {
        let changed = {
            let mut reports = self.reports.lock().unwrap_or_else(|e| e.into_inner());
            let Some(report) = reports.get_mut(index) else {
                return false;
            };
            let changed = report.status != result.status;
            report.status = result.status;
            report.output = result.output;
            changed
        };
        if changed {
            self.changed.notify_one();
        }
        changed
    }

    /// Waits until a check's status changes (or has changed since the last wait).
    pub async fn status_changed(&self) {
        self.changed.notified().await
    }
}

/// Runs one check, as its spec says.
async fn run_once(spec: &CheckSpec, http: &reqwest::Client, timeout: Duration) -> CheckResult {
    match spec.kind {
        CheckKind::Http => run_http(http, &spec.target, timeout).await,
        CheckKind::Tcp => run_tcp(&spec.target, timeout).await,
        CheckKind::Exec => run_exec(&spec.target, timeout).await,
    }
}

/// Starts one task per check; they run until the returned handles are aborted.
pub fn spawn_checks(
    specs: &[CheckSpec],
    board: Arc<CheckBoard>,
) -> Vec<tokio::task::JoinHandle<()>> {
    let http = reqwest::Client::new();
    specs
        .iter()
        .cloned()
        .enumerate()
        .map(|(index, spec)| {
            let board = board.clone();
            let name = spec.name();
            spawn_check(spec, http.clone(), move |result| {
                let status = result.status;
                if board.record(index, result) {
                    tracing::info!(check = %name, status = status.as_str(), "check changed");
                }
            })
        })
        .collect()
}

/// Runs `spec` every interval (the first run at once) and hands each result to `record`,
/// until the returned handle is aborted. The agent's checks and an exit's upstream probe both
/// run this way.
pub fn spawn_check(
    spec: CheckSpec,
    http: reqwest::Client,
    mut record: impl FnMut(CheckResult) + Send + 'static,
) -> tokio::task::JoinHandle<()> {
    let interval = spec.interval.map_or(Duration::from_secs(1), |i| i.0);
    let timeout = spec.timeout.map_or(Duration::from_secs(1), |t| t.0);
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            record(run_once(&spec, &http, timeout).await);
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_follow_consul() {
        assert_eq!(http_status(200), CheckStatus::Passing);
        assert_eq!(http_status(204), CheckStatus::Passing);
        assert_eq!(http_status(299), CheckStatus::Passing);
        assert_eq!(http_status(429), CheckStatus::Warning);
        for code in [301, 404, 500, 503, 100] {
            assert_eq!(http_status(code), CheckStatus::Critical, "{code}");
        }
        assert_eq!(exec_status(ExecEnd::Exited(0)), CheckStatus::Passing);
        assert_eq!(exec_status(ExecEnd::Exited(1)), CheckStatus::Warning);
        assert_eq!(exec_status(ExecEnd::Exited(2)), CheckStatus::Critical);
        assert_eq!(exec_status(ExecEnd::Exited(-1)), CheckStatus::Critical);
        assert_eq!(exec_status(ExecEnd::Signalled), CheckStatus::Critical);
        assert_eq!(exec_status(ExecEnd::TimedOut), CheckStatus::Critical);
        assert_eq!(exec_status(ExecEnd::NotStarted), CheckStatus::Critical);
        assert_eq!(tcp_status(true), CheckStatus::Passing);
        assert_eq!(tcp_status(false), CheckStatus::Critical);
    }

    #[tokio::test]
    async fn exec_checks_map_exit_codes_and_keep_output() {
        let second = Duration::from_secs(5);
        let ok = run_exec("echo fine; echo also >&2", second).await;
        assert_eq!(ok.status, CheckStatus::Passing);
        assert_eq!(ok.output, "fine\nalso\n");
        assert_eq!(
            run_exec("exit 1", second).await.status,
            CheckStatus::Warning
        );
        assert_eq!(
            run_exec("exit 3", second).await.status,
            CheckStatus::Critical
        );
        let killed = run_exec("kill -9 $$", second).await;
        assert_eq!(killed.status, CheckStatus::Critical);
        assert!(
            killed.output.starts_with("killed by a signal"),
            "{}",
            killed.output
        );
    }

    #[tokio::test]
    async fn a_check_printing_megabytes_keeps_only_the_first_4_kib() {
        let started = std::time::Instant::now();
        let result = run_exec(
            "head -c 10485760 /dev/zero | tr '\\0' x; echo done >&2",
            Duration::from_secs(30),
        )
        .await;
        assert_eq!(
            result.status,
            CheckStatus::Passing,
            "{}",
            &result.output[..40]
        );
        assert_eq!(result.output.len(), MAX_CHECK_OUTPUT);
        assert!(result.output.bytes().all(|b| b == b'x'));
        assert!(started.elapsed() < Duration::from_secs(30));

        let kept = read_capped(&[7u8; 100_000][..], 10).await;
        assert_eq!(kept, vec![7u8; 10]);
    }

    #[tokio::test]
    async fn a_hanging_command_is_killed_at_its_timeout() {
        let dir = tempfile::tempdir().unwrap();
        let marker = dir.path().join("pid");
        let started = tokio::time::Instant::now();
        // The shell forks (two commands), so the sleep is a child of its own: the whole group
        // must go.
        let command = format!("sleep 60 & echo $! > {}; wait", marker.display());
        let result = run_exec(&command, Duration::from_millis(500)).await;
        let took = started.elapsed();
        assert_eq!(result.status, CheckStatus::Critical);
        assert!(
            result.output.contains("timed out after 500ms"),
            "{}",
            result.output
        );
        assert!(took < Duration::from_secs(3), "took {took:?}");
        let pid: i32 = std::fs::read_to_string(&marker)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        // The sleep is gone (a zombie at most, until init reaps it).
        tokio::time::sleep(Duration::from_millis(200)).await;
        let state = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let alive = state
            .rsplit_once(") ")
            .is_some_and(|(_, rest)| !rest.starts_with('Z'));
        assert!(!alive, "sleep {pid} still runs: {state}");
    }

    #[tokio::test]
    async fn tcp_checks_connect_to_a_listener() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let up = run_tcp(&addr, Duration::from_secs(2)).await;
        assert_eq!(up.status, CheckStatus::Passing, "{}", up.output);
        drop(listener);
        let down = run_tcp(&addr, Duration::from_secs(2)).await;
        assert_eq!(down.status, CheckStatus::Critical);
        assert!(down.output.contains("cannot connect"), "{}", down.output);
    }

    #[tokio::test]
    async fn http_checks_read_the_status_and_the_first_bytes() {
        use axum::http::StatusCode;
        use axum::routing::get;
        let app = axum::Router::new()
            .route("/ok", get(|| async { "ready" }))
            .route(
                "/busy",
                get(|| async { (StatusCode::TOO_MANY_REQUESTS, "slow down") }),
            )
            .route(
                "/broken",
                get(|| async { (StatusCode::INTERNAL_SERVER_ERROR, "db gone") }),
            )
            .route("/big", get(|| async { "y".repeat(1 << 20) }))
            .route(
                "/hang",
                get(|| async {
                    tokio::time::sleep(Duration::from_secs(30)).await;
                    "late"
                }),
            );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        let http = reqwest::Client::new();
        let second = Duration::from_secs(5);

        let ok = run_http(&http, &format!("{base}/ok"), second).await;
        assert_eq!(ok.status, CheckStatus::Passing);
        assert_eq!(ok.output, "HTTP 200 OK\nready");
        let busy = run_http(&http, &format!("{base}/busy"), second).await;
        assert_eq!(busy.status, CheckStatus::Warning);
        let broken = run_http(&http, &format!("{base}/broken"), second).await;
        assert_eq!(broken.status, CheckStatus::Critical);
        assert_eq!(broken.output, "HTTP 500 Internal Server Error\ndb gone");
        let big = run_http(&http, &format!("{base}/big"), second).await;
        assert_eq!(big.status, CheckStatus::Passing);
        assert_eq!(big.output.len(), MAX_CHECK_OUTPUT);
        let hang = run_http(&http, &format!("{base}/hang"), Duration::from_millis(300)).await;
        assert_eq!(hang.status, CheckStatus::Critical);
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let gone = format!("http://{}/", closed.local_addr().unwrap());
        drop(closed);
        assert_eq!(
            run_http(&http, &gone, second).await.status,
            CheckStatus::Critical
        );
    }

    #[tokio::test]
    async fn the_board_signals_status_changes_only() {
        let specs = vec![CheckSpec::new(CheckKind::Exec, "true")];
        let board = CheckBoard::new(&specs);
        assert_eq!(board.reports()[0].status, CheckStatus::Critical);
        let passing = CheckResult::new(CheckStatus::Passing, "ok".into());
        assert!(board.record(0, passing.clone()));
        // The change is remembered for a waiter that comes later.
        tokio::time::timeout(Duration::from_secs(1), board.status_changed())
            .await
            .unwrap();
        assert!(!board.record(0, passing));
        assert!(!board.record(5, CheckResult::new(CheckStatus::Passing, String::new())));
    }
}
