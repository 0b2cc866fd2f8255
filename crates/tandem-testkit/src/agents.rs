//! Real `tandem agent` processes for tests: each with its own data folder, log and local health
//! port, enrolled with a join token made on the test's cluster; and a check target whose health
//! the test switches.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use tempfile::TempDir;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::cluster::Cluster;
use crate::netns::ClusterNetwork;
use crate::process::{free_ports, ServerProcess};
use crate::wait::{wait_until, DEADLINE};

/// How long an agent may take to exit after SIGTERM (it drains and deregisters first).
const AGENT_STOP_DEADLINE: Duration = Duration::from_secs(15);

/// Makes a join token for `pool` on the cluster; `extra` adds fields such as `ttl` or `uses`.
pub async fn join_token(cluster: &Cluster, pool: &str, extra: Value) -> String {
    let mut body = json!({ "pool": pool });
    if let (Some(body), Some(extra)) = (body.as_object_mut(), extra.as_object()) {
        body.extend(extra.clone());
    }
    let reply = cluster
        .client()
        .post_json("/v1/join-tokens", &body)
        .await
        .expect("create a join token");
    assert_eq!(
        reply.status.as_u16(),
        201,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    reply.json().expect("the token answer is JSON")["token"]
        .as_str()
        .expect("the answer carries the token")
        .to_string()
}

/// Where an agent runs: its health endpoint, its network namespace if any, and its data
/// folder (`None`: a new one that the agent owns).
struct Placement {
    health_addr: String,
    namespace: Option<String>,
    data_dir: Option<std::path::PathBuf>,
}

impl Placement {
    /// On 127.0.0.1 with a free port for its health endpoint.
    fn loopback(data_dir: Option<&Path>) -> Placement {
        let port = free_ports(1).expect("a free port")[0];
        Placement {
            health_addr: format!("127.0.0.1:{port}"),
            namespace: None,
            data_dir: data_dir.map(Path::to_path_buf),
        }
    }
}

/// One `tandem agent` process.
pub struct AgentProcess {
    // Dropped first: the process is killed (its log printed on panic) before its folders go.
    process: ServerProcess,
    name: String,
    health_addr: String,
    data_dir: std::path::PathBuf,
    /// The data folder when this process made it (removed when dropped).
    _owned_data_dir: Option<TempDir>,
    _log_dir: TempDir,
}

impl AgentProcess {
    /// Starts an agent named `name` in `pool` that talks to the cluster's servers, with
    /// `extra_args` after the harness's own (`--servers`, `--pool`, `--name`, `--address`,
    /// `--data-dir`, `--health-listen`, and `--join-token` when given).
    pub fn start(
        binary: &Path,
        cluster: &Cluster,
        name: &str,
        pool: &str,
        token: Option<&str>,
        extra_args: &[&str],
    ) -> AgentProcess {
        let place = Placement::loopback(None);
        Self::spawn(binary, cluster, name, pool, token, extra_args, place)
    }

    /// Like [`AgentProcess::start`], with the data folder of an earlier agent (a restart).
    pub fn start_in(
        binary: &Path,
        cluster: &Cluster,
        name: &str,
        pool: &str,
        token: Option<&str>,
        extra_args: &[&str],
        data_dir: &Path,
    ) -> AgentProcess {
        let place = Placement::loopback(Some(data_dir));
        Self::spawn(binary, cluster, name, pool, token, extra_args, place)
    }

    /// Like [`AgentProcess::start`], inside network namespace `index` of `network`, with its
    /// health endpoint on that namespace's address (port 8080), where the test reaches it over
    /// the bridge. `cluster` may be another cluster than the network's (see
    /// [`Cluster::start_foreign_in`]).
    pub fn start_in_namespace(
        binary: &Path,
        cluster: &Cluster,
        (network, index): (&ClusterNetwork, usize),
        name: &str,
        pool: &str,
        token: Option<&str>,
        extra_args: &[&str],
    ) -> AgentProcess {
        let place = Placement {
            health_addr: format!("{}:8080", network.node_ip(index)),
            namespace: Some(network.namespace(index).to_string()),
            data_dir: None,
        };
        Self::spawn(binary, cluster, name, pool, token, extra_args, place)
    }

    fn spawn(
        binary: &Path,
        cluster: &Cluster,
        name: &str,
        pool: &str,
        token: Option<&str>,
        extra_args: &[&str],
        place: Placement,
    ) -> AgentProcess {
        let log_dir = TempDir::new().expect("an agent log folder");
        let health_addr = place.health_addr;
        let owned = match place.data_dir {
            Some(_) => None,
            None => Some(TempDir::new().expect("an agent data folder")),
        };
        let data_dir = place
            .data_dir
            .as_deref()
            .or(owned.as_ref().map(TempDir::path))
            .expect("a data folder, given or made");
        let servers: Vec<&str> = (0..cluster.len()).map(|i| cluster.api_addr(i)).collect();
        let mut args: Vec<String> = vec![
            "agent".into(),
            "--servers".into(),
            servers.join(","),
            "--pool".into(),
            pool.into(),
            "--name".into(),
            name.into(),
            "--address".into(),
            format!("{name}.test:51820"),
            "--data-dir".into(),
            data_dir.display().to_string(),
            "--health-listen".into(),
            health_addr.clone(),
        ];
        if let Some(token) = token {
            args.push("--join-token".into());
            args.push(token.into());
        }
        args.extend(extra_args.iter().map(|a| a.to_string()));
        let mut process = ServerProcess::new(
            format!("agent {name}"),
            binary,
            args,
            log_dir.path().join(format!("agent-{name}.log")),
            data_dir.to_path_buf(),
        );
        process.set_namespace(place.namespace);
        process.spawn();
        AgentProcess {
            process,
            name: name.to_string(),
            health_addr,
            data_dir: data_dir.to_path_buf(),
            _owned_data_dir: owned,
            _log_dir: log_dir,
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// `http://<health-listen>`.
    pub fn health_url(&self) -> String {
        format!("http://{}", self.health_addr)
    }

    pub fn log(&self) -> String {
        self.process.log()
    }

    /// The operating system's id for the agent's process, while it runs.
    pub fn process_id(&self) -> Option<u32> {
        self.process.process_id()
    }

    /// kill -9.
    pub fn kill(&mut self) {
        self.process.kill();
    }

    /// Starts the agent again after a kill or stop: same arguments, data folder and place.
    pub fn restart(&mut self) {
        self.process.spawn();
    }

    pub fn is_running(&self) -> bool {
        self.process.is_running()
    }

    /// SIGTERM, and the exit status once it stopped.
    pub async fn stop(&mut self) -> std::process::ExitStatus {
        self.process.stop(AGENT_STOP_DEADLINE).await
    }

    /// The exit status, once the process ended by itself.
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.process.exited()
    }

    /// Waits until the process ended by itself; panics after [`DEADLINE`].
    pub async fn wait_for_exit(&mut self) -> std::process::ExitStatus {
        let mut status = None;
        wait_until(
            DEADLINE,
            &format!("agent {} to exit", self.name),
            async || {
                status = self.process.exited();
                status.is_some()
            },
        )
        .await;
        status.expect("set when the wait ended")
    }
}

/// An HTTP endpoint for agents' `http` checks: 200 while healthy, 500 otherwise.
pub struct CheckTarget {
    addr: SocketAddr,
    healthy: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl CheckTarget {
    pub async fn start() -> CheckTarget {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a check target");
        let addr = listener.local_addr().expect("its address");
        let healthy = Arc::new(AtomicBool::new(true));
        let serving = healthy.clone();
        let task = tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let healthy = serving.load(Ordering::SeqCst);
                tokio::spawn(async move {
                    let mut request = [0u8; 4096];
                    let _ = stream.read(&mut request).await;
                    let answer: &[u8] = if healthy {
                        b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok"
                    } else {
                        b"HTTP/1.1 500 Internal Server Error\r\ncontent-length: 4\r\nconnection: close\r\n\r\nsick"
                    };
                    let _ = stream.write_all(answer).await;
                    let _ = stream.shutdown().await;
                });
            }
        });
        CheckTarget {
            addr,
            healthy,
            task,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}/ready", self.addr)
    }

    pub fn set_healthy(&self, healthy: bool) {
        self.healthy.store(healthy, Ordering::SeqCst);
    }
}

impl Drop for CheckTarget {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Each agent of `pool` (all pools when `None`) with its state, as the registry shows them.
pub async fn agent_states(
    cluster: &Cluster,
    pool: Option<&str>,
) -> std::collections::BTreeMap<String, String> {
    let path = match pool {
        Some(pool) => format!("/v1/agents?pool={pool}"),
        None => "/v1/agents".to_string(),
    };
    let reply = cluster.client().get(&path).await.expect("list the agents");
    assert_eq!(
        reply.status.as_u16(),
        200,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    let list = reply.json().expect("the agent list is JSON");
    list["agents"]
        .as_array()
        .expect("the list holds agents")
        .iter()
        .map(|agent| {
            (
                agent["name"].as_str().unwrap_or_default().to_string(),
                agent["state"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

/// Waits until every one of `names` shows `state` in the registry.
pub async fn wait_for_agent_states(cluster: &Cluster, names: &[&str], state: &str) {
    let what = format!("agents {names:?} to be {state}");
    wait_until(DEADLINE, &what, async || {
        let states = agent_states(cluster, None).await;
        names
            .iter()
            .all(|name| states.get(*name).map(String::as_str) == Some(state))
    })
    .await;
}

/// The name a pick of `pool` answers, or the error code when it finds none.
pub async fn pick(cluster: &Cluster, pool: &str, query: &str) -> Result<String, String> {
    let reply = cluster
        .client()
        .get(&format!("/v1/pools/{pool}/pick{query}"))
        .await
        .expect("a pick answers");
    let body = reply.json().expect("a pick answers JSON");
    if reply.status.is_success() {
        Ok(body["name"].as_str().unwrap_or_default().to_string())
    } else {
        Err(body["error"]["code"]
            .as_str()
            .unwrap_or_default()
            .to_string())
    }
}
