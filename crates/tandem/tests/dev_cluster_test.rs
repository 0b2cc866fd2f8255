//! `tandem dev` starts a local cluster in one command, prints how to reach it, serves (also when
//! one of its servers is killed, which `tandem status` then shows), and on Ctrl-C stops every
//! process it started and removes its temporary folder.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use nix::errno::Errno;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use tandem_client::Client;
use tandem_testkit::{run_to_exit, tandem_command};
use tokio::io::{AsyncBufReadExt, BufReader};

fn tandem() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_tandem"))
}

const DEADLINE: Duration = Duration::from_secs(60);

/// What `tandem dev` printed before "Ctrl-C stops everything.".
#[derive(Default)]
struct Printed {
    addrs: Vec<String>,
    secret: String,
    pids: Vec<i32>,
    folder: PathBuf,
    agents: usize,
}

fn parse(lines: &[String]) -> Printed {
    let mut printed = Printed::default();
    for line in lines {
        let words: Vec<&str> = line.split_whitespace().collect();
        if let Some(at) = words.iter().position(|w| *w == "pid") {
            printed.pids.push(words[at + 1].parse().expect("a pid"));
        }
        if words.first() == Some(&"agent") {
            printed.agents += 1;
        }
        if let Some(rest) = line.strip_prefix("data and logs: ") {
            let path = rest.split(" (").next().expect("a path");
            printed.folder = PathBuf::from(path);
        }
        if let Some(rest) = line.trim().strip_prefix("export ") {
            for setting in rest.split_whitespace() {
                match setting.split_once('=') {
                    Some(("TANDEM_ADDR", addrs)) => {
                        printed.addrs = addrs.split(',').map(str::to_string).collect()
                    }
                    Some(("TANDEM_SECRET_API", secret)) => printed.secret = secret.to_string(),
                    _ => {}
                }
            }
        }
    }
    printed
}

fn is_running(pid: i32) -> bool {
    kill(Pid::from_raw(pid), None) != Err(Errno::ESRCH)
}

#[tokio::test]
async fn tandem_dev_serves_a_cluster_through_a_kill_and_ctrl_c_leaves_nothing_running() {
    let mut child = tandem_command(tandem())
        .args(["dev", "--servers", "3", "--agents", "1"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start tandem dev");
    let mut stdout = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let mut lines = Vec::new();
    let read = async {
        while let Some(line) = stdout.next_line().await.expect("read stdout") {
            let done = line.starts_with("Ctrl-C stops everything");
            lines.push(line);
            if done {
                return true;
            }
        }
        false
    };
    let ready = tokio::time::timeout(DEADLINE, read).await;
    assert!(
        matches!(ready, Ok(true)),
        "tandem dev did not say it was ready: {lines:?}"
    );
    let printed = parse(&lines);
    assert_eq!(printed.addrs.len(), 3, "{lines:?}");
    assert_eq!(printed.agents, 1, "{lines:?}");
    assert_eq!(
        printed.pids.len(),
        4,
        "three servers and an agent: {lines:?}"
    );
    assert!(printed.folder.is_dir(), "{lines:?}");

    // The line to try works as printed.
    let client = Client::new(&printed.addrs, Some(printed.secret.clone()))
        .expect("client")
        .with_deadline(DEADLINE);
    let put = client
        .put_bytes("/v1/kv/greeting", b"hello".to_vec())
        .await
        .expect("a put");
    assert!(put.status.is_success(), "{}", put.status);
    let got = client.get("/v1/kv/greeting").await.expect("a get");
    assert_eq!(got.body, b"hello");
    let agents: serde_json::Value = client
        .get("/v1/agents?pool=dev")
        .await
        .expect("the agents")
        .json()
        .expect("json");
    assert_eq!(
        agents["agents"].as_array().map(Vec::len),
        Some(1),
        "{agents}"
    );

    // One server killed: the others keep serving, and `tandem status` names it unreachable.
    let killed = printed.pids[0];
    kill(Pid::from_raw(killed), Signal::SIGKILL).expect("kill a server");
    let put = client
        .put_bytes("/v1/kv/greeting", b"still here".to_vec())
        .await
        .expect("a put after the kill");
    assert!(put.status.is_success(), "{}", put.status);
    let mut status = tandem_command(tandem());
    status
        .env("TANDEM_ADDR", printed.addrs.join(","))
        .env("TANDEM_SECRET_API", &printed.secret)
        .arg("status");
    let table = run_to_exit(status, DEADLINE).await;
    let table = String::from_utf8_lossy(&table.stdout).into_owned();
    let rows: Vec<Vec<&str>> = table
        .lines()
        .skip(1)
        .map(|line| line.split_whitespace().collect())
        .collect();
    assert_eq!(rows.len(), 3, "{table}");
    assert_eq!(rows[0][3], "unreachable", "server 1 was killed: {table}");
    assert_eq!(
        rows.iter().filter(|row| row[4] == "active").count(),
        1,
        "one active server: {table}"
    );

    let dev = Pid::from_raw(child.id().expect("pid") as i32);
    kill(dev, Signal::SIGINT).expect("Ctrl-C");
    let status = tokio::time::timeout(DEADLINE, child.wait())
        .await
        .expect("tandem dev stops")
        .expect("status");
    assert!(status.success(), "{status}");
    let mut stderr = String::new();
    let mut pipe = child.stderr.take().expect("stderr");
    tokio::io::AsyncReadExt::read_to_string(&mut pipe, &mut stderr)
        .await
        .expect("stderr");
    assert!(
        stderr.contains("server-1 exited"),
        "the kill is reported: {stderr}"
    );
    for pid in &printed.pids {
        assert!(!is_running(*pid), "process {pid} outlived tandem dev");
    }
    assert!(!printed.folder.exists(), "the temporary folder is removed");
}

#[tokio::test]
async fn a_cluster_size_tandem_does_not_run_is_refused() {
    let mut command = tandem_command(tandem());
    command.args(["dev", "--servers", "2"]);
    let output = run_to_exit(command, DEADLINE).await;
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("use 1, 3 or 5"), "{stderr}");
}
