//! A real etcd cluster for one test: three members (Debian's `etcd`) on free ports of
//! 127.0.0.1, each with a data folder in one temporary folder. A member can be killed and
//! started again, as a machine that dies and returns.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tempfile::TempDir;

use crate::http::http_client;
use crate::process::free_ports;
use crate::wait::{wait_until, DEADLINE};

struct Member {
    name: String,
    client_port: u16,
    peer_port: u16,
    child: Option<Child>,
    /// Set once the member has started, so a restart joins the cluster it formed.
    started: bool,
}

pub struct EtcdCluster {
    dir: TempDir,
    members: Vec<Member>,
}

impl EtcdCluster {
    /// Starts `size` members and answers once every one of them is healthy.
    pub async fn start(size: usize) -> EtcdCluster {
        let ports = free_ports(2 * size).expect("free ports for etcd");
        let members = (0..size)
            .map(|i| Member {
                name: format!("etcd-{}", i + 1),
                client_port: ports[2 * i],
                peer_port: ports[2 * i + 1],
                child: None,
                started: false,
            })
            .collect();
        let mut cluster = EtcdCluster {
            dir: TempDir::new().expect("a temporary folder for etcd"),
            members,
        };
        for i in 0..size {
            cluster.spawn(i);
        }
        for i in 0..size {
            cluster.wait_healthy(i).await;
        }
        cluster
    }

    /// Every member's client URL, as `--etcd-endpoints` takes them.
    pub fn endpoints(&self) -> Vec<String> {
        (0..self.members.len()).map(|i| self.endpoint(i)).collect()
    }

    pub fn endpoint(&self, member: usize) -> String {
        format!("http://127.0.0.1:{}", self.members[member].client_port)
    }

    fn log_path(&self, member: usize) -> PathBuf {
        self.dir
            .path()
            .join(format!("{}.log", self.members[member].name))
    }

    fn spawn(&mut self, member: usize) {
        let initial_cluster = self
            .members
            .iter()
            .map(|m| format!("{}=http://127.0.0.1:{}", m.name, m.peer_port))
            .collect::<Vec<_>>()
            .join(",");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path(member))
            .expect("create the etcd log");
        let data_dir = self.dir.path().join(&self.members[member].name);
        let m = &mut self.members[member];
        let client_url = format!("http://127.0.0.1:{}", m.client_port);
        let peer_url = format!("http://127.0.0.1:{}", m.peer_port);
        let child = Command::new("etcd")
            .args(["--name", &m.name])
            .arg("--data-dir")
            .arg(&data_dir)
            .args(["--listen-client-urls", &client_url])
            .args(["--advertise-client-urls", &client_url])
            .args(["--listen-peer-urls", &peer_url])
            .args(["--initial-advertise-peer-urls", &peer_url])
            .args(["--initial-cluster", &initial_cluster])
            .args(["--initial-cluster-token", "tandem-test"])
            // Tandem's own cluster notices a dead leader within half a second; so does this one.
            .args(["--heartbeat-interval", "50", "--election-timeout", "500"])
            .args([
                "--initial-cluster-state",
                if m.started { "existing" } else { "new" },
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start etcd ({e}); install Debian's etcd-server, or run scripts/test, which installs it")
            });
        m.child = Some(child);
        m.started = true;
    }

    async fn wait_healthy(&self, member: usize) {
        let url = format!("{}/health", self.endpoint(member));
        let http = http_client();
        wait_until(
            DEADLINE,
            "an etcd member to be healthy",
            async || match http.get(&url).timeout(Duration::from_secs(1)).send().await {
                Ok(reply) => reply
                    .text()
                    .await
                    .is_ok_and(|body| body.contains("\"health\":\"true\"")),
                Err(_) => false,
            },
        )
        .await;
    }

    /// Kills a member with SIGKILL.
    pub fn kill(&mut self, member: usize) {
        if let Some(mut child) = self.members[member].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts a killed member again on its data; answers once it is healthy.
    pub async fn restart(&mut self, member: usize) {
        assert!(self.members[member].child.is_none(), "the member runs");
        self.spawn(member);
        self.wait_healthy(member).await;
    }

    /// A member's log so far, for a failing test's message.
    pub fn log(&self, member: usize) -> String {
        std::fs::read_to_string(self.log_path(member)).unwrap_or_default()
    }
}

impl Drop for EtcdCluster {
    fn drop(&mut self) {
        for member in 0..self.members.len() {
            self.kill(member);
        }
    }
}
