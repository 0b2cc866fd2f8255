//! The integration-test harness: starts real `tandem` server processes on 127.0.0.1 with free
//! ports, one temporary data folder each, and gives tests per-node faults (kill -9, SIGTERM,
//! SIGSTOP / SIGCONT, wipe), leader discovery, HTTP helpers and deadline-bound waits. For the
//! fault suite it also runs clusters with each node in a network namespace of its own
//! ([`ClusterNetwork`]: partitions, one-way partitions, packet loss, slow links), seeded fault
//! schedules ([`faults`]), clients that record their histories ([`history`]), and the workloads
//! with their checkers ([`workloads`], [`linearizability`]). For the mesh it runs `tandem
//! agent` processes in namespaces, with a target that only the exits reach ([`mesh`]). For the
//! external backends it runs a real PostgreSQL server ([`PostgresServer`]) and a real etcd cluster
//! ([`EtcdCluster`]). For a full disk it mounts a small tmpfs over a data folder ([`SmallDisk`]).
//!
//! Every wait has a deadline; nothing here sleeps for a fixed time to synchronise. When a test
//! panics, the last lines of every node's log are printed so a failing run shows why; a server
//! that panics fails the test even when every assertion passed. Set `TANDEM_TEST_KEEP_LOGS=1`
//! to keep the logs of a passing run.
//!
//! ```ignore
//! #[tokio::test(flavor = "multi_thread")]
//! async fn a_write_survives_the_leader() {
//!     let binary = std::path::Path::new(env!("CARGO_BIN_EXE_tandem"));
//!     let mut cluster = Cluster::start(binary, 3, &[]).await;
//!     let leader = cluster.leader().await;
//!     cluster.put(leader, "/v1/kv/k", "v").await.expect_status(200);
//!     cluster.kill(leader);
//!     let survivor = cluster.leader().await;
//!     assert_eq!(cluster.get_when_serving(survivor, "/v1/kv/k").await.text(), "v");
//! }
//! ```
#![forbid(unsafe_code)]

mod agents;
mod browser;
mod cluster;
mod etcd;
pub mod faults;
pub mod history;
mod http;
pub mod jose;
pub mod linearizability;
mod load;
pub mod mesh;
mod netns;
mod postgres;
mod process;
mod small_disk;
mod tokens;
mod wait;
pub mod workloads;

pub use agents::{
    agent_states, join_token, pick, wait_for_agent_states, AgentProcess, CheckTarget,
};
pub use browser::Browser;
pub use cluster::{Cluster, API_SECRET, CLUSTER_SECRET, CLUSTER_SECRET_HEADER};
pub use etcd::EtcdCluster;
pub use http::{cluster_port_client, http_client, ApiErrorBody, HttpReply};
pub use load::{SteadyWrites, WriteLog};
pub use mesh::{curl_socks5, healthz, loopback_mesh_args, HttpTarget};
pub use netns::ClusterNetwork;
pub use postgres::PostgresServer;
pub use process::{free_ports, local_node_list, run_to_exit, tandem_command, ServerProcess};
pub use small_disk::SmallDisk;
pub use tokens::IssuedToken;
pub use wait::{poll_for, wait_for, wait_until, TimedOut, DEADLINE, POLL_INTERVAL};
