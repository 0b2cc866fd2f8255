//! etcd through its v3 gRPC API, for `tandem bench --target etcd` (cargo feature `etcd`).

use std::time::Duration;

use anyhow::{Context, Result};

use crate::answers::{Acknowledger, ReadConsistency};

/// A pause between attempts while etcd has no leader or an endpoint is down; the same as
/// Tandem's client, which retries on its own.
const RETRY_PAUSE: Duration = Duration::from_millis(50);

/// This build can drive etcd.
pub fn available() -> Result<()> {
    Ok(())
}

/// etcd's key/value API.
#[derive(Clone)]
pub struct EtcdKv {
    /// Boxed: the client is large, and cheap to clone per call.
    kv: Box<etcd_client::KvClient>,
    /// How long a put keeps retrying, like Tandem's client: etcd's client does not retry on
    /// another endpoint when one is down or has no leader.
    deadline: Duration,
}

impl EtcdKv {
    /// A client of the etcd members at `endpoints` (`host:port`), plaintext.
    pub async fn connect(endpoints: &[String], deadline: Duration) -> Result<EtcdKv> {
        Ok(EtcdKv {
            kv: Box::new(client(endpoints).await?.kv_client()),
            deadline,
        })
    }

    /// Writes `value` under `key`; answers the Raft term of the member that acknowledged it.
    pub async fn put(&self, key: &str, value: &[u8]) -> Result<Acknowledger, String> {
        let started = tokio::time::Instant::now();
        loop {
            // A put of the same key and value may be repeated: it changes nothing more.
            match self.kv.as_ref().clone().put(key, value, None).await {
                Ok(reply) => {
                    let term = reply.header().map(|h| h.raft_term()).unwrap_or_default();
                    return Ok(Acknowledger::Term(term));
                }
                Err(e) if started.elapsed() >= self.deadline => {
                    return Err(format!("gave up after {:?}: {e}", self.deadline))
                }
                Err(_) => tokio::time::sleep(RETRY_PAUSE).await,
            }
        }
    }

    /// Reads `key`, which must exist.
    pub async fn get(&self, key: &str, read: ReadConsistency) -> Result<(), String> {
        let options = match read {
            ReadConsistency::Linearizable => None,
            ReadConsistency::Stale => Some(etcd_client::GetOptions::new().with_serializable()),
            ReadConsistency::Active => {
                return Err("etcd reads are linearizable or stale (serializable)".into())
            }
        };
        let reply = self
            .kv
            .as_ref()
            .clone()
            .get(key, options)
            .await
            .map_err(|e| e.to_string())?;
        if reply.kvs().is_empty() {
            return Err(format!("key {key:?} is missing"));
        }
        Ok(())
    }
}

/// What a failover measurement needs to know of one member.
pub struct MemberStatus {
    pub is_leader: bool,
    pub term: u64,
    pub committed_index: u64,
    pub applied_index: u64,
}

/// The status of every member that answers within `probe`: (index in `endpoints`, status).
pub async fn member_statuses(endpoints: &[String], probe: Duration) -> Vec<(usize, MemberStatus)> {
    let mut statuses = Vec::new();
    for (i, endpoint) in endpoints.iter().enumerate() {
        let status = tokio::time::timeout(probe, async {
            client(std::slice::from_ref(endpoint))
                .await?
                .status()
                .await
                .map_err(anyhow::Error::from)
        })
        .await;
        if let Ok(Ok(status)) = status {
            let own_id = status.header().map(|h| h.member_id()).unwrap_or_default();
            statuses.push((
                i,
                MemberStatus {
                    is_leader: own_id != 0 && status.leader() == own_id,
                    term: status.raft_term(),
                    committed_index: status.raft_index(),
                    applied_index: status.raft_applied_index(),
                },
            ));
        }
    }
    statuses
}

/// An etcd client over plaintext gRPC to `endpoints` (`host:port` or `http://host:port`).
async fn client(endpoints: &[String]) -> Result<etcd_client::Client> {
    let urls: Vec<String> = endpoints
        .iter()
        .map(|e| {
            if e.contains("://") {
                e.clone()
            } else {
                format!("http://{e}")
            }
        })
        .collect();
    let options = etcd_client::ConnectOptions::new()
        .with_connect_timeout(Duration::from_secs(2))
        .with_timeout(Duration::from_secs(5));
    etcd_client::Client::connect(&urls, Some(options))
        .await
        .with_context(|| format!("cannot reach etcd at {}", urls.join(", ")))
}
