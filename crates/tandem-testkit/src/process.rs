//! One `tandem` process: started with fixed arguments, its stdout and stderr appended to a log
//! file outside its data folder, and stopped, killed, paused or resumed with signals.

use std::collections::BTreeSet;
use std::fs::OpenOptions;
use std::io::Write;
use std::net::{TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::Mutex;
use std::time::Duration;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use rand::Rng;
use tokio::time::Instant;

/// Lines of each log printed when a test fails.
const LOG_TAIL_LINES: usize = 60;

/// Where picked ports start: above the well-known and most registered service ports.
const PICK_FROM: u16 = 15_000;

/// Ports this process has handed out, never handed out again: a test releases each one before
/// the process it is meant for binds it.
static HANDED_OUT: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());

/// `count` distinct free ports on 127.0.0.1, free for both TCP and UDP when picked.
///
/// They are picked at random below the kernel's ephemeral range, where it never puts the source
/// port of an outgoing connection: a port from inside that range (what binding port 0 gives) can
/// be taken by any connection on the machine, another test's HTTP client say, between the pick
/// and the server's bind, and was. Below it, only another process picking at random at the same
/// moment can take one, and a cluster's start retries with new ports when that happens.
pub fn free_ports(count: usize) -> std::io::Result<Vec<u16>> {
    let below = ephemeral_range_start().max(PICK_FROM + 1_000);
    let mut handed_out = HANDED_OUT
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let mut rng = rand::rng();
    // Held until every port is picked, so that a port is checked while the others are bound.
    let mut held = Vec::new();
    let mut picked = Vec::new();
    for _ in 0..10_000 {
        if picked.len() == count {
            break;
        }
        let port = rng.random_range(PICK_FROM..below);
        if handed_out.contains(&port) {
            continue;
        }
        let (Ok(tcp), Ok(udp)) = (
            TcpListener::bind(("127.0.0.1", port)),
            UdpSocket::bind(("127.0.0.1", port)),
        ) else {
            continue;
        };
        held.push((tcp, udp));
        handed_out.insert(port);
        picked.push(port);
    }
    if picked.len() < count {
        return Err(std::io::Error::new(
            std::io::ErrorKind::AddrNotAvailable,
            format!(
                "found only {} of {count} free ports between {PICK_FROM} and {below} on 127.0.0.1",
                picked.len()
            ),
        ));
    }
    Ok(picked)
}

/// The first port of the kernel's ephemeral range (`net.ipv4.ip_local_port_range`), 32768 when
/// it cannot be read.
fn ephemeral_range_start() -> u16 {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|range| range.split_whitespace().next()?.parse().ok())
        .unwrap_or(32_768)
}

/// A node list of `nodes` servers on free ports of 127.0.0.1 (`id cluster_addr api_addr`, one
/// a line), with the API addresses in node order.
pub fn local_node_list(nodes: usize) -> std::io::Result<(String, Vec<String>)> {
    let ports = free_ports(nodes * 2)?;
    let apis: Vec<String> = (0..nodes)
        .map(|i| format!("127.0.0.1:{}", ports[2 * i + 1]))
        .collect();
    let lines: Vec<String> = apis
        .iter()
        .enumerate()
        .map(|(i, api)| format!("{} 127.0.0.1:{} {api}", i + 1, ports[2 * i]))
        .collect();
    Ok((lines.join("\n"), apis))
}

/// Settings a developer's shell may hold (`TANDEM_SECRET_API`, `RUST_LOG`, ...) must not leak
/// into the processes a test starts.
fn inherited_settings() -> Vec<String> {
    std::env::vars()
        .map(|(k, _)| k)
        .filter(|k| k.starts_with("TANDEM_") || k == "RUST_LOG")
        .collect()
}

/// A `tandem` command with a clean environment, no stdin, killed if the test drops it.
pub fn tandem_command(binary: &Path) -> tokio::process::Command {
    let mut command = tokio::process::Command::new(binary);
    for key in inherited_settings() {
        command.env_remove(key);
    }
    command.stdin(Stdio::null()).kill_on_drop(true);
    command
}

/// Runs a command to its end and answers its output; panics if it runs past `deadline`.
pub async fn run_to_exit(mut command: tokio::process::Command, deadline: Duration) -> Output {
    let described = format!("{:?}", command.as_std());
    command.stdout(Stdio::piped()).stderr(Stdio::piped());
    let child = command
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {described}: {e}"));
    match tokio::time::timeout(deadline, child.wait_with_output()).await {
        Ok(Ok(output)) => output,
        Ok(Err(e)) => panic!("waiting for {described} failed: {e}"),
        Err(_) => panic!("{described} was still running after {deadline:?}"),
    }
}

pub struct ServerProcess {
    label: String,
    binary: PathBuf,
    args: Vec<String>,
    log_path: PathBuf,
    work_dir: PathBuf,
    stdout_path: Option<PathBuf>,
    /// Environment variables set for the process, on top of the test's own environment less
    /// its Tandem settings.
    env: Vec<(String, String)>,
    /// The network namespace to run in (through `ip netns exec`, which execs the binary, so
    /// the child's pid is the server's and signals reach it).
    namespace: Option<String>,
    child: Option<Child>,
    paused: bool,
    starts: u32,
}

impl ServerProcess {
    /// A process not yet started. `label` names it in messages; `work_dir` is its current
    /// directory (so a default `./tandem-data` never lands in the source tree).
    pub fn new(
        label: impl Into<String>,
        binary: &Path,
        args: Vec<String>,
        log_path: PathBuf,
        work_dir: PathBuf,
    ) -> Self {
        ServerProcess {
            label: label.into(),
            binary: binary.to_path_buf(),
            args,
            log_path,
            work_dir,
            stdout_path: None,
            env: Vec::new(),
            namespace: None,
            child: None,
            paused: false,
            starts: 0,
        }
    }

    pub fn label(&self) -> &str {
        &self.label
    }

    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// From the next start on, write stdout to this file (created anew) instead of the log, so
    /// a test can read exactly what that start printed. `None` goes back to the log.
    pub fn set_stdout(&mut self, path: Option<PathBuf>) {
        self.stdout_path = path;
    }

    /// From the next start on, set these environment variables (as a container or a service
    /// manager would).
    pub fn set_env(&mut self, env: Vec<(String, String)>) {
        self.env = env;
    }

    /// From the next start on, run inside this network namespace.
    pub fn set_namespace(&mut self, namespace: Option<String>) {
        self.namespace = namespace;
    }

    /// Starts the process with its arguments; its output is appended to the log.
    pub fn spawn(&mut self) {
        assert!(self.child.is_none(), "{} is already running", self.label);
        self.starts += 1;
        let mut log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path)
            .unwrap_or_else(|e| panic!("cannot open {}: {e}", self.log_path.display()));
        let _ = writeln!(
            log,
            "==== tandem-testkit: start #{} of {}: {} {:?}",
            self.starts,
            self.label,
            self.binary.display(),
            self.args
        );
        let stdout = match &self.stdout_path {
            Some(path) => std::fs::File::create(path)
                .unwrap_or_else(|e| panic!("cannot create {}: {e}", path.display())),
            None => log.try_clone().expect("duplicate the log file handle"),
        };
        let mut command = match &self.namespace {
            Some(namespace) => {
                let mut command = Command::new("ip");
                command.args(["netns", "exec", namespace]).arg(&self.binary);
                command
            }
            None => Command::new(&self.binary),
        };
        for key in inherited_settings() {
            command.env_remove(key);
        }
        command
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .args(&self.args)
            .current_dir(&self.work_dir)
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(log);
        let child = command
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", self.binary.display()));
        self.child = Some(child);
        self.paused = false;
    }

    /// True from `spawn` until the process is killed, stopped or seen to have exited.
    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    pub fn is_paused(&self) -> bool {
        self.paused
    }

    /// Running and not paused: it can answer requests.
    pub fn is_live(&self) -> bool {
        self.is_running() && !self.paused
    }

    /// The exit status if the process has ended on its own (it is then no longer running).
    pub fn exited(&mut self) -> Option<ExitStatus> {
        let child = self.child.as_mut()?;
        match child.try_wait() {
            Ok(Some(status)) => {
                self.child = None;
                self.paused = false;
                Some(status)
            }
            Ok(None) => None,
            Err(e) => panic!("cannot poll {}: {e}", self.label),
        }
    }

    /// The operating system's id for the process, while it runs.
    pub fn process_id(&self) -> Option<u32> {
        self.child.as_ref().map(std::process::Child::id)
    }

    fn pid(&self) -> Pid {
        let child = self
            .child
            .as_ref()
            .unwrap_or_else(|| panic!("{} is not running", self.label));
        Pid::from_raw(i32::try_from(child.id()).expect("pid fits in i32"))
    }

    fn signal(&self, signal: Signal) {
        kill(self.pid(), signal)
            .unwrap_or_else(|e| panic!("cannot send {signal} to {}: {e}", self.label));
    }

    /// SIGKILL, and reap the process. Does nothing if it is not running.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        self.paused = false;
    }

    /// SIGTERM, then wait for the process to exit; panics if it is still running at the
    /// deadline. Answers its exit status.
    pub async fn stop(&mut self, deadline: Duration) -> ExitStatus {
        if self.paused {
            self.resume();
        }
        self.signal(Signal::SIGTERM);
        let started = Instant::now();
        loop {
            if let Some(status) = self.exited() {
                return status;
            }
            if started.elapsed() >= deadline {
                panic!(
                    "{} did not exit within {deadline:?} after SIGTERM",
                    self.label
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// SIGSTOP: the process stays alive but answers nothing until resumed.
    pub fn pause(&mut self) {
        self.signal(Signal::SIGSTOP);
        self.paused = true;
    }

    /// SIGCONT after a pause.
    pub fn resume(&mut self) {
        self.signal(Signal::SIGCONT);
        self.paused = false;
    }

    /// Everything the process has written, over all its starts.
    pub fn log(&self) -> String {
        std::fs::read(&self.log_path)
            .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
            .unwrap_or_default()
    }

    /// The last `lines` lines of the log.
    pub fn log_tail(&self, lines: usize) -> String {
        let log = self.log();
        let all: Vec<&str> = log.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// True when the process has reported a Rust panic in its log. A server must never panic:
    /// a panicked Raft core stops serving while the process stays up.
    pub fn has_panicked(&self) -> bool {
        self.log().contains("panicked at")
    }

    /// Each panic's location and message (the line after `panicked at`), without backtraces.
    pub fn panics(&self) -> Vec<String> {
        let log = self.log();
        let lines: Vec<&str> = log.lines().collect();
        lines
            .iter()
            .enumerate()
            .filter(|(_, line)| line.contains("panicked at"))
            .map(|(i, line)| match lines.get(i + 1) {
                Some(message) => format!("{line} {message}"),
                None => line.to_string(),
            })
            .collect()
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        self.kill();
        if !std::thread::panicking() && self.has_panicked() {
            panic!(
                "{} panicked during the test: {:?}; its log:\n{}",
                self.label,
                self.panics(),
                self.log_tail(LOG_TAIL_LINES)
            );
        }
        if std::thread::panicking() && self.starts > 0 {
            let panics = self.panics();
            let panics = if panics.is_empty() {
                String::new()
            } else {
                format!("---- {} panicked: {panics:?}\n", self.label)
            };
            eprintln!(
                "{panics}---- last {LOG_TAIL_LINES} lines of {} ({}) ----\n{}\n---- end of {} ----",
                self.label,
                self.log_path.display(),
                self.log_tail(LOG_TAIL_LINES),
                self.label
            );
        }
    }
}
