//! Starting and stopping a server node: open the stores, bind both ports, start Raft, form the
//! cluster on first start, and run the leader's expiry loop until a shutdown signal.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use std::os::unix::fs::DirBuilderExt;
use tandem_ha::RaftHa;
use tandem_raft::openraft::ChangeMembers;
use tandem_raft::openraft::{self, SnapshotPolicy};
use tandem_raft::wire;
use tandem_raft::{ClusterClient, ClusterNode, HttpNetwork, LogStore, PeerContacts, Raft};
use tandem_store::{Command, StateMachine};
use tandem_tls::{ClusterTls, DerivedCaSettings, TlsListener};

use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::config::{load_or_generate_secret, Settings};
use crate::keys::{peer_refresh_loop, rotation_loop, KeyRing};
use crate::node::{now_ms, Node};
use crate::proposals::ProposalQueue;
use crate::read_index::ReadIndex;

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot use data folder {path}: {source}")]
    DataDir {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Log(#[from] tandem_raft::LogStoreError),
    #[error(transparent)]
    State(#[from] tandem_store::StoreError),
    #[error("cannot listen for {what} on {addr}: {source} (is another process using it?)")]
    Bind {
        what: &'static str,
        addr: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cluster TLS: {0}")]
    Tls(#[from] tandem_tls::TlsError),
    #[error("Raft configuration: {0}")]
    RaftConfig(String),
    #[error("Raft failed to start: {0}")]
    Raft(String),
    #[error("signing keys: {0}")]
    Keys(#[from] tandem_keys::KeyError),
}

/// A server that is running; dropping it does not stop it, [`RunningServer::shutdown`] does.
pub struct RunningServer {
    pub node: Arc<Node>,
    stop: watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    /// Renews the cluster certificate; stopped, not awaited, at shutdown.
    certificate_rotation: tokio::task::JoinHandle<()>,
}

/// The cluster channel's mutual TLS: certificates from the operator's files when given,
/// otherwise from the CA every node derives from `secret_raft`.
fn cluster_tls(settings: &Settings, secret_raft: &str) -> Result<ClusterTls, StartError> {
    if let Some(files) = settings.cluster_pem_files() {
        return Ok(ClusterTls::from_pem_files(files)?);
    }
    let mut derived = DerivedCaSettings::new(settings.node_id, secret_raft);
    derived.also_trusted_secret = settings.secret_cluster_previous.clone();
    Ok(ClusterTls::from_secret(derived)?)
}

async fn bind(what: &'static str, addr: &str) -> Result<TcpListener, StartError> {
    let err = |source| StartError::Bind {
        what,
        addr: addr.to_string(),
        source,
    };
    // Listen on the given address; a host name is resolved and the first address used.
    let resolved: Vec<SocketAddr> = tokio::net::lookup_host(addr).await.map_err(err)?.collect();
    let first = resolved.first().copied().ok_or_else(|| {
        err(std::io::Error::new(
            std::io::ErrorKind::NotFound,
            "the name resolves to no address",
        ))
    })?;
    TcpListener::bind(first).await.map_err(err)
}

fn secret(
    settings_value: Option<&str>,
    settings: &Settings,
    name: &str,
    label: &str,
    env: &str,
) -> Result<String, StartError> {
    if let Some(given) = settings_value {
        return Ok(given.to_string());
    }
    let (secret, generated) =
        load_or_generate_secret(&settings.data_dir, name).map_err(|source| {
            StartError::DataDir {
                path: settings.data_dir.display().to_string(),
                source,
            }
        })?;
    if generated {
        // Shown once, on the start that made it; it stays in the data folder (mode 0600).
        println!(
            "Generated {label}: {secret}\n  (saved in {}; pass it as {env})",
            settings.data_dir.join(name).display()
        );
    }
    Ok(secret)
}

impl RunningServer {
    pub async fn start(settings: Settings) -> Result<RunningServer, StartError> {
        let data_dir = settings.data_dir.clone();
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&data_dir)
            .map_err(|source| StartError::DataDir {
                path: data_dir.display().to_string(),
                source,
            })?;
        let this = settings.this_node().clone();
        let raft_listener = bind("cluster traffic", &this.cluster_addr).await?;
        let api_listener = bind("the API", &this.api_addr).await?;

        let log = LogStore::open(&data_dir.join("raft.redb"))?;
        let fresh = log
            .is_empty()
            .map_err(|e| StartError::Raft(e.to_string()))?;
        let state = StateMachine::open(&data_dir)?;
        let keys = KeyRing::open(&settings)?;
        crate::health::install_metrics();
        // Made only once the ports and stores are ours, so a start that fails on them does not
        // print a secret that a later start would not show again.
        let secret_api = secret(
            settings.secret_api.as_deref(),
            &settings,
            "secret-api",
            "API secret",
            "TANDEM_SECRET_API",
        )?;
        let secret_raft = secret(
            settings.secret_cluster.as_deref(),
            &settings,
            "secret-raft",
            "cluster secret",
            "TANDEM_SECRET_CLUSTER",
        )?;

        let config = openraft::Config {
            cluster_name: "tandem".into(),
            heartbeat_interval: settings.heartbeat.as_millis(),
            election_timeout_min: settings.election_timeout_min.as_millis(),
            election_timeout_max: settings.election_timeout_max.as_millis(),
            snapshot_policy: SnapshotPolicy::LogsSinceLast(settings.snapshot_every),
            max_in_snapshot_log_to_keep: settings.snapshot_logs_to_keep,
            install_snapshot_timeout: 10_000,
            ..Default::default()
        }
        .validate()
        .map_err(|e| StartError::RaftConfig(e.to_string()))?;

        let tls = cluster_tls(&settings, &secret_raft)?;
        let http = tls
            .https_client_builder()
            .connect_timeout(Duration::from_secs(2))
            .tcp_nodelay(true)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| StartError::Raft(e.to_string()))?;
        let cluster = ClusterClient::new(http, "https", secret_raft.clone().into());
        let contacts = PeerContacts::default();
        let network = HttpNetwork::new(cluster.clone(), contacts.clone());
        let raft = Raft::new(
            settings.node_id,
            Arc::new(config),
            network,
            log.clone(),
            state.clone(),
        )
        .await
        .map_err(|e| StartError::Raft(e.to_string()))?;
        let ha = RaftHa::start(
            raft.clone(),
            settings.node_id,
            cluster.clone(),
            contacts.clone(),
            log.clone(),
        );

        let request_timeout = settings.request_timeout.0;
        let proposals = ProposalQueue::start(raft.clone(), request_timeout);
        let read_index = ReadIndex::new(raft.clone(), request_timeout);
        let node = Arc::new(Node {
            id: settings.node_id,
            db: state.db(),
            state,
            settings,
            raft,
            log,
            contacts,
            snapshot_receipt: Default::default(),
            ha,
            cluster,
            secret_api,
            secret_raft,
            keys,
            proposals,
            read_index,
        });

        let (stop, stopped) = watch::channel(false);
        let mut tasks = Vec::new();
        let until_stopped = |mut rx: watch::Receiver<bool>| async move {
            let _ = rx.wait_for(|stop| *stop).await;
        };
        let api_app = crate::api::router(node.clone());
        let cluster_app = crate::cluster_api::router(node.clone(), api_app.clone());
        let stop_cluster = until_stopped(stopped.clone());
        let listener = TlsListener::new(raft_listener, tls.acceptor());
        tasks.push(tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, cluster_app)
                .with_graceful_shutdown(stop_cluster)
                .await
            {
                tracing::error!(error = %e, "cluster listener failed");
            }
        }));
        let stop_api = until_stopped(stopped.clone());
        tasks.push(tokio::spawn(async move {
            if let Err(e) = axum::serve(api_listener, api_app)
                .with_graceful_shutdown(stop_api)
                .await
            {
                tracing::error!(error = %e, "API listener failed");
            }
        }));
        tracing::info!(
            node_id = node.id, api = %this.api_addr, raft = %this.cluster_addr,
            data_dir = %node.settings.data_dir.display(), nodes = node.settings.nodes.0.len(),
            "tandem server started"
        );
        tracing::info!(
            backend = node.ha.name(),
            ha_available = node.settings.nodes.0.len() > 1,
            "HA backend in use{}",
            if node.settings.nodes.0.len() > 1 {
                ""
            } else {
                " (a single node: no standby can take over)"
            }
        );
        if fresh {
            tasks.push(tokio::spawn(form_cluster(node.clone(), stopped.clone())));
        }
        tasks.push(tokio::spawn(advertise(node.clone(), stopped.clone())));
        tasks.push(tokio::spawn(rotation_loop(node.clone(), stopped.clone())));
        tasks.push(tokio::spawn(peer_refresh_loop(
            node.clone(),
            stopped.clone(),
        )));
        tasks.push(tokio::spawn(expire_loop(node.clone(), stopped)));
        let certificate_rotation = tls.spawn_rotation();
        Ok(RunningServer {
            node,
            stop,
            tasks,
            certificate_rotation,
        })
    }

    /// Resolves when Raft has stopped on its own (a storage failure, say), with the reason. The
    /// node can then serve nothing; the process should exit so a supervisor restarts it.
    pub async fn raft_failed(&self) -> String {
        let mut metrics = self.node.raft.metrics();
        loop {
            if let Err(fatal) = &metrics.borrow().running_state {
                return fatal.to_string();
            }
            if metrics.changed().await.is_err() {
                return "Raft stopped".into();
            }
        }
    }

    /// Hands the active role to a standby first (when this node holds it), then stops accepting
    /// requests, lets the ones in flight finish, and stops Raft.
    pub async fn shutdown(self) {
        if self.node.ha.view().is_self && self.node.ha.ha_available() {
            match self.node.ha.step_down().await {
                Ok(()) => tracing::info!("handed the active role over before stopping"),
                Err(e) => {
                    tracing::warn!(error = %e, "could not hand the active role over; stopping anyway")
                }
            }
        }
        let _ = self.stop.send(true);
        self.certificate_rotation.abort();
        for task in self.tasks {
            let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
        }
        if let Err(e) = self.node.raft.shutdown().await {
            tracing::warn!(error = %e, "Raft did not stop cleanly");
        }
        tracing::info!(node_id = self.node.id, "tandem server stopped");
    }
}

/// On a node that has never been part of a cluster: if a peer already belongs to one, wait to
/// be contacted by its leader (this node is in its membership, so it is sent the log or a
/// snapshot). Otherwise propose the configured membership; every fresh node proposes the same
/// one, which Raft accepts as one.
async fn form_cluster(node: Arc<Node>, mut stopped: watch::Receiver<bool>) {
    let members: BTreeMap<u64, ClusterNode> = node
        .settings
        .nodes
        .0
        .iter()
        .map(|n| {
            (
                n.id,
                ClusterNode {
                    raft_addr: n.cluster_addr.clone(),
                    api_addr: n.api_addr.clone(),
                },
            )
        })
        .collect();
    let peers: Vec<ClusterNode> = members
        .iter()
        .filter(|(id, _)| **id != node.id)
        .map(|(_, n)| n.clone())
        .collect();
    // Give peers that start at about the same time a few seconds to answer.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
    loop {
        let mut answered = 0;
        for peer in &peers {
            let Some(probe) = node
                .cluster
                .probe(&peer.raft_addr, Duration::from_millis(500))
                .await
            else {
                continue;
            };
            answered += 1;
            if probe.initialized {
                tracing::info!(
                    peer = probe.node_id,
                    "joining the existing cluster; waiting for its leader"
                );
                return;
            }
        }
        if answered == peers.len() || tokio::time::Instant::now() >= deadline {
            break;
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(200)) => {}
            _ = stopped.changed() => return,
        }
    }
    match node.raft.initialize(members).await {
        Ok(()) => tracing::info!(node_id = node.id, "formed the cluster"),
        // Another node's proposal reached this one first: it is already a member.
        Err(e) => tracing::info!(reason = %e, "cluster already forming; not proposing membership"),
    }
}

/// On the leader: when a key, cache entry or lease is due, propose an `Expire` command so every
/// replica removes it at the same point in the log.
async fn expire_loop(node: Arc<Node>, mut stopped: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(100)) => {}
            _ = stopped.changed() => return,
        }
        if !node.is_active() {
            continue;
        }
        let due = match node.db.next_expiry() {
            Ok(Some(at)) => at <= now_ms(),
            Ok(None) => false,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the next expiry");
                false
            }
        };
        if due {
            if let Err(e) = node.propose(Command::Expire).await {
                tracing::debug!(error = %e.message, "expiry not proposed");
            }
        }
    }
}

/// Publishes this node's advertised addresses (`api_addr`, `cluster_addr`, or its node-list line
/// when they are unset) into the cluster membership whenever the membership holds others, so
/// redirects and peers use them and removing a setting takes its address back. The active node makes the change; a standby
/// asks it to.
async fn advertise(node: Arc<Node>, mut stopped: watch::Receiver<bool>) {
    let wanted = node.settings.advertised();
    let wanted = ClusterNode {
        raft_addr: wanted.cluster_addr,
        api_addr: wanted.api_addr,
    };
    loop {
        let current = node
            .raft
            .metrics()
            .borrow()
            .membership_config
            .membership()
            .get_node(&node.id)
            .cloned();
        if current.as_ref() == Some(&wanted) {
            tracing::info!(api = %wanted.api_addr, cluster = %wanted.raft_addr, "advertised addresses published");
            return;
        }
        let view = node.ha.view();
        let outcome = if view.is_self {
            node.raft
                .change_membership(
                    ChangeMembers::SetNodes([(node.id, wanted.clone())].into()),
                    false,
                )
                .await
                .map(|_| ())
                .map_err(|e| e.to_string())
        } else if let Some(active) = view.other_active() {
            let body = wire::encode_request(&(node.id, wanted.clone())).unwrap_or_default();
            node.cluster
                .post(&active.cluster_addr, wire::ADVERTISE_PATH)
                .timeout(Duration::from_secs(2))
                .body(body)
                .send()
                .await
                .and_then(|r| r.error_for_status())
                .map(|_| ())
                .map_err(|e| e.to_string())
        } else {
            Err("no active node yet".into())
        };
        if let Err(e) = outcome {
            tracing::debug!(error = %e, "advertised addresses not published yet");
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = stopped.changed() => return,
        }
    }
}
