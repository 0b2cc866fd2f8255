//! This server's token signing keys at work: the key it signs with, the rotation that makes,
//! publishes and retires keys through the replicated state, and the key sets of peers outside
//! the cluster, fetched on a timer so serving the merged set never waits on a peer.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use arc_swap::ArcSwapOption;
use tandem_ha::now_ms;
use tandem_keys::{
    departed_keys, new_key_id, parse_jwks, plan_rotation, public_jwk_from_json, Jwk, JwkSet,
    KeyEncryption, KeyError, KeyVault, OwnKey, Publish, SigningKey, VerifyingKeys,
};
use tandem_raft::NodeId;
use tandem_store::{Command, PublishedKey};
use tokio::sync::watch;

use crate::active_channel::ActiveChannel;
use crate::error::ApiError;
use crate::events::{EventKind, Events};
use crate::replicated::Replicated;
use serde_json::json;

/// How often a server checks whether its key is due for rotation, and whether departed
/// servers' keys need retiring; more often while it has no key to sign with.
const ROTATION_CHECK: Duration = Duration::from_secs(1);
const FIRST_KEY_CHECK: Duration = Duration::from_millis(100);

/// What is known of one key peer: its keys from the last fetch that worked, and how fetches go.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct PeerStatus {
    pub url: String,
    #[serde(skip)]
    pub keys: Vec<Jwk>,
    pub key_count: usize,
    /// Unix time in milliseconds of the last fetch that worked.
    pub last_success_ms: Option<i64>,
    pub last_attempt_ms: Option<i64>,
    pub last_error: Option<String>,
}

/// How this server's keys live and how tokens are issued, from its settings.
#[derive(Clone, Debug)]
pub struct KeyPolicy {
    pub instance_id: String,
    pub algorithm: tandem_keys::SigningAlgorithm,
    pub key_duration: Duration,
    /// The longest life of a token; a retired key stays published this long.
    pub token_duration: Duration,
    pub token_issuer: String,
    pub key_peers: Vec<String>,
    pub key_peers_refresh: Duration,
    pub key_peers_timeout: Duration,
    /// How long a key published by another server may take to reach this one (a couple of
    /// heartbeats), before a token it signed is judged by the key set as it stands.
    pub key_arrival: Duration,
    /// How long a write may take.
    pub request_timeout: Duration,
}

/// This server's keys at work: the key ring, the replicated key set it publishes into, and the
/// active node it asks to publish.
#[derive(Clone)]
pub struct Keys {
    pub node_id: NodeId,
    pub ring: Arc<KeyRing>,
    pub policy: Arc<KeyPolicy>,
    pub data: Replicated,
    pub active: ActiveChannel,
    pub events: Events,
}

impl Keys {
    /// Who the audit log names for the key changes this server makes on its own schedule.
    pub fn server_name(&self) -> String {
        format!("node {}", self.node_id)
    }
}

pub struct KeyRing {
    vault: KeyVault,
    /// Private keys on disk, by key id.
    held: Mutex<BTreeMap<String, Arc<SigningKey>>>,
    signer: ArcSwapOption<SigningKey>,
    /// One rotation at a time: the periodic check and `POST /v1/keys/rotate`.
    rotation: tokio::sync::Mutex<()>,
    peers: RwLock<BTreeMap<String, PeerStatus>>,
    /// Grows whenever a peer's keys change.
    peers_version: AtomicU64,
    /// The merged key set as last decoded for verifying tokens.
    decoded: ArcSwapOption<DecodedKeys>,
}

/// The merged key set decoded for verifying, and the versions of the two parts it came from:
/// the cluster's published keys and the peers' keys.
struct DecodedKeys {
    version: (u64, u64),
    keys: Arc<VerifyingKeys>,
}

impl KeyRing {
    /// Opens `data_dir/keys` and reads every private key in it, decrypting with
    /// `encryption_secret` when one is set.
    pub fn open(
        data_dir: &std::path::Path,
        encryption_secret: Option<&str>,
        key_peers: &[String],
    ) -> Result<KeyRing, KeyError> {
        let encryption = encryption_secret
            .map(KeyEncryption::from_secret)
            .transpose()?;
        let vault = KeyVault::open(&data_dir.join("keys"), encryption)?;
        let held = vault
            .load_all()?
            .into_iter()
            .map(|k| (k.kid().to_string(), Arc::new(k)))
            .collect();
        let peers = key_peers
            .iter()
            .map(|url| {
                let status = PeerStatus {
                    url: url.clone(),
                    ..Default::default()
                };
                (url.clone(), status)
            })
            .collect();
        Ok(KeyRing {
            vault,
            held: Mutex::new(held),
            signer: ArcSwapOption::empty(),
            rotation: tokio::sync::Mutex::new(()),
            peers: RwLock::new(peers),
            peers_version: AtomicU64::new(0),
            decoded: ArcSwapOption::empty(),
        })
    }

    /// The key this server signs with, once it has one published.
    pub fn signer(&self) -> Option<Arc<SigningKey>> {
        self.signer.load_full()
    }

    fn held_ids(&self) -> BTreeSet<String> {
        lock(&self.held).keys().cloned().collect()
    }

    fn held_key(&self, kid: &str) -> Option<Arc<SigningKey>> {
        lock(&self.held).get(kid).cloned()
    }

    pub fn peer_statuses(&self) -> Vec<PeerStatus> {
        read(&self.peers).values().cloned().collect()
    }

    fn peer_keys(&self) -> Vec<Jwk> {
        read(&self.peers)
            .values()
            .flat_map(|p| p.keys.iter().cloned())
            .collect()
    }

    fn forget(&self, kid: &str) {
        match self.vault.remove(kid) {
            Ok(()) => {
                lock(&self.held).remove(kid);
            }
            Err(e) => tracing::warn!(kid, error = %e, "cannot delete a retired private key"),
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn read<T>(m: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    m.read().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The cluster's published keys (as this node's state has them) and the peers' keys, merged.
pub fn merged_key_set(keys: &Keys) -> Result<JwkSet, ApiError> {
    let cluster = keys
        .data
        .read_now(|reads| reads.keys_published())?
        .iter()
        .filter_map(|k| public_jwk_from_json(&k.jwk).ok())
        .collect();
    Ok(tandem_keys::merge_jwks(cluster, keys.ring.peer_keys()))
}

/// The merged key set decoded for verifying tokens. It is read and decoded again only after the
/// cluster's published keys or a peer's keys have changed; otherwise verifying reads nothing.
pub fn verifying_keys(keys: &Keys) -> Result<Arc<VerifyingKeys>, ApiError> {
    // Read before the set: a change made while it is decoded gives the next call a newer
    // version, so a stale set is never kept.
    let version = (
        keys.data.keys_version(),
        keys.ring.peers_version.load(Ordering::SeqCst),
    );
    let cached = keys.ring.decoded.load();
    if let Some(cached) = cached.as_ref().filter(|c| c.version == version) {
        return Ok(cached.keys.clone());
    }
    let decoded = Arc::new(VerifyingKeys::new(&merged_key_set(keys)?));
    keys.ring.decoded.store(Some(Arc::new(DecodedKeys {
        version,
        keys: decoded.clone(),
    })));
    Ok(decoded)
}

fn own_keys(node_id: NodeId, published: &[PublishedKey]) -> Vec<OwnKey> {
    published
        .iter()
        .filter(|k| k.node_id == node_id)
        .map(|k| OwnKey {
            kid: k.kid.clone(),
            published_at_ms: k.published_at_ms,
            retired: k.retired_at_ms.is_some(),
        })
        .collect()
}

/// Brings this server's keys in line with its rotation plan: retires what must stop signing,
/// publishes a new key when one is due (or `rotate_now`), waits until the new key is in this
/// node's state, and only then signs with it. Answers the key id it signs with. The audit log
/// records the changes as `who`'s.
pub async fn rotate(keys: &Keys, rotate_now: bool, who: &str) -> Result<Option<String>, ApiError> {
    let ring = &keys.ring;
    let _one_at_a_time = ring.rotation.lock().await;
    let key_duration_ms = keys.policy.key_duration.as_millis() as i64;
    let keep_for_ms = keys.policy.token_duration.as_millis() as u64;
    let mut rotate_now = rotate_now;
    // At most: publish one key, then switch to it and retire the old one.
    for _ in 0..3 {
        let published = keys.data.read_now(|reads| reads.keys_published())?;
        let plan = plan_rotation(
            now_ms(),
            &own_keys(keys.node_id, &published),
            &ring.held_ids(),
            key_duration_ms,
            rotate_now,
        );
        ring.signer
            .store(plan.signing.as_deref().and_then(|kid| ring.held_key(kid)));
        for kid in plan.retire {
            let retire = Command::KeyRetire {
                kid: kid.clone(),
                keep_for_ms,
            };
            keys.active.propose(retire.audited(who)).await?;
            keys.events.record(
                EventKind::KeyRetired,
                json!({ "kid": kid, "node_id": keys.node_id }),
            );
        }
        for kid in plan.forget {
            ring.forget(&kid);
        }
        let key = match plan.publish {
            Publish::Nothing => return Ok(plan.signing),
            Publish::Pending(kid) => match ring.held_key(&kid) {
                Some(key) => key,
                None => return Ok(plan.signing),
            },
            Publish::New => {
                let kid = new_key_id(&keys.policy.instance_id);
                let key =
                    SigningKey::generate(keys.policy.algorithm, kid).map_err(ApiError::internal)?;
                // On disk before it is published: a published key's private half is never lost
                // to a crash.
                ring.vault.save(&key).map_err(ApiError::internal)?;
                let key = Arc::new(key);
                lock(&ring.held).insert(key.kid().to_string(), key.clone());
                key
            }
        };
        publish(keys, &key, who).await?;
        rotate_now = false;
    }
    Ok(ring.signer().map(|k| k.kid().to_string()))
}

async fn publish(keys: &Keys, key: &SigningKey, who: &str) -> Result<(), ApiError> {
    let jwk = serde_json::to_string(key.public_jwk()).map_err(ApiError::internal)?;
    let command = Command::KeyPublish {
        kid: key.kid().to_string(),
        node_id: keys.node_id,
        jwk,
    };
    let published = keys.active.propose(command.audited(who)).await;
    match published {
        Ok(_) => {}
        // Published before and since removed (a restart after a long stop): never reused.
        Err(e) if e.code == "conflict" => {
            keys.ring.forget(key.kid());
            return Err(e);
        }
        Err(e) => return Err(e),
    }
    let deadline = tokio::time::Instant::now() + keys.policy.request_timeout;
    loop {
        if keys
            .data
            .read_now(|reads| reads.keys_published())?
            .iter()
            .any(|k| k.kid == key.kid())
        {
            keys.events.record(
                EventKind::KeyPublished,
                json!({ "kid": key.kid(), "node_id": keys.node_id, "algorithm": key.algorithm().to_string() }),
            );
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(ApiError::unavailable(
                "the new key was published but has not reached this node yet; retry",
            ));
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// On the active node: retires the keys of servers that are no longer members.
pub async fn retire_departed(keys: &Keys) -> Result<(), ApiError> {
    let members: BTreeSet<u64> = keys.data.status().member_ids();
    let published = keys.data.read_now(|reads| reads.keys_published())?;
    let published = published
        .into_iter()
        .map(|k| (k.kid, k.node_id, k.retired_at_ms.is_some()));
    for kid in departed_keys(published, &members) {
        let retire = Command::KeyRetire {
            kid: kid.clone(),
            keep_for_ms: keys.policy.token_duration.as_millis() as u64,
        };
        keys.data
            .propose(retire.audited(keys.server_name()))
            .await?;
        keys.events.record(
            EventKind::KeyRetired,
            json!({ "kid": kid, "reason": "its server left the cluster" }),
        );
    }
    Ok(())
}

/// Keeps this server's keys rotated.
pub async fn rotation_loop(keys: Keys, mut stopped: watch::Receiver<bool>) {
    let mut last_error = String::new();
    loop {
        let outcome = rotate(&keys, false, &keys.server_name()).await.map(|_| ());
        match outcome {
            Ok(()) => last_error.clear(),
            // Expected while the cluster forms or elects; said once, not every second.
            Err(e) if e.message != last_error => {
                tracing::info!(error = %e.message, "signing keys not up to date yet; retrying");
                last_error = e.message;
            }
            Err(_) => {}
        }
        let pause = if keys.ring.signer().is_some() {
            ROTATION_CHECK
        } else {
            FIRST_KEY_CHECK
        };
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            _ = stopped.changed() => return,
        }
    }
}

/// Fetches every key peer's JWKS at once, each with its own timeout, every `key_peers_refresh`.
/// A peer that fails keeps the keys of its last good fetch.
pub async fn peer_refresh_loop(keys: Keys, mut stopped: watch::Receiver<bool>) {
    let urls = keys.policy.key_peers.clone();
    if urls.is_empty() {
        return;
    }
    let client = match reqwest::Client::builder()
        .timeout(keys.policy.key_peers_timeout)
        .build()
    {
        Ok(client) => client,
        Err(e) => {
            tracing::error!(error = %e, "cannot build the HTTP client for key peers");
            return;
        }
    };
    let mut every = tokio::time::interval(keys.policy.key_peers_refresh);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = every.tick() => {}
            _ = stopped.changed() => return,
        }
        let fetches = urls.iter().map(|url| fetch_peer(&client, url));
        let results = futures::future::join_all(fetches).await;
        let now = now_ms();
        let mut peers = keys
            .ring
            .peers
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        for (url, result) in urls.iter().zip(results) {
            let status = peers.entry(url.clone()).or_default();
            status.last_attempt_ms = Some(now);
            let peer_label = [("peer", url.clone())];
            match result {
                Ok(fetched) => {
                    if status.keys != fetched {
                        keys.ring.peers_version.fetch_add(1, Ordering::SeqCst);
                    }
                    status.key_count = fetched.len();
                    status.keys = fetched;
                    status.last_success_ms = Some(now);
                    status.last_error = None;
                    metrics::gauge!(
                        "tandem_key_peer_last_success_timestamp_seconds",
                        &peer_label
                    )
                    .set(now as f64 / 1000.0);
                }
                Err(e) => {
                    tracing::warn!(peer = %url, error = %e, "key peer fetch failed; keeping its last good keys");
                    status.last_error = Some(e);
                    metrics::counter!("tandem_key_peer_fetch_failures_total", &peer_label)
                        .increment(1);
                }
            }
        }
    }
}

async fn fetch_peer(client: &reqwest::Client, url: &str) -> Result<Vec<Jwk>, String> {
    let response = client.get(url).send().await.map_err(|e| e.to_string())?;
    if !response.status().is_success() {
        return Err(format!("answered {}", response.status()));
    }
    let body = response.bytes().await.map_err(|e| e.to_string())?;
    parse_jwks(&body)
}
