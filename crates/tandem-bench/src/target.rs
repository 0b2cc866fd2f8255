//! The key/value store a bench drives: Tandem through its HTTP API, or etcd through its v3 gRPC
//! API. The measuring loops call only [`KvStore`], so both systems meet the same workload.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;

pub use crate::answers::{Acknowledger, ReadConsistency};
use crate::etcd::EtcdKv;
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
