//! rqlite's own clients from PyPI work against a 3-node Tandem cluster unchanged: pyrqlite
//! (DB-API) and SQLAlchemy's ORM through sqlalchemy-rqlite. Each starts against a standby
//! (so its writes are forwarded), the active server is killed with SIGKILL, and the same client
//! goes on against a surviving node. The clients' scripts are in `rqlite/`; `scripts/test`
//! installs the packages.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tandem_testkit::{Cluster, API_SECRET};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout, Command};

fn tandem() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_tandem"))
}

fn script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/rqlite")
        .join(name)
}

/// A client script running against the cluster, which stops at "ready" until told where to
/// go on.
struct ClientScript {
    name: &'static str,
    child: Child,
    lines: Lines<BufReader<ChildStdout>>,
}

impl ClientScript {
    fn start(name: &'static str, address: &str) -> ClientScript {
        // -B: no __pycache__ beside the scripts.
        let mut child = Command::new("python3")
            .arg("-B")
            .arg(script(name))
            .arg(API_SECRET)
            .arg(address)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("python3 {name}: {e}; scripts/test installs what it needs"));
        let lines = BufReader::new(child.stdout.take().unwrap()).lines();
        ClientScript { name, child, lines }
    }

    /// Waits for the script to print `word`; panics with its exit status if it ends first.
    async fn expect(&mut self, word: &str) {
        let line = tokio::time::timeout(Duration::from_secs(90), self.lines.next_line())
            .await
            .unwrap_or_else(|_| panic!("{}: no {word:?} within 90s", self.name));
        match line.unwrap() {
            Some(line) if line.trim() == word => {}
            other => {
                let status = self.child.wait().await.unwrap();
                panic!(
                    "{}: expected {word:?}, got {other:?}; it ended with {status} (its error is above)",
                    self.name
                );
            }
        }
    }

    async fn go_on_at(&mut self, address: &str) {
        let stdin = self.child.stdin.as_mut().unwrap();
        stdin
            .write_all(format!("{address}\n").as_bytes())
            .await
            .unwrap();
        stdin.flush().await.unwrap();
    }

    async fn finish(mut self) {
        self.expect("done").await;
        let status = self.child.wait().await.unwrap();
        assert!(status.success(), "{}: {status}", self.name);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn pyrqlite_and_sqlalchemy_go_on_after_the_active_server_is_killed() {
    let mut cluster = Cluster::start(tandem(), 3, &[]).await;
    let active = cluster.leader().await;
    let followers = cluster.followers().await;
    let (first, survivor) = (followers[0], followers[1]);

    let mut clients = Vec::new();
    for name in ["pyrqlite_dbapi.py", "sqlalchemy_orm.py"] {
        let mut client = ClientScript::start(name, cluster.api_addr(first));
        client.expect("ready").await;
        clients.push(client);
    }

    cluster.kill(active);
    for client in &mut clients {
        client.go_on_at(cluster.api_addr(survivor)).await;
    }
    for client in clients {
        client.finish().await;
    }
    cluster.assert_no_panics();
}
