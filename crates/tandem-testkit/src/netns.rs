//! A private network for one test cluster: every node in its own Linux network namespace, joined
//! to the test process through a bridge, so that faults can cut, one-way block or thin out the
//! traffic between two particular nodes while the test still reaches every node's API.
//!
//! On one loopback address a proxy cannot tell which node a connection comes from; with one
//! address per node an nftables rule inside a node's namespace can. Needs root, `ip` and `nft`.
//!
//! Names carry the owning test process's id, so namespaces and bridges that a crashed run left
//! behind are found and removed by the next run; each cluster claims a subnet by creating the
//! bridge that is named for it, which fails when another test holds it.

use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// Prefix of every namespace and bridge the harness creates.
const PREFIX: &str = "tdm";
/// Subnets `10.{SUBNET_BASE + k / 256}.{k % 256}.0/24` for k below this.
const SUBNETS: usize = 4096;
const SUBNET_BASE: usize = 160;
/// The nodes' own addresses start at `.10`; `.1` is the bridge, which the test process uses.
const FIRST_NODE_HOST: usize = 10;
/// The nftables table that holds one node's faults; deleting its rules heals the node.
const FAULT_TABLE: &str = "tandem_faults";
/// The nftables table that keeps a namespace reachable from a few others only; faults and
/// heals leave it alone.
const ONLY_FROM_TABLE: &str = "tandem_only_from";
/// The htb class that slow traffic is sent through; everything else goes through `1:1`, which
/// does not limit it. (The kernel here has no netem to add a fixed delay.)
const SLOW_CLASS: &str = "1:2";

/// Spreads the clusters of one test process over the subnets.
static CLUSTERS_STARTED: AtomicUsize = AtomicUsize::new(0);

pub struct ClusterNetwork {
    subnet: usize,
    bridge: String,
    namespaces: Vec<String>,
}

/// Runs a command to its end; panics with its output if it fails.
fn run(program: &str, args: &[&str], stdin: Option<&str>) {
    if let Err(message) = try_run(program, args, stdin) {
        panic!("{message}");
    }
}

fn try_run(program: &str, args: &[&str], stdin: Option<&str>) -> Result<String, String> {
    let described = format!("{program} {}", args.join(" "));
    let mut child = Command::new(program)
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run {described}: {e} (is it installed?)"))?;
    if let Some(input) = stdin {
        child
            .stdin
            .take()
            .expect("stdin is piped")
            .write_all(input.as_bytes())
            .map_err(|e| format!("{described}: cannot write its input: {e}"))?;
    }
    let output = child
        .wait_with_output()
        .map_err(|e| format!("{described}: {e}"))?;
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        Err(format!(
            "{described} failed ({}): {}{}",
            output.status,
            String::from_utf8_lossy(&output.stderr),
            stdin.map(|s| format!("\ninput:\n{s}")).unwrap_or_default()
        ))
    }
}

/// The folder whose files `ip netns exec` mounts over `/etc` for the namespace `name`.
fn etc_folder(name: &str) -> std::path::PathBuf {
    std::path::Path::new("/etc/netns").join(name)
}

fn process_alive(pid: u32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
}

/// Removes namespaces and bridges whose owning test process has died.
fn remove_stale() {
    let Ok(namespaces) = try_run("ip", &["netns", "list"], None) else {
        return;
    };
    for line in namespaces.lines() {
        let name = line.split_whitespace().next().unwrap_or_default();
        if let Some(pid) = owner_pid(name) {
            if !process_alive(pid) {
                // Servers that outlived their test would keep the namespace alive.
                let servers = try_run("ip", &["netns", "pids", name], None).unwrap_or_default();
                for server in servers.lines().filter_map(|p| p.trim().parse::<i32>().ok()) {
                    let _ = kill(Pid::from_raw(server), Signal::SIGKILL);
                }
                let _ = try_run("ip", &["netns", "del", name], None);
                let _ = std::fs::remove_dir_all(etc_folder(name));
            }
        }
    }
    let Ok(bridges) = try_run("ip", &["-o", "link", "show", "type", "bridge"], None) else {
        return;
    };
    for line in bridges.lines() {
        // "7: tdmb12: <...> ... alias tdm-pid-4242"
        let Some(name) = line.split(": ").nth(1) else {
            continue;
        };
        if !name.starts_with(&format!("{PREFIX}b")) {
            continue;
        }
        // A bridge without an owner is still being set up by its test.
        let owner = line
            .split_whitespace()
            .skip_while(|w| *w != "alias")
            .nth(1)
            .and_then(owner_pid);
        if owner.is_some_and(|pid| !process_alive(pid)) {
            let _ = try_run("ip", &["link", "del", name], None);
        }
    }
}

/// The test process id in a name `tdm-<pid>-...`.
fn owner_pid(name: &str) -> Option<u32> {
    name.strip_prefix(&format!("{PREFIX}-"))?
        .split('-')
        .next()?
        .parse()
        .ok()
}

impl ClusterNetwork {
    /// Creates a bridge with a subnet of its own and one namespace per node, each with its
    /// address on a veth into the bridge and an empty fault table.
    pub fn create(nodes: usize) -> ClusterNetwork {
        assert!(
            nodes + FIRST_NODE_HOST < 255,
            "too many nodes for one subnet"
        );
        remove_stale();
        let pid = std::process::id();
        let first_choice =
            (pid as usize * 7 + CLUSTERS_STARTED.fetch_add(1, Ordering::Relaxed)) % SUBNETS;
        let (subnet, bridge) = (0..SUBNETS)
            .map(|n| (first_choice + n) % SUBNETS)
            .find_map(|k| {
                let bridge = format!("{PREFIX}b{k}");
                match try_run("ip", &["link", "add", &bridge, "type", "bridge"], None) {
                    Ok(_) => Some((k, bridge)),
                    // Another test's cluster holds this subnet.
                    Err(message) if message.contains("File exists") => None,
                    Err(message) => panic!(
                        "cannot create a bridge for a test cluster (the fault suite runs as root, with ip and nft installed): {message}"
                    ),
                }
            })
            .expect("a free subnet for a test cluster");
        run(
            "ip",
            &[
                "link",
                "set",
                &bridge,
                "alias",
                &format!("{PREFIX}-{pid}-owner"),
            ],
            None,
        );
        let mut network = ClusterNetwork {
            subnet,
            bridge,
            namespaces: Vec::new(),
        };
        let bridge_cidr = format!("{}/24", network.bridge_ip());
        run(
            "ip",
            &["addr", "add", &bridge_cidr, "dev", &network.bridge],
            None,
        );
        run("ip", &["link", "set", &network.bridge, "up"], None);
        for i in 0..nodes {
            let namespace = format!("{PREFIX}-{pid}-{subnet}-{i}");
            run("ip", &["netns", "add", &namespace], None);
            network.namespaces.push(namespace.clone());
            let host_side = format!("{PREFIX}v{subnet}n{i}");
            run(
                "ip",
                &[
                    "link", "add", &host_side, "type", "veth", "peer", "name", "eth0", "netns",
                    &namespace,
                ],
                None,
            );
            run(
                "ip",
                &["link", "set", &host_side, "master", &network.bridge, "up"],
                None,
            );
            let node_cidr = format!("{}/24", network.node_ip(i));
            run(
                "ip",
                &["-n", &namespace, "addr", "add", &node_cidr, "dev", "eth0"],
                None,
            );
            run("ip", &["-n", &namespace, "link", "set", "eth0", "up"], None);
            run("ip", &["-n", &namespace, "link", "set", "lo", "up"], None);
            network.nft(
                i,
                &format!(
                    "table inet {FAULT_TABLE} {{\n  chain output {{\n    type filter hook output priority 0;\n  }}\n}}\n"
                ),
            );
            let tc = |args: &str| {
                let mut all = vec!["netns", "exec", &namespace, "tc"];
                all.extend(args.split(' '));
                run("ip", &all, None);
            };
            tc("qdisc add dev eth0 root handle 1: htb default 1");
            tc("class add dev eth0 parent 1: classid 1:1 htb rate 10gbit");
            tc(&format!(
                "class add dev eth0 parent 1: classid {SLOW_CLASS} htb rate 10gbit"
            ));
        }
        network
    }

    fn subnet_prefix(&self) -> String {
        format!(
            "10.{}.{}",
            SUBNET_BASE + self.subnet / 256,
            self.subnet % 256
        )
    }

    /// The test process's address on the bridge.
    pub fn bridge_ip(&self) -> String {
        format!("{}.1", self.subnet_prefix())
    }

    /// Node `i`'s address inside its namespace.
    pub fn node_ip(&self, i: usize) -> String {
        format!("{}.{}", self.subnet_prefix(), FIRST_NODE_HOST + i)
    }

    /// The namespace node `i` runs in.
    pub fn namespace(&self, i: usize) -> &str {
        &self.namespaces[i]
    }

    /// How many namespaces the network has.
    pub fn len(&self) -> usize {
        self.namespaces.len()
    }

    pub fn is_empty(&self) -> bool {
        self.namespaces.is_empty()
    }

    /// Namespace `i` accepts packets from the namespaces `sources` only (and from itself), for
    /// good: e.g. a server that only the mesh's exits may reach, so that traffic that reaches
    /// it can only have come through the mesh.
    pub fn accept_only_from(&self, i: usize, sources: &[usize]) {
        let allowed = sources
            .iter()
            .map(|&s| self.node_ip(s))
            .collect::<Vec<_>>()
            .join(", ");
        self.nft(
            i,
            &format!(
                "table inet {ONLY_FROM_TABLE} {{\n  chain input {{\n    type filter hook input priority 0;\n    iifname \"eth0\" ip saddr != {{ {allowed} }} drop\n  }}\n}}\n"
            ),
        );
    }

    /// A TCP listener on node `i`'s address in its namespace, owned by the test process: a
    /// socket stays in the namespace it was made in, so a thread of its own enters the
    /// namespace, binds, and hands the socket back. The test then counts exactly what reaches
    /// it. Non-blocking, ready for `tokio::net::TcpListener::from_std`.
    pub fn bind_tcp(&self, i: usize, port: u16) -> std::io::Result<std::net::TcpListener> {
        let path = format!("/run/netns/{}", self.namespaces[i]);
        let addr = format!("{}:{port}", self.node_ip(i));
        std::thread::spawn(move || {
            let namespace = std::fs::File::open(&path)?;
            nix::sched::setns(&namespace, nix::sched::CloneFlags::CLONE_NEWNET)
                .map_err(std::io::Error::from)?;
            let listener = std::net::TcpListener::bind(&addr)?;
            listener.set_nonblocking(true)?;
            Ok(listener)
        })
        .join()
        .unwrap_or_else(|_| Err(std::io::Error::other("the binding thread panicked")))
    }

    /// Gives processes started in namespace `i` with `ip netns exec` an `/etc/hosts` of their
    /// own: `localhost` and these `(address, name)` pairs. A name resolves there as a cluster's
    /// DNS would resolve it (a StatefulSet pod's name, say), without touching the machine's
    /// `/etc/hosts`.
    pub fn set_hosts(&self, i: usize, names: &[(String, String)]) {
        let folder = etc_folder(&self.namespaces[i]);
        std::fs::create_dir_all(&folder)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", folder.display()));
        let mut hosts = String::from("127.0.0.1 localhost\n");
        for (address, name) in names {
            hosts.push_str(&format!("{address} {name}\n"));
        }
        std::fs::write(folder.join("hosts"), hosts)
            .unwrap_or_else(|e| panic!("cannot write {}/hosts: {e}", folder.display()));
    }

    fn nft(&self, i: usize, script: &str) {
        run(
            "ip",
            &["netns", "exec", &self.namespaces[i], "nft", "-f", "-"],
            Some(script),
        );
    }

    /// Drops every packet that node `from` sends to node `to` (one way: `to` still reaches
    /// `from`, but gets no answer on a connection that needs one).
    pub fn block(&self, from: usize, to: usize) {
        self.nft(
            from,
            &format!(
                "add rule inet {FAULT_TABLE} output ip daddr {} drop\n",
                self.node_ip(to)
            ),
        );
    }

    /// Cuts the nodes into groups that cannot reach each other; the test process still reaches
    /// every node.
    pub fn partition(&self, groups: &[Vec<usize>]) {
        for (g, group) in groups.iter().enumerate() {
            for (h, other) in groups.iter().enumerate() {
                if g != h {
                    for &from in group {
                        for &to in other {
                            self.block(from, to);
                        }
                    }
                }
            }
        }
    }

    /// Drops about `percent` % of the packets between nodes, each way at random.
    pub fn lose_packets(&self, percent: u32) {
        for from in 0..self.namespaces.len() {
            for to in (0..self.namespaces.len()).filter(|&to| to != from) {
                self.nft(
                    from,
                    &format!(
                        "add rule inet {FAULT_TABLE} output ip daddr {} numgen random mod 100 < {percent} drop\n",
                        self.node_ip(to)
                    ),
                );
            }
        }
    }

    /// Sends the traffic between nodes through a link of `kbit` kbit/s, where it queues.
    pub fn slow_links(&self, kbit: u32) {
        for from in 0..self.namespaces.len() {
            run(
                "ip",
                &[
                    "netns",
                    "exec",
                    &self.namespaces[from],
                    "tc",
                    "class",
                    "change",
                    "dev",
                    "eth0",
                    "classid",
                    SLOW_CLASS,
                    "htb",
                    "rate",
                    &format!("{kbit}kbit"),
                ],
                None,
            );
            for to in (0..self.namespaces.len()).filter(|&to| to != from) {
                // htb sends a packet whose priority names one of its classes through that class.
                self.nft(
                    from,
                    &format!(
                        "add rule inet {FAULT_TABLE} output ip daddr {} meta priority set {SLOW_CLASS}\n",
                        self.node_ip(to)
                    ),
                );
            }
        }
    }

    /// Removes every network fault.
    pub fn heal(&self) {
        self.heal_nodes(&(0..self.namespaces.len()).collect::<Vec<_>>());
    }

    /// Removes every network fault of the nodes `nodes` (what they block, not what others
    /// block towards them): quicker than [`ClusterNetwork::heal`] when only they have faults.
    pub fn heal_nodes(&self, nodes: &[usize]) {
        for &i in nodes {
            self.nft(i, &format!("flush chain inet {FAULT_TABLE} output\n"));
        }
    }
}

impl Drop for ClusterNetwork {
    fn drop(&mut self) {
        // Deleting a namespace deletes its end of the veth, and with it the bridge's end.
        for namespace in &self.namespaces {
            let _ = try_run("ip", &["netns", "del", namespace], None);
            let _ = std::fs::remove_dir_all(etc_folder(namespace));
        }
        let _ = try_run("ip", &["link", "del", &self.bridge], None);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_owner_is_read_from_a_name() {
        assert_eq!(owner_pid("tdm-4242-17-0"), Some(4242));
        assert_eq!(owner_pid("tdm-4242-owner"), Some(4242));
        assert_eq!(owner_pid("other-4242"), None);
        assert_eq!(owner_pid("tdm-x-1"), None);
    }
}
