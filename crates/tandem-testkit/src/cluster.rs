//! A cluster of `tandem` server processes on 127.0.0.1. Nodes are addressed by index
//! `0..len()`; node `i` has Raft id `i + 1`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::time::Duration;

use reqwest::Method;
use serde_json::Value;
use tempfile::TempDir;
use tokio::time::Instant;

use crate::http::{self, Auth, HttpReply};
use crate::netns::ClusterNetwork;
use crate::process::{free_ports, run_to_exit, tandem_command, ServerProcess};
use crate::wait::{wait_for, DEADLINE};

/// The API secret every test cluster uses (16+ characters, as the server requires).
pub const API_SECRET: &str = "tandem-test-api-secret-7f3a";
/// The cluster (node-to-node) secret every test cluster uses.
pub const CLUSTER_SECRET: &str = "tandem-test-raft-secret-91c2";

/// The header that carries the cluster secret on the cluster port.
pub const CLUSTER_SECRET_HEADER: &str = "x-tandem-cluster-secret";

/// How often a start is retried with new ports when one was taken in between.
const START_ATTEMPTS: usize = 5;
/// How long a started process may take to listen on its ports.
const LISTEN_DEADLINE: Duration = Duration::from_secs(20);
/// How long a node may take to exit after SIGTERM.
const STOP_DEADLINE: Duration = Duration::from_secs(15);
/// How long a CLI command run against the cluster may take.
const CLI_DEADLINE: Duration = Duration::from_secs(90);
/// Per-request limit while polling, so a paused or dying node does not hold up a poll.
const POLL_REQUEST_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a membership change may take: a server added empty catches up first.
const MEMBERSHIP_DEADLINE: Duration = Duration::from_secs(60);

struct ClusterNode {
    // Dropped first: the process is killed (and its log printed on panic) before its folders go.
    process: ServerProcess,
    raft_addr: String,
    api_addr: String,
    data_dir: TempDir,
}

pub struct Cluster {
    nodes: Vec<ClusterNode>,
    /// Deleted on drop unless the test failed or TANDEM_TEST_KEEP_LOGS is set.
    logs: Option<TempDir>,
    http: reqwest::Client,
    /// Speaks to cluster ports with a certificate of this cluster's CA.
    cluster_http: reqwest::Client,
    /// Set when every node runs in a network namespace of its own; dropped after the nodes.
    network: Option<ClusterNetwork>,
}

/// Why a start attempt failed.
enum StartFailure {
    /// A port picked as free was taken before the node could bind it; try new ports.
    PortTaken,
    Other(String),
}

impl Cluster {
    /// Starts `nodes` server processes that form one cluster, each with `extra_args` after the
    /// harness's own (`--node-id`, `--nodes`, `--data-dir`, secrets), and waits until every one
    /// listens on its ports. It does not wait for a leader: see [`Cluster::wait_for_leader`].
    pub async fn start(binary: &Path, nodes: usize, extra_args: &[&str]) -> Cluster {
        assert!(nodes > 0, "a cluster needs at least one node");
        for attempt in 1..=START_ATTEMPTS {
            let ports = free_ports(nodes * 2).expect("free ports on 127.0.0.1");
            let addrs = (0..nodes)
                .map(|i| {
                    (
                        format!("127.0.0.1:{}", ports[2 * i]),
                        format!("127.0.0.1:{}", ports[2 * i + 1]),
                    )
                })
                .collect();
            let cluster = Cluster::spawn_all(
                binary,
                addrs,
                vec![None; nodes],
                None,
                CLUSTER_SECRET,
                extra_args,
            );
            match cluster.all_listening().await {
                Ok(cluster) => return cluster,
                Err(StartFailure::PortTaken) if attempt < START_ATTEMPTS => {
                    eprintln!("tandem-testkit: a port was taken during start {attempt}; retrying with new ports");
                }
                Err(StartFailure::PortTaken) => {
                    panic!("ports were taken on every one of {START_ATTEMPTS} start attempts")
                }
                Err(StartFailure::Other(message)) => panic!("{message}"),
            }
        }
        unreachable!("the loop returns or panics")
    }

    /// Like [`Cluster::start`], but every node runs in a network namespace of its own with an
    /// address of its own (see [`ClusterNetwork`]), so that [`Cluster::network`] can cut or
    /// thin out the traffic between particular nodes. Needs root, `ip` and `nft`.
    pub async fn start_in_namespaces(binary: &Path, nodes: usize, extra_args: &[&str]) -> Cluster {
        Cluster::start_in_namespaces_with_spares(binary, nodes, 0, extra_args).await
    }

    /// Like [`Cluster::start_in_namespaces`], with `spares` more namespaces on the same bridge,
    /// left empty for agents, targets or another cluster: namespaces `len()..len() + spares`
    /// of [`Cluster::network`].
    pub async fn start_in_namespaces_with_spares(
        binary: &Path,
        nodes: usize,
        spares: usize,
        extra_args: &[&str],
    ) -> Cluster {
        assert!(nodes > 0, "a cluster needs at least one node");
        let network = ClusterNetwork::create(nodes + spares);
        let placed = (0..nodes)
            .map(|i| (network.node_ip(i), network.namespace(i).to_string()))
            .collect();
        Cluster::start_placed(binary, placed, Some(network), CLUSTER_SECRET, extra_args).await
    }

    /// A one-node cluster of its own in namespace `index` of this cluster's network, with
    /// another cluster secret (so another agent CA): agents enrolled there hold credentials
    /// that this cluster's agents must refuse.
    pub async fn start_foreign_in(&self, binary: &Path, index: usize, secret: &str) -> Cluster {
        let network = self.network();
        let placed = vec![(network.node_ip(index), network.namespace(index).to_string())];
        Cluster::start_placed(binary, placed, None, secret, &[]).await
    }

    /// Starts node `i` at `placed[i]`: its address and the namespace it runs in.
    async fn start_placed(
        binary: &Path,
        placed: Vec<(String, String)>,
        network: Option<ClusterNetwork>,
        secret: &str,
        extra_args: &[&str],
    ) -> Cluster {
        let (addrs, namespaces): (Vec<_>, Vec<_>) = placed
            .into_iter()
            .map(|(ip, namespace)| {
                (
                    (format!("{ip}:8100"), format!("{ip}:8200")),
                    Some(namespace),
                )
            })
            .unzip();
        let cluster = Cluster::spawn_all(binary, addrs, namespaces, network, secret, extra_args);
        match cluster.all_listening().await {
            Ok(cluster) => cluster,
            // Each node has an address of its own: nothing else can hold its ports.
            Err(StartFailure::PortTaken) => panic!("a node could not bind its own address"),
            Err(StartFailure::Other(message)) => panic!("{message}"),
        }
    }

    /// The network faults of a cluster started with [`Cluster::start_in_namespaces`].
    pub fn network(&self) -> &ClusterNetwork {
        self.network
            .as_ref()
            .expect("network faults need a cluster started with Cluster::start_in_namespaces")
    }

    async fn all_listening(mut self) -> Result<Cluster, StartFailure> {
        for i in 0..self.len() {
            self.wait_listening(i).await?;
        }
        Ok(self)
    }

    /// Starts one node per `(raft_addr, api_addr)`, in its namespace when it has one.
    fn spawn_all(
        binary: &Path,
        addrs: Vec<(String, String)>,
        namespaces: Vec<Option<String>>,
        network: Option<ClusterNetwork>,
        secret: &str,
        extra_args: &[&str],
    ) -> Cluster {
        let logs = tempfile::Builder::new()
            .prefix("tandem-test-logs-")
            .tempdir()
            .expect("create a temporary folder for logs");
        let node_list = addrs
            .iter()
            .enumerate()
            .map(|(i, (raft, api))| format!("{} {raft} {api}", i + 1))
            .collect::<Vec<_>>()
            .join("\n");
        let nodes = addrs
            .into_iter()
            .enumerate()
            .map(|(i, (raft_addr, api_addr))| {
                let id = i + 1;
                let data_dir = tempfile::Builder::new()
                    .prefix(&format!("tandem-test-node{id}-"))
                    .tempdir()
                    .expect("create a temporary data folder");
                let mut args =
                    server_args(id as u64, &node_list, data_dir.path(), secret, extra_args);
                if namespaces[i].is_some() {
                    // Its own address, beyond loopback: plain HTTP must be asked for.
                    args.extend(["--api-tls".into(), "off".into()]);
                }
                let mut process = ServerProcess::new(
                    format!("node {id} (index {i}, api {api_addr})"),
                    binary,
                    args,
                    logs.path().join(format!("node-{id}.log")),
                    logs.path().to_path_buf(),
                );
                process.set_namespace(namespaces[i].clone());
                process.spawn();
                ClusterNode {
                    process,
                    raft_addr,
                    api_addr,
                    data_dir,
                }
            })
            .collect();
        Cluster {
            nodes,
            logs: Some(logs),
            http: http::http_client(),
            cluster_http: http::cluster_port_client(Some(secret)),
            network,
        }
    }

    /// Waits until node `i` answers HTTP on its API port (any status), or has exited.
    async fn wait_listening(&mut self, i: usize) -> Result<(), StartFailure> {
        let started = Instant::now();
        loop {
            if let Some(status) = self.nodes[i].process.exited() {
                let log = self.nodes[i].process.log();
                if log.contains("cannot listen") {
                    return Err(StartFailure::PortTaken);
                }
                return Err(StartFailure::Other(format!(
                    "{} exited with {status} while starting; its log:\n{}",
                    self.nodes[i].process.label(),
                    self.nodes[i].process.log_tail(60)
                )));
            }
            let answer = http::send(
                &self.http,
                Method::GET,
                format!("{}/health", self.api_url(i)),
                None,
                None,
                Some(POLL_REQUEST_TIMEOUT),
            )
            .await;
            // Any status will do (503 until a leader is known), but it must come from this
            // node, not from another test's server that took the port in between.
            let expected_id = self.node_id(i).to_string();
            if let Ok(reply) = answer {
                if reply.header("tandem-node-id") == Some(expected_id.as_str()) {
                    return Ok(());
                }
            }
            if started.elapsed() >= LISTEN_DEADLINE {
                return Err(StartFailure::Other(format!(
                    "{} did not listen within {LISTEN_DEADLINE:?}",
                    self.nodes[i].process.label()
                )));
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    // ---- addresses ----

    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// The Raft node id of node `i`.
    pub fn node_id(&self, i: usize) -> u64 {
        i as u64 + 1
    }

    /// The index of the node with Raft id `id`.
    pub fn index_of(&self, id: u64) -> usize {
        let index = usize::try_from(id).expect("node id fits usize") - 1;
        assert!(index < self.len(), "no node with id {id}");
        index
    }

    /// `127.0.0.1:<port>` of node `i`'s client API.
    pub fn api_addr(&self, i: usize) -> &str {
        &self.nodes[i].api_addr
    }

    /// `http://127.0.0.1:<port>` of node `i`'s client API.
    pub fn api_url(&self, i: usize) -> String {
        format!("http://{}", self.nodes[i].api_addr)
    }

    /// `127.0.0.1:<port>` of node `i`'s cluster (Raft) port.
    pub fn raft_addr(&self, i: usize) -> &str {
        &self.nodes[i].raft_addr
    }

    /// `https://127.0.0.1:<port>` of node `i`'s cluster (Raft) port: it speaks mutual TLS only.
    pub fn raft_url(&self, i: usize) -> String {
        format!("https://{}", self.nodes[i].raft_addr)
    }

    pub fn data_dir(&self, i: usize) -> &Path {
        self.nodes[i].data_dir.path()
    }

    pub fn log_path(&self, i: usize) -> &Path {
        self.nodes[i].process.log_path()
    }

    /// Everything node `i` has logged, over all its starts.
    pub fn log(&self, i: usize) -> String {
        self.nodes[i].process.log()
    }

    // ---- faults ----

    pub fn is_running(&self, i: usize) -> bool {
        self.nodes[i].process.is_running()
    }

    /// Running and not paused.
    pub fn is_live(&self, i: usize) -> bool {
        self.nodes[i].process.is_live()
    }

    /// Indexes of the nodes that are running and not paused.
    pub fn live_nodes(&self) -> Vec<usize> {
        (0..self.len()).filter(|&i| self.is_live(i)).collect()
    }

    /// kill -9 node `i` and reap it.
    pub fn kill(&mut self, i: usize) {
        self.nodes[i].process.kill();
    }

    /// SIGTERM node `i` and wait (with a deadline) until it exits; answers its exit status.
    pub async fn stop(&mut self, i: usize) -> ExitStatus {
        self.nodes[i].process.stop(STOP_DEADLINE).await
    }

    /// Starts node `i` again with the arguments it had before (same ports, same data folder)
    /// and waits until it listens.
    pub async fn start_node(&mut self, i: usize) {
        self.nodes[i].process.spawn();
        self.start_node_listening(i).await;
    }

    /// Waits until node `i`, just spawned, listens; panics with its log when it does not.
    async fn start_node_listening(&mut self, i: usize) {
        match self.wait_listening(i).await {
            Ok(()) => {}
            Err(StartFailure::PortTaken) => panic!(
                "{} cannot bind its ports again after a restart; its log:\n{}",
                self.nodes[i].process.label(),
                self.nodes[i].process.log_tail(60)
            ),
            Err(StartFailure::Other(message)) => panic!("{message}"),
        }
    }

    /// Starts one more server, node `len()` with id `len() + 1`, on free ports of its own: its
    /// node list is its own line and it is given `--join` with the API address of node
    /// `join_via`, so it asks the cluster to add it. Answers its index once it listens.
    pub async fn start_joining(
        &mut self,
        binary: &Path,
        join_via: usize,
        extra_args: &[&str],
    ) -> usize {
        let i = self.len();
        let id = self.node_id(i);
        let ports = free_ports(2).expect("free ports on 127.0.0.1");
        let (raft_addr, api_addr) = (
            format!("127.0.0.1:{}", ports[0]),
            format!("127.0.0.1:{}", ports[1]),
        );
        let data_dir = tempfile::Builder::new()
            .prefix(&format!("tandem-test-node{id}-"))
            .tempdir()
            .expect("create a temporary data folder");
        let logs = self.logs.as_ref().expect("the logs folder").path();
        let join = ["--join", self.api_addr(join_via)];
        let args = server_args(
            id,
            &format!("{id} {raft_addr} {api_addr}"),
            data_dir.path(),
            CLUSTER_SECRET,
            &[&join[..], extra_args].concat(),
        );
        let mut process = ServerProcess::new(
            format!("node {id} (index {i}, api {api_addr}, joining)"),
            binary,
            args,
            logs.join(format!("node-{id}.log")),
            logs.to_path_buf(),
        );
        process.spawn();
        self.nodes.push(ClusterNode {
            process,
            raft_addr,
            api_addr,
            data_dir,
        });
        self.start_node_listening(i).await;
        i
    }

    /// Runs `tandem cluster add` for server `id` at these addresses, against this cluster.
    pub async fn cli_add(
        &self,
        binary: &Path,
        id: u64,
        raft_addr: &str,
        api_addr: &str,
    ) -> std::process::Output {
        let id = id.to_string();
        let args = [
            "cluster",
            "add",
            "--node-id",
            &id,
            "--raft-addr",
            raft_addr,
            "--api-addr",
            api_addr,
        ];
        self.cli(binary, &args).await
    }

    /// Runs `tandem <args> --addr <every node's API>` with the API secret, to its end.
    pub async fn cli(&self, binary: &Path, args: &[&str]) -> std::process::Output {
        let addrs: Vec<&str> = (0..self.len()).map(|i| self.api_addr(i)).collect();
        let mut command = tandem_command(binary);
        command
            .env("TANDEM_SECRET_API", API_SECRET)
            .args(args)
            .arg("--addr")
            .arg(addrs.join(","));
        run_to_exit(command, CLI_DEADLINE).await
    }

    /// Runs `tandem snapshot backup --out <out>` against node `i`, to its end.
    pub async fn download_backup(
        &self,
        binary: &Path,
        i: usize,
        out: &Path,
    ) -> std::process::Output {
        let mut download = tandem_command(binary);
        download
            .args(["snapshot", "backup", "--out"])
            .arg(out)
            .args(["--addr", self.api_addr(i)])
            .env("TANDEM_SECRET_API", API_SECRET);
        run_to_exit(download, CLI_DEADLINE).await
    }

    /// Stops node `i`, empties its data folder and seeds it from `backup` with
    /// `tandem snapshot restore`; answers how the restore ended.
    pub async fn restore(
        &mut self,
        binary: &Path,
        i: usize,
        backup: &Path,
    ) -> std::process::Output {
        self.kill(i);
        self.wipe(i);
        let mut restore = tandem_command(binary);
        restore
            .args(["snapshot", "restore", "--backup"])
            .arg(backup)
            .arg("--data-dir")
            .arg(self.data_dir(i));
        run_to_exit(restore, CLI_DEADLINE).await
    }

    /// Waits until the active node has purged log entries behind a snapshot, so that a node that
    /// lost its log can only be brought up to date with the snapshot.
    pub async fn wait_for_purged_log(&self) {
        wait_for(
            DEADLINE,
            "the leader to purge log entries behind a snapshot",
            async || {
                let leader = self.current_leader().await?;
                let reply = self.get(leader, "/v1/cluster").await;
                let purged = reply.status.is_success()
                    && reply.json()["purged_index"].as_u64().is_some_and(|i| i > 0);
                purged.then_some(())
            },
        )
        .await
    }

    /// The cluster's membership as node `i` reports it at `GET /v1/cluster`: its voters and
    /// learners, or `None` when it does not answer 200.
    pub async fn membership(&self, i: usize) -> Option<(BTreeSet<u64>, BTreeSet<u64>)> {
        let reply = self
            .try_send(i, Method::GET, "/v1/cluster", None, POLL_REQUEST_TIMEOUT)
            .await
            .ok()?;
        if !reply.status.is_success() {
            return None;
        }
        let report = reply.json();
        let ids = |field: &str| -> Option<BTreeSet<u64>> {
            report[field]
                .as_array()
                .map(|ids| ids.iter().filter_map(Value::as_u64).collect())
        };
        Some((ids("voters")?, ids("learners")?))
    }

    /// Takes node `i` out of the cluster's membership, as `tandem cluster remove` does: asks
    /// the other nodes in turn until one answers that it is done (an active node hands its
    /// role over first and the request is sent again), then waits until they all agree.
    pub async fn remove_member(&self, i: usize) {
        let path = format!("/v1/cluster/members/{}", self.node_id(i));
        self.change_member(i, Method::DELETE, &path, None).await;
        let id = self.node_id(i);
        crate::wait::wait_until(
            DEADLINE,
            "the other nodes to leave the removed one out",
            async || {
                for other in (0..self.len()).filter(|&o| o != i && self.is_live(o)) {
                    match self.membership(other).await {
                        Some((voters, learners))
                            if !voters.contains(&id) && !learners.contains(&id) => {}
                        _ => return false,
                    }
                }
                true
            },
        )
        .await;
    }

    /// Adds node `i` (running, and not a member) back to the cluster at its addresses, as
    /// `tandem cluster add` does, and waits until it votes.
    pub async fn add_member(&self, i: usize) {
        let path = format!("/v1/cluster/members/{}", self.node_id(i));
        let body =
            serde_json::json!({"raft_addr": self.raft_addr(i), "api_addr": self.api_addr(i)});
        self.change_member(i, Method::PUT, &path, Some(body)).await;
        let id = self.node_id(i);
        crate::wait::wait_until(DEADLINE, "the added node to vote", async || {
            self.membership(i)
                .await
                .is_some_and(|(voters, _)| voters.contains(&id))
        })
        .await;
    }

    /// Sends a membership change about node `i` to the other live nodes in turn until one
    /// answers 200; a refusal other than "not now" (a 5xx) fails at once.
    async fn change_member(&self, i: usize, method: Method, path: &str, body: Option<Value>) {
        let mut last = String::new();
        let done = wait_for(MEMBERSHIP_DEADLINE, path, async || {
            for other in (0..self.len()).filter(|&o| o != i && self.is_live(o)) {
                let body = body
                    .as_ref()
                    .map(|b| ("application/json", b.to_string().into_bytes()));
                match self
                    .try_send(other, method.clone(), path, body, MEMBERSHIP_DEADLINE)
                    .await
                {
                    Ok(reply) if reply.status.is_success() => return Some(Ok(())),
                    Ok(reply) if reply.status.is_server_error() => {
                        last =
                            format!("{}: {}", reply.status, String::from_utf8_lossy(&reply.body));
                    }
                    Ok(reply) => {
                        return Some(Err(format!(
                            "{method} {path} refused: {}: {}",
                            reply.status,
                            String::from_utf8_lossy(&reply.body)
                        )))
                    }
                    Err(e) => last = e.to_string(),
                }
            }
            None
        })
        .await;
        if let Err(refused) = done {
            panic!("{refused} (before that: {last})");
        }
    }

    /// SIGSTOP node `i`: alive but silent until [`Cluster::resume`].
    pub fn pause(&mut self, i: usize) {
        self.nodes[i].process.pause();
    }

    /// SIGCONT node `i` after a pause.
    pub fn resume(&mut self, i: usize) {
        self.nodes[i].process.resume();
    }

    /// Deletes everything in node `i`'s data folder; the node must not be running.
    pub fn wipe(&mut self, i: usize) {
        assert!(
            !self.is_running(i),
            "wipe node {i} only while it is stopped"
        );
        let dir = self.data_dir(i).to_path_buf();
        for entry in std::fs::read_dir(&dir).expect("read the data folder") {
            let path: PathBuf = entry.expect("read a data folder entry").path();
            let removed = if path.is_dir() {
                std::fs::remove_dir_all(&path)
            } else {
                std::fs::remove_file(&path)
            };
            removed.unwrap_or_else(|e| panic!("cannot remove {}: {e}", path.display()));
        }
    }

    /// Panics at once if a node has reported a Rust panic: waiting any longer for it to serve
    /// would only spend the deadline.
    pub fn assert_no_panics(&self) {
        for node in &self.nodes {
            let panics = node.process.panics();
            assert!(
                panics.is_empty(),
                "{} panicked: {panics:?}",
                node.process.label()
            );
        }
    }

    // ---- leadership ----

    /// Asks every live node whom it follows; answers the index of the node that a majority of
    /// the whole cluster names and that itself says it leads.
    pub async fn current_leader(&self) -> Option<usize> {
        let majority = self.len() / 2 + 1;
        let mut votes: BTreeMap<u64, usize> = BTreeMap::new();
        let mut claims: BTreeSet<u64> = BTreeSet::new();
        for i in self.live_nodes() {
            let Ok(reply) = self
                .try_send(i, Method::GET, "/v1/sys/leader", None, POLL_REQUEST_TIMEOUT)
                .await
            else {
                continue;
            };
            if !reply.status.is_success() {
                continue;
            }
            let answer: Value = match serde_json::from_slice(&reply.body) {
                Ok(v) => v,
                Err(_) => continue,
            };
            let Some(leader) = answer["leader_id"].as_u64() else {
                continue;
            };
            *votes.entry(leader).or_default() += 1;
            if answer["is_self"].as_bool() == Some(true) {
                claims.insert(self.node_id(i));
            }
        }
        votes
            .into_iter()
            .find(|(id, count)| *count >= majority && claims.contains(id))
            .map(|(id, _)| self.index_of(id))
    }

    /// Polls until a majority agrees on a live leader; answers its index.
    pub async fn wait_for_leader(&self, deadline: Duration) -> usize {
        wait_for(
            deadline,
            "a majority of nodes to agree on a live leader",
            async || {
                self.assert_no_panics();
                self.current_leader().await
            },
        )
        .await
    }

    /// The leader's index, waiting up to [`DEADLINE`] for one.
    pub async fn leader(&self) -> usize {
        self.wait_for_leader(DEADLINE).await
    }

    /// The live nodes other than the leader (waiting up to [`DEADLINE`] for one).
    pub async fn followers(&self) -> Vec<usize> {
        let leader = self.leader().await;
        self.live_nodes()
            .into_iter()
            .filter(|&i| i != leader)
            .collect()
    }

    // ---- HTTP ----

    /// A reqwest client that does not follow redirects, for requests the helpers do not cover.
    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// A client over every node's API with the API secret: it follows 307s itself and retries
    /// 503s and unreachable nodes for up to [`DEADLINE`].
    pub fn client(&self) -> tandem_client::Client {
        self.client_for(&(0..self.len()).collect::<Vec<_>>())
    }

    /// Like [`Cluster::client`] but only over the given nodes, in that order.
    pub fn client_for(&self, nodes: &[usize]) -> tandem_client::Client {
        let endpoints: Vec<String> = nodes.iter().map(|&i| self.api_addr(i).into()).collect();
        tandem_client::Client::new(&endpoints, Some(API_SECRET.into()))
            .expect("the client builds")
            .with_deadline(DEADLINE)
    }

    /// One request to node `i` with the API secret; a transport error is an `Err`.
    pub async fn try_send(
        &self,
        i: usize,
        method: Method,
        path: &str,
        body: Option<(&str, Vec<u8>)>,
        timeout: Duration,
    ) -> Result<HttpReply, reqwest::Error> {
        http::send(
            &self.http,
            method,
            format!("{}{path}", self.api_url(i)),
            Some(Auth::Bearer(API_SECRET)),
            body,
            Some(timeout),
        )
        .await
    }

    /// One request to node `i` with the API secret; panics if no HTTP answer comes back.
    pub async fn send(
        &self,
        i: usize,
        method: Method,
        path: &str,
        body: Option<(&str, Vec<u8>)>,
    ) -> HttpReply {
        self.send_as(i, method, path, body, Auth::Bearer(API_SECRET))
            .await
    }

    /// One request to node `i` as rqlite clients send it: the API secret as the password of
    /// HTTP basic auth; panics if no HTTP answer comes back.
    pub async fn rqlite(
        &self,
        i: usize,
        method: Method,
        path: &str,
        body: Option<(&str, Vec<u8>)>,
    ) -> HttpReply {
        let auth = Auth::Basic {
            user: "app",
            secret: API_SECRET,
        };
        self.send_as(i, method, path, body, auth).await
    }

    /// One request to node `i` presenting `bearer` (a scoped credential) instead of the API
    /// secret; panics if no HTTP answer comes back.
    pub async fn send_with(
        &self,
        i: usize,
        method: Method,
        path: &str,
        body: Option<(&str, Vec<u8>)>,
        bearer: &str,
    ) -> HttpReply {
        self.send_as(i, method, path, body, Auth::Bearer(bearer))
            .await
    }

    async fn send_as(
        &self,
        i: usize,
        method: Method,
        path: &str,
        body: Option<(&str, Vec<u8>)>,
        auth: Auth<'_>,
    ) -> HttpReply {
        let url = format!("{}{path}", self.api_url(i));
        http::send(&self.http, method.clone(), url, Some(auth), body, None)
            .await
            .unwrap_or_else(|e| panic!("{method} {path} on node index {i}: no answer: {e}"))
    }

    pub async fn get(&self, i: usize, path: &str) -> HttpReply {
        self.send(i, Method::GET, path, None).await
    }

    pub async fn put(&self, i: usize, path: &str, body: impl Into<Vec<u8>>) -> HttpReply {
        self.send(
            i,
            Method::PUT,
            path,
            Some(("application/octet-stream", body.into())),
        )
        .await
    }

    pub async fn post_json(&self, i: usize, path: &str, body: &Value) -> HttpReply {
        self.send(
            i,
            Method::POST,
            path,
            Some(("application/json", body.to_string().into_bytes())),
        )
        .await
    }

    pub async fn delete(&self, i: usize, path: &str) -> HttpReply {
        self.send(i, Method::DELETE, path, None).await
    }

    /// POST `body` to `path` on node `i`'s cluster port as a member would (mutual TLS with this
    /// cluster's certificate), with `secret` (if any) in the cluster secret header; panics if no
    /// HTTP answer comes back.
    pub async fn post_cluster_port(
        &self,
        i: usize,
        path: &str,
        secret: Option<&str>,
        body: Vec<u8>,
    ) -> HttpReply {
        let url = format!("{}{path}", self.raft_url(i));
        let mut request = self.cluster_http.post(&url).body(body);
        if let Some(secret) = secret {
            request = request.header(CLUSTER_SECRET_HEADER, secret);
        }
        let response = request
            .send()
            .await
            .unwrap_or_else(|e| panic!("POST {url}: no answer: {e}"));
        HttpReply::read(url.clone(), response)
            .await
            .unwrap_or_else(|e| panic!("POST {url}: body not read: {e}"))
    }

    /// The keys node `i` holds under `prefix` (a linearizable listing of up to 10 000), or `None`
    /// when it does not answer 200.
    pub async fn keys_under(
        &self,
        i: usize,
        prefix: &str,
    ) -> Option<std::collections::BTreeSet<String>> {
        let reply = self
            .get(i, &format!("/v1/kv?prefix={prefix}&limit=10000"))
            .await;
        if !reply.status.is_success() {
            return None;
        }
        Some(
            reply.json()["keys"]
                .as_array()?
                .iter()
                .filter_map(|k| k.as_str().map(str::to_string))
                .collect(),
        )
    }

    /// GET on node `i`, repeated while it answers 503 (no leader yet, catching up) or not at
    /// all; answers the first other reply. Panics at [`DEADLINE`].
    pub async fn get_when_serving(&self, i: usize, path: &str) -> HttpReply {
        wait_for(
            DEADLINE,
            &format!("node index {i} to serve GET {path} (not 503)"),
            async || {
                self.assert_no_panics();
                match self
                    .try_send(i, Method::GET, path, None, POLL_REQUEST_TIMEOUT * 5)
                    .await
                {
                    Ok(reply) if reply.status.as_u16() != 503 => Some(reply),
                    _ => None,
                }
            },
        )
        .await
    }
}

/// The arguments of `tandem server` for node `id` with this node list, data folder and cluster
/// secret (and the API secret every test cluster uses), then `extra_args`.
fn server_args(
    id: u64,
    node_list: &str,
    data_dir: &Path,
    secret: &str,
    extra_args: &[&str],
) -> Vec<String> {
    let mut args: Vec<String> = vec![
        "server".into(),
        "--node-id".into(),
        id.to_string(),
        "--nodes".into(),
        node_list.into(),
        "--data-dir".into(),
        data_dir.display().to_string(),
        "--secret-raft".into(),
        secret.into(),
        "--secret-api".into(),
        API_SECRET.into(),
    ];
    args.extend(extra_args.iter().map(|a| a.to_string()));
    args
}

impl Drop for Cluster {
    fn drop(&mut self) {
        // Kill every process before any log is printed, so the logs are complete.
        for node in &mut self.nodes {
            node.process.kill();
        }
        // A server that panicked fails the test even if every assertion passed.
        let panicked: Vec<&str> = self
            .nodes
            .iter()
            .filter(|n| n.process.has_panicked())
            .map(|n| n.process.label())
            .collect();
        let failing = std::thread::panicking() || !panicked.is_empty();
        let keep = std::env::var_os("TANDEM_TEST_KEEP_LOGS").is_some();
        if let Some(logs) = self.logs.take() {
            if keep || failing {
                let path = logs.keep();
                eprintln!("tandem-testkit: node logs kept in {}", path.display());
            }
        }
        if !panicked.is_empty() && !std::thread::panicking() {
            // The nodes' drops (unwinding after this) print each log's tail.
            panic!("server process(es) panicked during the test: {panicked:?}");
        }
    }
}
