//! The key/value store a bench drives: Tandem through its HTTP API, or etcd through its v3 gRPC
//! API. The measuring loops call only [`KvStore`], so both systems meet the same workload.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Result};

pub use crate::etcd::{available as etcd_available, member_statuses, EtcdKv};
use clap::ValueEnum;
use tandem_client::{segment, Client, Method, Reply};

/// Which system a bench measures.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum System {
    /// Tandem servers, through their HTTP API
    Tandem,
    /// etcd members, through the v3 gRPC API (plaintext; kv-put, kv-get and failover)
    Etcd,
}

/// Who acknowledged a write, as much as a failover measurement needs to tell an old leader's
/// acknowledgement from a new one's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Acknowledger {
    /// Tandem names the active node that served the request (0 when the header was missing).
    Node(u64),
    /// etcd names the Raft term of the member that answered.
    Term(u64),
}

impl Acknowledger {
    /// True when a write acknowledged like this cannot have been served by the leader that
    /// `stopped` describes.
    pub fn is_after(&self, stopped: &Acknowledger) -> bool {
        match (self, stopped) {
            (Acknowledger::Node(node), Acknowledger::Node(old)) => *node != 0 && node != old,
            (Acknowledger::Term(term), Acknowledger::Term(old)) => term > old,
            _ => false,
        }
    }
}

/// How a read may be served.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReadConsistency {
    /// Linearizable: Tandem's read index, etcd's default (`serializable=false`).
    Linearizable,
    /// Served by the node asked, from what it has applied: Tandem's `stale`, etcd's serializable.
    Stale,
    /// Served by Tandem's active node from its state, without a quorum round; etcd has no such level.
    Leader,
}

impl ReadConsistency {
    pub fn parse(name: &str) -> Result<ReadConsistency> {
        Ok(match name {
            "linearizable" => ReadConsistency::Linearizable,
            "stale" => ReadConsistency::Stale,
            "leader" => ReadConsistency::Leader,
            other => bail!("--consistency {other:?}: use linearizable, leader or stale"),
        })
    }

    fn name(self) -> &'static str {
        match self {
            ReadConsistency::Linearizable => "linearizable",
            ReadConsistency::Stale => "stale",
            ReadConsistency::Leader => "leader",
        }
    }
}

/// The thing a bench worker calls.
#[derive(Clone)]
pub enum KvStore {
    Tandem(Arc<Client>),
    Etcd(EtcdKv),
}

impl KvStore {
    /// A client of the etcd members at `endpoints` (`host:port`), plaintext.
    pub async fn etcd(endpoints: &[String], deadline: Duration) -> Result<KvStore> {
        Ok(KvStore::Etcd(EtcdKv::connect(endpoints, deadline).await?))
    }

    /// Tandem's client, for the workloads that only Tandem has.
    pub fn tandem(&self) -> Result<&Client, String> {
        match self {
            KvStore::Tandem(client) => Ok(client),
            KvStore::Etcd(_) => Err("this workload runs against Tandem only".into()),
        }
    }

    /// Writes `value` under `key`; answers who acknowledged it.
    pub async fn put(&self, key: &str, value: &[u8]) -> Result<Acknowledger, String> {
        match self {
            KvStore::Tandem(client) => {
                let reply = client
                    .send(
                        Method::PUT,
                        &format!("/v1/kv/{}", segment(key)),
                        Some(value.to_vec()),
                        "application/octet-stream",
                    )
                    .await
                    .map_err(|e| e.to_string())?;
                let reply = acknowledged(reply)?;
                let node = reply
                    .headers
                    .get("tandem-node-id")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse().ok())
                    .unwrap_or_default();
                Ok(Acknowledger::Node(node))
            }
            KvStore::Etcd(etcd) => etcd.put(key, value).await,
        }
    }

    /// Reads `key`, which must exist.
    pub async fn get(&self, key: &str, read: ReadConsistency) -> Result<(), String> {
        match self {
            KvStore::Tandem(client) => {
                let path = format!("/v1/kv/{}?consistency={}", segment(key), read.name());
                let reply = client.get(&path).await.map_err(|e| e.to_string())?;
                acknowledged(reply).map(|_| ())
            }
            KvStore::Etcd(etcd) => etcd.get(key, read).await,
        }
    }
}

/// The reply when Tandem acknowledged the request (2xx), its status and body otherwise.
pub fn acknowledged(reply: Reply) -> Result<Reply, String> {
    if reply.status.is_success() {
        Ok(reply)
    } else {
        Err(format!(
            "HTTP {}: {}",
            reply.status,
            String::from_utf8_lossy(&reply.body)
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_leader_is_told_apart_from_the_stopped_one() {
        let stopped = Acknowledger::Node(2);
        assert!(Acknowledger::Node(3).is_after(&stopped));
        assert!(!Acknowledger::Node(2).is_after(&stopped));
        assert!(!Acknowledger::Node(0).is_after(&stopped));
        let stopped = Acknowledger::Term(4);
        assert!(Acknowledger::Term(5).is_after(&stopped));
        assert!(!Acknowledger::Term(4).is_after(&stopped));
    }
}
