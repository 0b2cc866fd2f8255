//! `ha_storage = etcd`: the active node is the server whose lease owns the leader key
//! `{prefix}active`. A server holds an etcd lease of the lock's TTL, keeps it alive every third
//! of it, and creates the key under that lease only where no key exists (a transaction on the
//! key's create revision); the fencing token is the key's create revision, which grows with
//! every new holder. Standbys watch the key, so a released or expired lock is taken at once.
//! etcd is reached through its JSON gateway (`/v3/...`) over HTTP, so the build needs no
//! protobuf compiler. Calls go to one member at a time and move to the next
//! member when one fails, so one dead member costs a retry, not the role.

use std::sync::Arc;
use std::time::Duration;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use serde_json::{json, Value};
use tokio::sync::Notify;

use crate::leased_ha::{LeasedHa, LockService};
use crate::lock_lease::Attempt;
use crate::ActiveNode;

/// The leader key's name under the prefix.
const ACTIVE_KEY: &str = "active";

/// Where the lock lives and how long it is held without renewal.
#[derive(Clone, Debug)]
pub struct EtcdLockSettings {
    /// Every member's client URL (`http://host:2379`).
    pub endpoints: Vec<String>,
    pub prefix: String,
    /// Whole seconds: etcd leases count in seconds.
    pub ttl: Duration,
}

/// Starts running for the leader key as `me`.
pub fn start(me: ActiveNode, settings: EtcdLockSettings) -> Result<Arc<LeasedHa>, String> {
    if settings.endpoints.is_empty() {
        return Err("no etcd endpoints".into());
    }
    // A member that hangs costs half an attempt at most, leaving the other half to the next.
    let per_call = (settings.ttl / 6).max(Duration::from_millis(200));
    let http = reqwest::Client::builder()
        .connect_timeout(per_call)
        .timeout(per_call)
        .build()
        .map_err(|e| format!("etcd client: {e}"))?;
    // The watch is one long response: no overall timeout, only one to connect.
    let watch_http = reqwest::Client::builder()
        .connect_timeout(per_call)
        .build()
        .map_err(|e| format!("etcd client: {e}"))?;
    let key = format!("{}{ACTIVE_KEY}", settings.prefix);
    let changes = Arc::new(Notify::new());
    let watcher = tokio::spawn(watch_key(
        watch_http,
        settings.endpoints.clone(),
        key.clone(),
        changes.clone(),
    ));
    let ttl = settings.ttl;
    let value = json!({
        "id": me.id,
        "api_addr": me.api_addr,
        "cluster_addr": me.cluster_addr,
    })
    .to_string();
    let service = EtcdLock {
        members: Members {
            http,
            endpoints: settings.endpoints.clone(),
            current: 0,
        },
        key,
        value,
        ttl_secs: ttl.as_secs().max(1),
        lease: None,
        changes,
        watcher,
    };
    Ok(LeasedHa::start("etcd", service, me, ttl))
}

/// The etcd members, and the one calls go to now.
struct Members {
    http: reqwest::Client,
    endpoints: Vec<String>,
    current: usize,
}

impl Members {
    /// Posts to `path` on the current member, moving on to the next member each time one does
    /// not answer, until every member was tried once.
    async fn post(&mut self, path: &str, body: Value) -> Result<Value, String> {
        let mut errors = Vec::new();
        for _ in 0..self.endpoints.len() {
            let endpoint = &self.endpoints[self.current];
            let sent = self
                .http
                .post(format!("{endpoint}{path}"))
                .json(&body)
                .send()
                .await;
            let answer = match sent {
                Ok(reply) if reply.status().is_success() => {
                    reply.json::<Value>().await.map_err(|e| e.to_string())
                }
                Ok(reply) => Err(format!(
                    "{}: {}",
                    reply.status(),
                    reply.text().await.unwrap_or_default()
                )),
                Err(e) => Err(e.to_string()),
            };
            match answer {
                Ok(value) => return Ok(value),
                Err(e) => {
                    errors.push(format!("{endpoint}: {e}"));
                    self.current = (self.current + 1) % self.endpoints.len();
                }
            }
        }
        Err(format!("no etcd member answered: {}", errors.join("; ")))
    }
}

/// The JSON gateway writes 64-bit numbers as strings, and leaves out fields that are zero.
fn number(value: &Value) -> u64 {
    match value {
        Value::String(text) => text.parse().unwrap_or(0),
        Value::Number(n) => n.as_u64().unwrap_or(0),
        _ => 0,
    }
}

fn signed(value: &Value) -> i64 {
    match value {
        Value::String(text) => text.parse().unwrap_or(0),
        Value::Number(n) => n.as_i64().unwrap_or(0),
        _ => 0,
    }
}

struct EtcdLock {
    members: Members,
    key: String,
    /// This node's addresses, as standbys read them from the key.
    value: String,
    ttl_secs: u64,
    /// This node's lease, once granted.
    lease: Option<u64>,
    /// Signalled by the watch on the leader key.
    changes: Arc<Notify>,
    watcher: tokio::task::JoinHandle<()>,
}

impl Drop for EtcdLock {
    fn drop(&mut self) {
        self.watcher.abort();
    }
}

/// How long the watch waits before it tries the next member.
const WATCH_RETRY: Duration = Duration::from_millis(200);

/// Watches the leader key, on one member after another, and signals every change to it: a
/// standby then tries for the lock at once when the holder releases it or its lease ends (etcd
/// deletes the key with the lease), instead of at its next attempt.
async fn watch_key(
    http: reqwest::Client,
    endpoints: Vec<String>,
    key: String,
    changes: Arc<Notify>,
) {
    let body = json!({ "create_request": { "key": BASE64.encode(&key) } });
    for endpoint in endpoints.iter().cycle() {
        let sent = http
            .post(format!("{endpoint}/v3/watch"))
            .json(&body)
            .send()
            .await;
        if let Ok(mut reply) = sent.and_then(|reply| reply.error_for_status()) {
            // The key may have changed while no watch was in place.
            changes.notify_one();
            while let Ok(Some(chunk)) = reply.chunk().await {
                if chunk.windows(8).any(|w| w == b"\"events\"") {
                    changes.notify_one();
                }
            }
        }
        tokio::time::sleep(WATCH_RETRY).await;
    }
}

impl EtcdLock {
    /// Keeps this node's lease alive, or gets a new one when it has none or it ran out.
    async fn keep_lease(&mut self) -> Result<u64, String> {
        if let Some(lease) = self.lease {
            let kept = self
                .members
                .post("/v3/lease/keepalive", json!({ "ID": lease.to_string() }))
                .await?;
            if signed(&kept["result"]["TTL"]) > 0 {
                return Ok(lease);
            }
            self.lease = None;
        }
        let granted = self
            .members
            .post("/v3/lease/grant", json!({ "TTL": self.ttl_secs }))
            .await?;
        let lease = number(&granted["ID"]);
        if lease == 0 {
            return Err(format!("etcd granted no lease: {granted}"));
        }
        self.lease = Some(lease);
        Ok(lease)
    }

    /// Creates the leader key under `lease` where none exists; answers the key as it stands.
    async fn campaign(&mut self, lease: Option<u64>) -> Result<Attempt, String> {
        let key = BASE64.encode(&self.key);
        let txn = match lease {
            Some(lease) => json!({
                "compare": [{ "key": key, "target": "CREATE", "result": "EQUAL", "create_revision": "0" }],
                "success": [{ "request_put": { "key": key, "value": BASE64.encode(&self.value), "lease": lease.to_string() } }],
                "failure": [{ "request_range": { "key": key } }],
            }),
            None => json!({ "success": [{ "request_range": { "key": key } }] }),
        };
        let answer = self.members.post("/v3/kv/txn", txn).await?;
        if lease.is_some() && answer["succeeded"].as_bool() == Some(true) {
            // The put created the key: its create revision is the transaction's revision.
            return Ok(Attempt::Holding {
                token: number(&answer["header"]["revision"]),
            });
        }
        let kv = &answer["responses"][0]["response_range"]["kvs"][0];
        if kv.is_null() {
            return Ok(Attempt::Other {
                active: None,
                token: 0,
                expires_in: Duration::ZERO,
            });
        }
        let token = number(&kv["create_revision"]);
        let holder_lease = number(&kv["lease"]);
        if lease.is_some_and(|lease| lease == holder_lease) {
            return Ok(Attempt::Holding { token });
        }
        let active = BASE64
            .decode(kv["value"].as_str().unwrap_or_default())
            .ok()
            .and_then(|bytes| serde_json::from_slice::<Value>(&bytes).ok())
            .and_then(|node| {
                Some(ActiveNode {
                    id: node["id"].as_u64()?,
                    api_addr: node["api_addr"].as_str()?.to_string(),
                    cluster_addr: node["cluster_addr"].as_str()?.to_string(),
                })
            });
        let remaining = self
            .members
            .post(
                "/v3/lease/timetolive",
                json!({ "ID": holder_lease.to_string() }),
            )
            .await?;
        let expires_in = Duration::from_secs(signed(&remaining["TTL"]).max(0) as u64);
        Ok(Attempt::Other {
            active,
            token,
            expires_in,
        })
    }
}

#[async_trait::async_trait]
impl LockService for EtcdLock {
    async fn attempt(&mut self, take: bool) -> Result<Attempt, String> {
        let lease = if take {
            Some(self.keep_lease().await?)
        } else {
            None
        };
        self.campaign(lease).await
    }

    async fn release(&mut self, _token: u64) -> Result<(), String> {
        // Revoking the lease deletes the key with it; the next lease is a new one.
        let Some(lease) = self.lease.take() else {
            return Ok(());
        };
        self.members
            .post("/v3/lease/revoke", json!({ "ID": lease.to_string() }))
            .await
            .map(|_| ())
    }

    fn changes(&self) -> Option<Arc<Notify>> {
        Some(self.changes.clone())
    }

    fn reset(&mut self) {
        // The lease lives in etcd, not in a connection: it is kept. The next call starts with
        // the next member, in case this one is the one that failed.
        self.members.current = (self.members.current + 1) % self.members.endpoints.len();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gateway_numbers_are_strings_or_missing() {
        assert_eq!(number(&json!("694d7b")), 0);
        assert_eq!(number(&json!("7587")), 7587);
        assert_eq!(number(&json!(12)), 12);
        assert_eq!(number(&Value::Null), 0);
        assert_eq!(signed(&json!("-1")), -1);
    }
}
