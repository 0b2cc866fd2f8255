//! The workloads of `tandem bench`: many concurrent clients against a cluster with throughput
//! and latency percentiles ([`run`]), the failover times of a local 3-node cluster, the fsyncs
//! of a data folder's disk, the agent registry under many simulated agents, and the agents' mesh
//! (throughput, connect latency and route failover, beside direct TCP and a one-hop proxy). The
//! key/value and failover workloads also run against etcd (cargo feature `etcd`, which needs
//! protoc) for side-by-side figures.
//!
//! The `tandem` binary parses the command line and calls [`run`]; this crate never depends on
//! the binary. Free ports and deadline-bound waits come from `tandem-testkit`.
#![forbid(unsafe_code)]

mod agents;
mod answers;
mod disk;
#[cfg(feature = "etcd")]
mod etcd;
#[cfg(not(feature = "etcd"))]
#[path = "etcd_absent.rs"]
mod etcd;
mod failover;
pub mod local;
mod mesh;
mod run;
mod stages;
mod target;

pub use run::{run, BenchArgs, Servers};
