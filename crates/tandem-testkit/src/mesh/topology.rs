//! The mesh end to end in network namespaces: a server, an ingress (SOCKS5 with a user name and
//! password, and a port-forward), two transits, two exits, and a target HTTP server behind the
//! exits that only the exits can reach, each in a namespace of its own on one bridge. The test
//! process owns the target's listener, so it counts exactly which connections reach it and
//! from which exit. Tests drive it with real curl and read the agents' `/healthz`. Each
//! transit peers with both exits:
//!
//! ```text
//!              ┌ t-1 ┐   ┌ e-1 ┐
//!  curl → in-1 ┤     ├ × ┤     ├ → target (only e-1 and e-2 may reach it)
//!              └ t-2 ┘   └ e-2 ┘
//! ```

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::process::ExitStatus;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

use crate::agents::{join_token, AgentProcess};
use crate::cluster::Cluster;
use crate::netns::ClusterNetwork;
use crate::wait::{wait_for, wait_until, DEADLINE};

pub const INGRESS: &str = "in-1";
pub const TRANSITS: [&str; 2] = ["t-1", "t-2"];
pub const EXITS: [&str; 2] = ["e-1", "e-2"];
/// The SOCKS5 credentials the ingress asks for.
pub const SOCKS_USER: &str = "alice";
pub const SOCKS_PASSWORD: &str = "s3cret";
/// The mesh's dead-peer time (the QUIC idle timeout): a silent peer is dead after this long.
pub const DEAD_PEER: Duration = Duration::from_secs(3);

const POOL: &str = "mesh";
const MESH_PORT: u16 = 4433;
const SOCKS_PORT: u16 = 1080;
const FORWARD_PORT: u16 = 5432;
const TARGET_PORT: u16 = 80;
/// Namespaces of the topology's network: the server (0), the agents in the order of `AGENTS`,
/// the target, a server outside the mesh, then the spares.
const AGENTS: [&str; 5] = [INGRESS, TRANSITS[0], TRANSITS[1], EXITS[0], EXITS[1]];
const TARGET_NS: usize = 1 + AGENTS.len();
const OUTSIDE_NS: usize = TARGET_NS + 1;
const FIRST_SPARE_NS: usize = OUTSIDE_NS + 1;
/// A paced body, far longer than any test waits for.
const ENDLESS: usize = 1 << 30;
const PACED_CHUNK: usize = 4096;
const PACED_EVERY: Duration = Duration::from_millis(20);

/// An endless stream of bytes drawn from a seed (splitmix64), made a chunk at a time.
struct PatternStream {
    state: u64,
}

impl PatternStream {
    fn new(seed: u64) -> Self {
        PatternStream { state: seed }
    }

    /// The next `words` × 8 bytes.
    fn next_words(&mut self, words: usize) -> Vec<u8> {
        let mut bytes = Vec::with_capacity(words * 8);
        for _ in 0..words {
            self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = self.state;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            bytes.extend_from_slice(&(z ^ (z >> 31)).to_le_bytes());
        }
        bytes
    }
}

/// `len` bytes drawn from `seed`: a body whose every byte a client can check.
pub fn pattern(seed: u64, len: usize) -> Vec<u8> {
    let mut bytes = PatternStream::new(seed).next_words(len.div_ceil(8));
    bytes.truncate(len);
    bytes
}

/// The path under which the target serves `pattern(seed, len)` at once.
pub fn bytes_path(len: usize, seed: u64) -> String {
    format!("/bytes/{len}/{seed}")
}

/// The path under which the target serves `pattern(seed, len)` slowly, 4 KiB every 20 ms
/// (200 KiB/s), so that a fault can catch the connection in the middle.
pub fn paced_path(len: usize, seed: u64) -> String {
    format!("/paced/{len}/{seed}")
}

/// An HTTP server in a namespace, owned by the test process: `GET /bytes/<len>/<seed>` answers
/// [`pattern`] at once, `GET /paced/<len>/<seed>` the same 4 KiB every 20 ms. It records the
/// source address of every connection it accepts.
pub struct TargetServer {
    addr: SocketAddr,
    sources: Arc<Mutex<Vec<IpAddr>>>,
    task: JoinHandle<()>,
}

impl TargetServer {
    /// Listens on port 80 of namespace `index`'s address. Call within a tokio runtime.
    pub fn start(network: &ClusterNetwork, index: usize) -> TargetServer {
        let listener = network
            .bind_tcp(index, TARGET_PORT)
            .expect("bind the target in its namespace");
        let listener = TcpListener::from_std(listener).expect("the target listener in tokio");
        let addr = listener.local_addr().expect("the target's address");
        let sources = Arc::new(Mutex::new(Vec::new()));
        let recorded = sources.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, from)) = listener.accept().await {
                lock(&recorded).push(from.ip());
                tokio::spawn(serve(stream));
            }
        });
        TargetServer {
            addr,
            sources,
            task,
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://<addr><path>`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// How many connections it has accepted.
    pub fn accepted(&self) -> usize {
        lock(&self.sources).len()
    }

    /// The source address of every connection it accepted, in order.
    pub fn sources(&self) -> Vec<IpAddr> {
        lock(&self.sources).clone()
    }
}

impl Drop for TargetServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

/// Reads the request head and answers it; errors end the connection.
async fn serve(mut stream: TcpStream) {
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 8192 {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    let head = String::from_utf8_lossy(&head);
    let path = head.split_whitespace().nth(1).unwrap_or_default();
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let numbers = |len: &str, seed: &str| Some((len.parse::<usize>().ok()?, seed.parse().ok()?));
    let _ = match parts.as_slice() {
        ["bytes", len, seed] => match numbers(len, seed) {
            Some((len, seed)) => {
                let mut answer = ok_head(len);
                answer.extend_from_slice(&pattern(seed, len));
                stream.write_all(&answer).await
            }
            None => not_found(&mut stream).await,
        },
        ["paced", len, seed] => match numbers(len, seed) {
            Some((len, seed)) => serve_paced(&mut stream, len, seed).await,
            None => not_found(&mut stream).await,
        },
        _ => not_found(&mut stream).await,
    };
    let _ = stream.shutdown().await;
}

fn ok_head(len: usize) -> Vec<u8> {
    format!("HTTP/1.1 200 OK\r\ncontent-length: {len}\r\nconnection: close\r\n\r\n").into_bytes()
}

async fn not_found(stream: &mut TcpStream) -> std::io::Result<()> {
    stream
        .write_all(b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
        .await
}

async fn serve_paced(stream: &mut TcpStream, len: usize, seed: u64) -> std::io::Result<()> {
    stream.write_all(&ok_head(len)).await?;
    let mut bytes = PatternStream::new(seed);
    let mut left = len;
    while left > 0 {
        let mut chunk = bytes.next_words(PACED_CHUNK / 8);
        chunk.truncate(left);
        stream.write_all(&chunk).await?;
        left -= chunk.len();
        tokio::time::sleep(PACED_EVERY).await;
    }
    Ok(())
}

// ---- what an agent's /healthz shows of the mesh ----

/// The agent's `/healthz`, or `Null` when it does not answer.
pub async fn healthz(agent: &AgentProcess) -> Value {
    let url = format!("{}/healthz", agent.health_url());
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()
        .expect("an HTTP client");
    match client.get(&url).send().await {
        Ok(reply) => reply.json().await.unwrap_or_default(),
        Err(_) => Value::Null,
    }
}

/// `name` is a connected peer.
pub fn peer_up(healthz: &Value, name: &str) -> bool {
    healthz["mesh"]["peers"]
        .as_array()
        .is_some_and(|p| p.iter().any(|p| p["id"] == name && p["state"] == "up"))
}

/// Some stored path leads to, through or from `name`.
pub fn path_through(healthz: &Value, name: &str) -> bool {
    routes(healthz).iter().any(|r| {
        r["next_hop"] == name
            || r["origin"] == name
            || r["path"]
                .as_array()
                .is_some_and(|path| path.iter().any(|hop| hop == name))
    })
}

fn routes(healthz: &Value) -> Vec<Value> {
    healthz["mesh"]["routes"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// `(origin, next hop)` of every selected path.
pub fn selected_paths(healthz: &Value) -> Vec<(String, String)> {
    routes(healthz)
        .iter()
        .filter(|r| r["state"] == "selected")
        .map(|r| {
            let name = |key: &str| r[key].as_str().unwrap_or_default().to_string();
            (name("origin"), name("next_hop"))
        })
        .collect()
}

/// The next hop of every selected path.
pub fn selected_next_hops(healthz: &Value) -> Vec<String> {
    selected_paths(healthz)
        .into_iter()
        .map(|(_, hop)| hop)
        .collect()
}

/// A stored path from `origin` through `next_hop`, of any length (the table keeps one path per
/// origin and next hop, so this is the path the hold-down applies to).
pub fn has_path(healthz: &Value, origin: &str, next_hop: &str) -> bool {
    routes(healthz)
        .iter()
        .any(|r| r["origin"] == origin && r["next_hop"] == next_hop)
}

/// A stored two-hop path from exit `origin` through transit `next_hop`, not a longer one that
/// also starts at `origin` and ends at `next_hop` (relayed by the other exit, say).
pub fn has_direct_path(healthz: &Value, origin: &str, next_hop: &str) -> bool {
    routes(healthz)
        .iter()
        .any(|r| r["path"] == json!([origin, next_hop]))
}

/// How often the agent's chosen paths changed since it started.
pub fn route_changes(healthz: &Value) -> Option<u64> {
    healthz["mesh"]["route_changes"].as_u64()
}

// ---- curl ----

/// What curl brought back: its output, or its exit code (28: timed out; 97: SOCKS5 refused).
pub async fn curl(args: &[&str]) -> Result<Vec<u8>, i32> {
    let out = tokio::process::Command::new("curl")
        .arg("--silent")
        .args(args)
        .kill_on_drop(true)
        .output()
        .await
        .expect("curl runs (apt-get install curl)");
    if out.status.success() {
        Ok(out.stdout)
    } else {
        Err(out.status.code().unwrap_or(-1))
    }
}

/// A long download that curl runs in the background; the bytes it received are counted.
pub struct Download {
    child: tokio::process::Child,
    received: Arc<AtomicUsize>,
}

impl Download {
    pub fn received(&self) -> usize {
        self.received.load(Ordering::SeqCst)
    }

    /// curl's exit status once it ended.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().expect("poll curl")
    }
}

// ---- the topology ----

pub struct MeshOptions {
    /// `--mesh-hold-down` of every agent.
    pub hold_down: Duration,
    /// More empty namespaces on the bridge (see [`MeshTopology::spare`]).
    pub spares: usize,
}

impl MeshOptions {
    pub fn with_hold_down(hold_down: Duration) -> Self {
        MeshOptions {
            hold_down,
            ..MeshOptions::default()
        }
    }
}

impl Default for MeshOptions {
    fn default() -> Self {
        MeshOptions {
            hold_down: Duration::from_secs(3),
            spares: 0,
        }
    }
}

pub struct MeshTopology {
    // Dropped first: the agents go before the namespaces they run in.
    agents: Vec<AgentProcess>,
    pub target: TargetServer,
    /// Reachable from every namespace, but no exit advertises it.
    pub outside: TargetServer,
    cluster: Cluster,
}

impl MeshTopology {
    /// Starts the server, the target, the outside server and the five agents, and waits until
    /// the ingress stores a path from each exit through each transit and carries traffic.
    pub async fn start(binary: &Path, options: MeshOptions) -> MeshTopology {
        let spares = FIRST_SPARE_NS - 1 + options.spares;
        let cluster = Cluster::start_in_namespaces_with_spares(binary, 1, spares, &[]).await;
        cluster.leader().await;
        let token = join_token(&cluster, POOL, json!({})).await;
        let network = cluster.network();
        let target = TargetServer::start(network, TARGET_NS);
        let exits: Vec<usize> = EXITS.iter().map(|e| agent_ns(e)).collect();
        network.accept_only_from(TARGET_NS, &exits);
        let outside = TargetServer::start(network, OUTSIDE_NS);

        let hold_down = format!("{}ms", options.hold_down.as_millis());
        let mesh_addr = |name: &str| format!("{}:{MESH_PORT}", network.node_ip(agent_ns(name)));
        let ingress_ip = network.node_ip(agent_ns(INGRESS));
        let target_route = format!("{}/32", target.addr().ip());
        let agents = AGENTS
            .iter()
            .map(|&name| {
                let mut args = vec![
                    "--mesh-listen".to_string(),
                    mesh_addr(name),
                    "--mesh-hold-down".into(),
                    hold_down.clone(),
                ];
                let peers: &[&str] = if name == INGRESS {
                    &TRANSITS
                } else if TRANSITS.contains(&name) {
                    &EXITS
                } else {
                    args.extend(["--exit-route".into(), target_route.clone()]);
                    &[]
                };
                for peer in peers {
                    args.extend(["--mesh-peer".into(), mesh_addr(peer)]);
                }
                if name == INGRESS {
                    args.extend([
                        "--socks5-listen".into(),
                        format!("{ingress_ip}:{SOCKS_PORT}"),
                        "--socks5-username".into(),
                        SOCKS_USER.into(),
                        "--socks5-password".into(),
                        SOCKS_PASSWORD.into(),
                        "--forward".into(),
                        format!("{ingress_ip}:{FORWARD_PORT}={}", target.addr()),
                    ]);
                }
                let args: Vec<&str> = args.iter().map(String::as_str).collect();
                AgentProcess::start_in_namespace(
                    binary,
                    &cluster,
                    (network, agent_ns(name)),
                    name,
                    POOL,
                    Some(&token),
                    &args,
                )
            })
            .collect();
        let topology = MeshTopology {
            agents,
            target,
            outside,
            cluster,
        };
        topology.wait_for_every_path().await;
        topology.wait_for_traffic("a fetch through the mesh").await;
        topology
    }

    pub fn cluster(&self) -> &Cluster {
        &self.cluster
    }

    pub fn network(&self) -> &ClusterNetwork {
        self.cluster.network()
    }

    /// The namespace index of spare `k` (see [`MeshOptions::spares`]).
    pub fn spare(&self, k: usize) -> usize {
        assert!(FIRST_SPARE_NS + k < self.network().len(), "no spare {k}");
        FIRST_SPARE_NS + k
    }

    /// The namespace index of agent `name`.
    pub fn namespace_of(&self, name: &str) -> usize {
        agent_ns(name)
    }

    /// Agent `name`'s address.
    pub fn ip(&self, name: &str) -> IpAddr {
        self.network()
            .node_ip(agent_ns(name))
            .parse()
            .expect("a namespace address")
    }

    /// Agent `name`'s mesh address, `ip:port`.
    pub fn mesh_addr(&self, name: &str) -> String {
        format!("{}:{MESH_PORT}", self.ip(name))
    }

    pub fn agent(&self, name: &str) -> &AgentProcess {
        &self.agents[agent_ns(name) - 1]
    }

    /// kill -9 agent `name`.
    pub fn kill(&mut self, name: &str) {
        self.agents[agent_ns(name) - 1].kill();
    }

    /// Starts agent `name` again after a kill, as it was.
    pub fn restart(&mut self, name: &str) {
        self.agents[agent_ns(name) - 1].restart();
    }

    pub fn is_running(&self, name: &str) -> bool {
        self.agent(name).is_running()
    }

    /// The ingress's `/healthz`.
    pub async fn ingress_healthz(&self) -> Value {
        healthz(self.agent(INGRESS)).await
    }

    /// The ingress's SOCKS5 address, `ip:port`.
    pub fn socks_addr(&self) -> String {
        format!("{}:{SOCKS_PORT}", self.ip(INGRESS))
    }

    /// The port-forward's address on the ingress, `ip:port`.
    pub fn forward_addr(&self) -> String {
        format!("{}:{FORWARD_PORT}", self.ip(INGRESS))
    }

    /// `curl --socks5-hostname` through the ingress (with the credentials) to `url`.
    pub async fn curl_socks(&self, url: &str, max_time: Duration) -> Result<Vec<u8>, i32> {
        let max_time = format!("{:.1}", max_time.as_secs_f64());
        curl(&[
            "--max-time",
            &max_time,
            "--socks5-hostname",
            &self.socks_addr(),
            "--proxy-user",
            &format!("{SOCKS_USER}:{SOCKS_PASSWORD}"),
            url,
        ])
        .await
    }

    /// `curl` of `path` on the target through the ingress's port-forward.
    pub async fn curl_forward(&self, path: &str, max_time: Duration) -> Result<Vec<u8>, i32> {
        let max_time = format!("{:.1}", max_time.as_secs_f64());
        let url = format!("http://{}{path}", self.forward_addr());
        curl(&["--max-time", &max_time, &url]).await
    }

    /// Fetches `len` pattern bytes from the target through SOCKS5; true when they all came,
    /// right.
    pub async fn fetch_checked(&self, len: usize, seed: u64, max_time: Duration) -> bool {
        let url = self.target.url(&bytes_path(len, seed));
        self.curl_socks(&url, max_time).await == Ok(pattern(seed, len))
    }

    /// Starts a paced download through SOCKS5 with curl, far too long to finish.
    pub fn start_download(&self) -> Download {
        let mut child = tokio::process::Command::new("curl")
            .args([
                "--silent",
                "--socks5-hostname",
                &self.socks_addr(),
                "--proxy-user",
                &format!("{SOCKS_USER}:{SOCKS_PASSWORD}"),
                &self.target.url(&paced_path(ENDLESS, 0)),
            ])
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("curl runs");
        let mut stdout = child.stdout.take().expect("curl's stdout is piped");
        let received = Arc::new(AtomicUsize::new(0));
        let counted = received.clone();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 64 * 1024];
            while let Ok(n) = stdout.read(&mut buf).await {
                if n == 0 {
                    break;
                }
                counted.fetch_add(n, Ordering::SeqCst);
            }
        });
        Download { child, received }
    }

    /// Waits until the ingress stores a two-hop path from each exit through each transit;
    /// answers its `/healthz` then.
    pub async fn wait_for_every_path(&self) -> Value {
        wait_for(
            DEADLINE,
            "the ingress to store a two-hop path from each exit through each transit",
            async || {
                let seen = self.ingress_healthz().await;
                EXITS
                    .iter()
                    .all(|e| TRANSITS.iter().all(|t| has_direct_path(&seen, e, t)))
                    .then_some(seen)
            },
        )
        .await
    }

    /// Fetches through SOCKS5 (each allowed 2 s) until one brings the right bytes back;
    /// panics naming `what` after [`DEADLINE`]. Answers how many fetches it took.
    pub async fn wait_for_traffic(&self, what: &str) -> u64 {
        let mut attempts = 0;
        wait_until(DEADLINE, what, async || {
            attempts += 1;
            self.fetch_checked(10_000, attempts, Duration::from_secs(2))
                .await
        })
        .await;
        attempts
    }

    /// Waits until the ingress's selected path is `(origin, next_hop)`; answers its `/healthz`.
    pub async fn wait_for_selected(&self, origin: &str, next_hop: &str) -> Value {
        let want = vec![(origin.to_string(), next_hop.to_string())];
        wait_for(
            DEADLINE,
            &format!("the ingress to select the path from {origin} through {next_hop}"),
            async || {
                let seen = self.ingress_healthz().await;
                (selected_paths(&seen) == want).then_some(seen)
            },
        )
        .await
    }
}

/// The namespace of agent `name`.
fn agent_ns(name: &str) -> usize {
    1 + AGENTS
        .iter()
        .position(|a| *a == name)
        .unwrap_or_else(|| panic!("no agent {name} in the mesh topology"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pattern_depends_on_its_seed_and_extends_itself() {
        assert_eq!(pattern(7, 100), pattern(7, 100));
        let mut stream = PatternStream::new(7);
        let mut chunks = stream.next_words(2);
        chunks.extend(stream.next_words(3));
        assert_eq!(
            chunks,
            pattern(7, 40),
            "made a chunk at a time, the same bytes"
        );
        assert_ne!(pattern(7, 100), pattern(8, 100));
        assert_eq!(pattern(7, 1000)[..100], pattern(7, 100)[..]);
        assert_eq!(pattern(7, 13).len(), 13);
    }
}
