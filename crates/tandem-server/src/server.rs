//! Starting and stopping a server node: open the stores, bind both ports, start Raft and the
//! backends behind the HA and replication traits, form the cluster on first start, and run the
//! active node's duties while this node holds the role, until a shutdown signal.

use std::collections::BTreeMap;
use std::future::{Future, IntoFuture};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use std::os::unix::fs::DirBuilderExt;
use tandem_ha::{now_ms, ActiveView, HaBackend, RaftHa, RaftReplicator};
use tandem_raft::openraft::{self, SnapshotPolicy};
use tandem_raft::{
    caught_up, has_history, node_list_drift, write_stages, ClusterClient, ClusterNode, HttpNetwork,
    LogStore, MembershipView, NodeId, PeerContacts, Raft, VoteAbstention,
};
use tandem_registry::LivenessPolicy;
use tandem_store::{Command, StateMachine};
use tandem_tls::{AgentCa, ClusterTls, DerivedCaSettings, TlsListener, API_CERT_FILES_CHECK};

use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::active_channel::{ActiveChannel, Advertised};
use crate::cluster_api::{ClusterPort, ClusterSecrets};
use crate::config::{load_or_generate_secret, ApiTls, Backends, ConfigError, Settings};
use crate::credentials::Credentials;
use crate::events::{self, Events, RaftFacts};
use crate::health::NodeHealth;
use crate::keys::{peer_refresh_loop, retire_departed, rotation_loop, KeyPolicy, KeyRing, Keys};
use crate::registry::Registry;
use crate::removal_watch::watch_for_removal;
use crate::replicated::Replicated;
use crate::server_metrics::{self, keep_gauges};
use crate::stall_watch;
use crate::state::{ApiCa, ApiSecret, ApiState};
use crate::storage_quota::{sample_storage, StorageGuard, StorageLimits};

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
    #[error("{0}")]
    Backends(ConfigError),
    #[error("{0}")]
    DataFormat(String),
}

/// How often the active node looks for keys, cache entries and leases that are due.
const EXPIRY_CHECK: Duration = Duration::from_millis(100);
/// How often the active node looks for signing keys of servers that left the cluster.
const DEPARTED_KEYS_CHECK: Duration = Duration::from_secs(1);

/// A server that is running; dropping it does not stop it, [`RunningServer::shutdown`] does.
pub struct RunningServer {
    node_id: NodeId,
    raft: Raft,
    ha: Arc<dyn HaBackend>,
    stop: watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    /// Renews the cluster certificate; stopped, not awaited, at shutdown.
    /// The cluster certificate's rotation and the API certificate's refresh, which run until
    /// aborted.
    certificate_tasks: Vec<tokio::task::JoinHandle<()>>,
}

/// The cluster channel's mutual TLS: certificates from the operator's files when given,
/// otherwise from the CA every node derives from the cluster secret.
fn cluster_tls(settings: &Settings, secret_cluster: &str) -> Result<ClusterTls, StartError> {
    if let Some(files) = settings.cluster_pem_files() {
        return Ok(ClusterTls::from_pem_files(files)?);
    }
    let mut derived = DerivedCaSettings::new(settings.node_id, secret_cluster);
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

/// The API server's serving future, plain or over TLS.
type ServeFuture = std::pin::Pin<Box<dyn std::future::Future<Output = std::io::Result<()>> + Send>>;

/// The API's TLS identity, if it speaks TLS: a certificate issued for the names clients dial
/// (the listening and the advertised host, and this machine's loopback names), or the files.
fn api_tls(
    choice: &ApiTls,
    settings: &Settings,
    secret_cluster: &str,
) -> Result<Option<tandem_tls::ApiTls>, StartError> {
    Ok(match choice {
        ApiTls::Plain => None,
        ApiTls::Files { cert, key } => Some(tandem_tls::ApiTls::from_files(cert, key)?),
        ApiTls::Derived => {
            let mut names = Vec::new();
            for addr in [
                &settings.this_node().api_addr,
                &settings.advertised().api_addr,
            ] {
                let host = addr
                    .rsplit_once(':')
                    .map_or(addr.as_str(), |(host, _)| host);
                let host = host.trim_start_matches('[').trim_end_matches(']');
                let unspecified = host
                    .parse::<std::net::IpAddr>()
                    .is_ok_and(|ip| ip.is_unspecified());
                if !unspecified {
                    names.push(host.to_string());
                }
            }
            names.extend(["localhost".to_string(), "127.0.0.1".to_string()]);
            names.dedup();
            Some(tandem_tls::ApiTls::from_secret(secret_cluster, names)?)
        }
    })
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
        if let Backends::Postgres { .. } = settings.backends().map_err(StartError::Backends)? {
            return Err(StartError::Backends(ConfigError(
                "storage = postgres is not available in this version yet; use storage = raft (the default)".into(),
            )));
        }
        let data_dir = settings.data_dir.clone();
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&data_dir)
            .map_err(|source| StartError::DataDir {
                path: data_dir.display().to_string(),
                source,
            })?;
        crate::data_format::check_folder(&data_dir).map_err(StartError::DataFormat)?;
        let this = settings.this_node().clone();
        let cluster_listener = bind("the cluster port", &this.cluster_addr).await?;
        let api_listener = bind("the API", &this.api_addr).await?;

        // Before the stores open: they take their histograms once, when they open.
        crate::health::install_metrics();
        let log = LogStore::open(&data_dir.join("raft.redb"))?;
        let fresh = log
            .is_empty()
            .map_err(|e| StartError::Raft(e.to_string()))?;
        let abstention = VoteAbstention::new(fresh);
        let machine = StateMachine::open(&data_dir)?.timing_commits_by(log.commit_clock());
        let key_ring = KeyRing::open(
            &data_dir,
            settings.key_encryption_secret.as_deref(),
            &settings.key_peers.0,
        )?;
        // Made only once the ports and stores are ours, so a start that fails on them does not
        // print a secret that a later start would not show again.
        let secret_api = secret(
            settings.secret_api.as_deref(),
            &settings,
            "secret-api",
            "API secret",
            "TANDEM_SECRET_API",
        )?;
        // The file keeps its first name, so existing data folders keep their secret.
        let secret_cluster = secret(
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
            snapshot_max_chunk_size: settings.snapshot_chunk_size.0,
            install_snapshot_timeout: 10_000,
            ..Default::default()
        }
        .validate()
        .map_err(|e| StartError::RaftConfig(e.to_string()))?;

        let tls = cluster_tls(&settings, &secret_cluster)?;
        let api_tls_choice = settings.api_tls().map_err(StartError::Backends)?;
        let api_tls = api_tls(&api_tls_choice, &settings, &secret_cluster)?;
        let http = tls
            .https_client_builder()
            .connect_timeout(Duration::from_secs(2))
            .tcp_nodelay(true)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| StartError::Raft(e.to_string()))?;
        let cluster = ClusterClient::new(http, "https", secret_cluster.clone().into());
        let contacts = PeerContacts::default();
        let network = HttpNetwork::new(cluster.clone(), contacts.clone(), settings.heartbeat.0);
        let node_id = settings.node_id;
        let raft = Raft::new(
            node_id,
            Arc::new(config),
            network,
            log.clone(),
            machine.clone(),
        )
        .await
        .map_err(|e| StartError::Raft(e.to_string()))?;
        let ha: Arc<dyn HaBackend> = RaftHa::start(
            raft.clone(),
            node_id,
            cluster.clone(),
            contacts.clone(),
            log.clone(),
        );
        let request_timeout = settings.request_timeout.0;
        let replicator = Arc::new(RaftReplicator::start(
            raft.clone(),
            node_id,
            log.clone(),
            contacts.clone(),
            request_timeout,
        ));
        let storage = StorageGuard::new(
            data_dir.clone(),
            StorageLimits {
                quota: settings.storage_quota.0,
                reserve: settings.storage_reserve.0,
            },
        );
        let state_db = machine.db();
        let data = Replicated::new(replicator, ha.clone(), machine, storage.clone());
        let active = ActiveChannel::new(
            node_id,
            ha.clone(),
            cluster.clone(),
            data.clone(),
            request_timeout,
            settings.max_body_bytes,
            api_tls_choice.scheme(),
        );
        let events = Events::new(node_id);
        let keys = Keys {
            node_id,
            ring: Arc::new(key_ring),
            policy: Arc::new(key_policy(&settings)),
            data: data.clone(),
            active: active.clone(),
            events: events.clone(),
        };
        let (removal, removal_seen) = watch::channel(None);
        let health = NodeHealth {
            node_id,
            ha: ha.clone(),
            data: data.clone(),
            // Heartbeats arrive every `heartbeat`: five missed in a row means the active node
            // is out of reach. A leader's quorum confirmation is as fresh as its lease.
            contact_stale_after_ms: settings.heartbeat.as_millis() * 5,
            quorum_stale_after_ms: settings.election_timeout_max.as_millis(),
            api_scheme: api_tls_choice.scheme(),
            removal: removal_seen,
        };
        let registry = Registry::new(
            data.clone(),
            AgentCa::from_secret(&secret_cluster)?,
            LivenessPolicy {
                down_after_ms: settings.agent_down_after.as_millis() as i64,
                deregister_after_ms: settings.agent_deregister_after.as_millis() as i64,
            },
            // Three reports in every `down_after`: one lost report never marks an agent down.
            settings.agent_down_after.0 / 3,
            events.clone(),
        );
        let secret_api_for_join = secret_api.clone();
        let api_state = ApiState {
            data: data.clone(),
            active: active.clone(),
            keys: keys.clone(),
            health: health.clone(),
            credentials: Credentials {
                secret: ApiSecret(secret_api.into()),
                data: data.clone(),
                registry: registry.clone(),
                active: active.clone(),
            },
            registry: registry.clone(),
            events: events.clone(),
            api_ca: ApiCa(api_tls.as_ref().and_then(|tls| tls.ca_pem().map(Arc::from))),
        };
        let cluster_port = ClusterPort {
            node_id,
            raft: raft.clone(),
            log,
            contacts,
            ha: ha.clone(),
            data: data.clone(),
            secrets: Arc::new(ClusterSecrets {
                current: secret_cluster,
                previous: settings.secret_cluster_previous.clone(),
            }),
            snapshot_receipt: Default::default(),
            abstention: abstention.clone(),
            follower_append_seconds: metrics::histogram!(write_stages::FOLLOWER_APPEND),
        };

        let (stop, stopped) = watch::channel(false);
        let until_stopped = |mut rx: watch::Receiver<bool>| async move {
            let _ = rx.wait_for(|stop| *stop).await;
        };
        // The observers end with the server, not with the watches they follow.
        let observe = |work: std::pin::Pin<Box<dyn Future<Output = ()> + Send>>| {
            let stopping = until_stopped(stopped.clone());
            tokio::spawn(async move {
                tokio::select! {
                    () = work => {}
                    () = stopping => {}
                }
            })
        };
        let mut tasks = vec![
            observe(Box::pin(events::follow(
                events.clone(),
                ha.watch(),
                ActiveView::clone,
                events::active_events,
            ))),
            observe(Box::pin(events::follow(
                events,
                raft.metrics(),
                raft_facts,
                events::raft_events,
            ))),
            observe(Box::pin(keep_gauges(
                raft.metrics(),
                server_metrics::raft_gauges,
            ))),
            observe(Box::pin(keep_gauges(ha.watch(), server_metrics::ha_gauges))),
            tokio::spawn(sample_storage(storage, state_db, stopped.clone())),
            observe(Box::pin(vote_once_caught_up(
                raft.clone(),
                abstention.clone(),
            ))),
            observe(Box::pin(watch_for_removal(
                node_id,
                raft.clone(),
                cluster.clone(),
                health.clone(),
                removal,
            ))),
        ];
        let api_app = crate::api::router(api_state, settings.max_body_bytes);
        let cluster_app = crate::cluster_api::router(cluster_port, api_app.clone());
        let stop_cluster = until_stopped(stopped.clone());
        let listener = TlsListener::new(cluster_listener, tls.acceptor());
        tasks.push(tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, cluster_app)
                .with_graceful_shutdown(stop_cluster)
                .await
            {
                tracing::error!(error = %e, "cluster listener failed");
            }
        }));
        let stop_api = until_stopped(stopped.clone());
        let serve_api = match &api_tls {
            Some(tls) => {
                let listener = TlsListener::new(api_listener, tls.acceptor());
                let serve = axum::serve(listener, api_app).with_graceful_shutdown(stop_api);
                Box::pin(serve.into_future()) as ServeFuture
            }
            None => {
                let serve = axum::serve(api_listener, api_app).with_graceful_shutdown(stop_api);
                Box::pin(serve.into_future())
            }
        };
        tasks.push(tokio::spawn(async move {
            if let Err(e) = serve_api.await {
                tracing::error!(error = %e, "API listener failed");
            }
        }));
        let clustered = settings.nodes.0.len() > 1 || settings.join.is_some();
        tracing::info!(
            node_id, api = %this.api_addr, cluster = %this.cluster_addr,
            api_scheme = api_tls_choice.scheme(),
            data_dir = %data_dir.display(), nodes = settings.nodes.0.len(),
            "tandem server started"
        );
        tracing::info!(
            storage = "raft",
            ha_storage = ha.name(),
            ha_available = clustered,
            "backends in use{}",
            if clustered {
                ""
            } else {
                " (a single node: no standby can take over)"
            }
        );
        let advertised = settings.advertised();
        let advertised = Advertised {
            node_id,
            cluster_addr: advertised.cluster_addr,
            api_addr: advertised.api_addr,
        };
        match (&settings.join, fresh) {
            (Some(join), true) => tasks.push(tokio::spawn(join_cluster(
                raft.clone(),
                join.clone(),
                advertised.clone(),
                secret_api_for_join,
                stopped.clone(),
            ))),
            (None, true) => tasks.push(tokio::spawn(form_cluster(
                raft.clone(),
                cluster.clone(),
                settings.clone(),
                abstention.clone(),
                stopped.clone(),
            ))),
            (_, false) => {
                let stored =
                    MembershipView::from_stored(&raft.metrics().borrow().membership_config, true);
                let configured = settings.nodes.ids().into_iter().collect();
                if let Some(drift) = node_list_drift(&configured, &stored) {
                    tracing::warn!("{drift}");
                }
            }
        }
        tasks.push(tokio::spawn(advertise(
            active.clone(),
            data.clone(),
            advertised,
            stopped.clone(),
        )));
        tasks.push(tokio::spawn(rotation_loop(keys.clone(), stopped.clone())));
        tasks.push(tokio::spawn(stall_watch::watch_for_stalls(
            2 * settings.heartbeat.0,
        )));
        tasks.push(tokio::spawn(peer_refresh_loop(
            keys.clone(),
            stopped.clone(),
        )));
        tasks.push(tokio::spawn(hold_active_role(
            ha.clone(),
            keys,
            registry,
            stopped.clone(),
        )));
        let mut certificate_tasks = vec![tls.spawn_rotation()];
        certificate_tasks.extend(api_tls.map(|tls| tls.spawn_refresh(API_CERT_FILES_CHECK)));
        Ok(RunningServer {
            node_id,
            raft,
            ha,
            stop,
            tasks,
            certificate_tasks,
        })
    }

    /// Resolves when Raft has stopped on its own (a storage failure, say), with the reason. The
    /// node can then serve nothing; the process should exit so a supervisor restarts it.
    pub async fn raft_failed(&self) -> String {
        let mut metrics = self.raft.metrics();
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
        if self.ha.view().is_self && self.ha.ha_available() {
            match self.ha.step_down().await {
                Ok(()) => tracing::info!("handed the active role over before stopping"),
                Err(e) => {
                    tracing::warn!(error = %e, "could not hand the active role over; stopping anyway")
                }
            }
        }
        let _ = self.stop.send(true);
        for task in &self.certificate_tasks {
            task.abort();
        }
        for task in self.tasks {
            let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
        }
        if let Err(e) = self.raft.shutdown().await {
            tracing::warn!(error = %e, "Raft did not stop cleanly");
        }
        tracing::info!(node_id = self.node_id, "tandem server stopped");
    }
}

fn key_policy(settings: &Settings) -> KeyPolicy {
    KeyPolicy {
        instance_id: settings.instance_id(),
        algorithm: settings.key_algorithm,
        key_duration: settings.key_duration.0,
        token_duration: settings.token_duration.0,
        token_issuer: settings.token_issuer.clone(),
        key_peers: settings.key_peers.0.clone(),
        key_peers_refresh: settings.key_peers_refresh.0,
        key_peers_timeout: settings.key_peers_timeout.0,
        key_arrival: 2 * settings.heartbeat.0 + Duration::from_millis(50),
        request_timeout: settings.request_timeout.0,
    }
}

/// On a node that has never been part of a cluster: if a peer already belongs to one, wait to
/// be contacted by its leader (this node is in its membership, so it is sent the log or a
/// snapshot). Otherwise propose the configured membership; every fresh node proposes the same
/// one, which Raft accepts as one.
async fn form_cluster(
    raft: Raft,
    cluster: ClusterClient,
    settings: Settings,
    abstention: VoteAbstention,
    mut stopped: watch::Receiver<bool>,
) {
    let members: BTreeMap<u64, ClusterNode> = settings
        .nodes
        .0
        .iter()
        .map(|n| {
            (
                n.id,
                ClusterNode {
                    cluster_addr: n.cluster_addr.clone(),
                    api_addr: n.api_addr.clone(),
                },
            )
        })
        .collect();
    let peers: Vec<ClusterNode> = members
        .iter()
        .filter(|(id, _)| **id != settings.node_id)
        .map(|(_, n)| n.clone())
        .collect();
    // Give peers that start at about the same time a few seconds to answer.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
    loop {
        let mut answered = 0;
        for peer in &peers {
            let Some(probe) = cluster
                .probe(&peer.cluster_addr, Duration::from_millis(500))
                .await
            else {
                continue;
            };
            answered += 1;
            if has_history(&probe) {
                // This node may be one whose data was lost: it waits to catch up before it votes.
                tracing::info!(
                    peer = probe.node_id,
                    "joining the existing cluster; waiting for its leader, and voting only once caught up"
                );
                return;
            }
            if probe.initialized {
                // Formed moments ago by a peer, and no leader yet: every member's vote counts.
                abstention.end();
                tracing::info!(
                    peer = probe.node_id,
                    "joining the cluster a peer is forming; waiting for its leader"
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
    abstention.end();
    match raft.initialize(members).await {
        Ok(()) => tracing::info!(node_id = settings.node_id, "formed the cluster"),
        // Another node's proposal reached this one first: it is already a member.
        Err(e) => tracing::info!(reason = %e, "cluster already forming; not proposing membership"),
    }
}

/// Ends this node's abstention from elections (see [`VoteAbstention`]) once it has caught up
/// with a leader.
async fn vote_once_caught_up(raft: Raft, abstention: VoteAbstention) {
    let mut metrics = raft.metrics();
    while abstention.is_abstaining() {
        if caught_up(&metrics.borrow()) {
            abstention.end();
            tracing::info!("caught up with the cluster's leader; this node votes again");
            return;
        }
        if metrics.changed().await.is_err() {
            return;
        }
    }
}

/// How often a joining server asks again to be added, while it is not a voter yet.
const JOIN_RETRY: Duration = Duration::from_secs(2);

/// On the first start of a server given `join`: asks the cluster at that address to add it
/// (as `tandem cluster add` does, with the API secret), again until it votes. The active node
/// adds it as a learner, sends it the log or a snapshot, then makes it a voter.
async fn join_cluster(
    raft: Raft,
    join: String,
    this: Advertised,
    secret_api: String,
    mut stopped: watch::Receiver<bool>,
) {
    let client = match tandem_client::Client::new(std::slice::from_ref(&join), Some(secret_api)) {
        Ok(client) => client,
        Err(e) => {
            tracing::error!(error = %e, %join, "cannot ask to join the cluster");
            return;
        }
    };
    let path = format!("/v1/cluster/members/{}", this.node_id);
    let body = serde_json::json!({"raft_addr": this.cluster_addr, "api_addr": this.api_addr});
    let is_voter = |raft: &Raft| {
        raft.metrics()
            .borrow()
            .membership_config
            .membership()
            .voter_ids()
            .any(|id| id == this.node_id)
    };
    let mut last_problem = String::new();
    tracing::info!(%join, "asking the cluster to add this server");
    while !is_voter(&raft) {
        let asked = client
            .send(
                tandem_client::Method::PUT,
                &path,
                Some(body.to_string().into_bytes()),
                "application/json",
            )
            .await;
        let problem = match asked.map(|reply| reply.error_for_status()) {
            Ok(Ok(_)) => {
                tracing::info!(%join, "added to the cluster");
                return;
            }
            Ok(Err(e)) => e.to_string(),
            Err(e) => e.to_string(),
        };
        // Said once, not on every attempt.
        if problem != last_problem {
            tracing::warn!(%join, error = %problem, "not added to the cluster yet; asking again");
            last_problem = problem;
        }
        tokio::select! {
            _ = tokio::time::sleep(JOIN_RETRY) => {}
            _ = stopped.changed() => return,
        }
    }
}

/// Runs for the active role through the HA backend, and while this node holds it carries out
/// the active node's duties; when the role is lost they stop, and the node runs for it again.
async fn hold_active_role(
    ha: Arc<dyn HaBackend>,
    keys: Keys,
    registry: Registry,
    mut stopped: watch::Receiver<bool>,
) {
    loop {
        let fencing_token = tokio::select! {
            acquired = ha.acquire() => match acquired {
                Ok(token) => token,
                Err(e) => {
                    tracing::error!(error = %e, "the HA backend stopped; this node will not become active");
                    return;
                }
            },
            _ = stopped.changed() => return,
        };
        tracing::info!(fencing_token, "this node holds the active role");
        let active_since_ms = now_ms();
        let mut view = ha.watch();
        let lost = view.wait_for(|v| !v.is_self || v.fencing_token != fencing_token);
        tokio::select! {
            _ = active_duties(&keys) => {}
            _ = registry.liveness_duty(active_since_ms) => {}
            _ = lost => tracing::info!(fencing_token, "this node no longer holds the active role"),
            _ = stopped.changed() => return,
        }
    }
}

/// What only the active node does, for as long as it holds the role: propose an `Expire`
/// command when a key, cache entry or lease is due (so every replica removes it at the same
/// point in the log), and retire the signing keys of servers that left the cluster.
async fn active_duties(keys: &Keys) {
    let ticker = |period| {
        let mut every = tokio::time::interval(period);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        every
    };
    let mut expiry_check = ticker(EXPIRY_CHECK);
    let mut departed_check = ticker(DEPARTED_KEYS_CHECK);
    let mut last_error = String::new();
    loop {
        tokio::select! {
            _ = expiry_check.tick() => expire_due(&keys.data).await,
            _ = departed_check.tick() => match retire_departed(keys).await {
                Ok(()) => last_error.clear(),
                // Said once, not every check.
                Err(e) if e.message != last_error => {
                    tracing::info!(error = %e.message, "departed servers' keys not retired yet; retrying");
                    last_error = e.message;
                }
                Err(_) => {}
            },
        }
    }
}

async fn expire_due(data: &Replicated) {
    let due = match data.read(|reads| Ok(reads.next_expiry()?)).await {
        Ok(Some(at)) => at <= now_ms(),
        Ok(None) => false,
        Err(e) => {
            tracing::warn!(error = %e.message, "cannot read the next expiry");
            false
        }
    };
    if due {
        if let Err(e) = data.propose(Command::Expire).await {
            tracing::debug!(error = %e.message, "expiry not proposed");
        }
    }
}

/// Publishes this node's advertised addresses (`api_addr`, `cluster_addr`, or its node-list line
/// when they are unset) into the cluster membership, so redirects and peers use them and
/// removing a setting takes its address back. The active node records them; this node asks it
/// through the channel to the active node.
async fn advertise(
    active: ActiveChannel,
    data: Replicated,
    wanted: Advertised,
    mut stopped: watch::Receiver<bool>,
) {
    loop {
        let recorded = data.recorded_addresses(wanted.node_id);
        if recorded == Some((wanted.cluster_addr.clone(), wanted.api_addr.clone())) {
            tracing::info!(api = %wanted.api_addr, cluster = %wanted.cluster_addr, "advertised addresses published");
            return;
        }
        if let Err(e) = active.advertise(wanted.clone()).await {
            tracing::debug!(error = %e.message, "advertised addresses not published yet");
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = stopped.changed() => return,
        }
    }
}

/// What of Raft's metrics the events feed follows.
fn raft_facts(metrics: &openraft::RaftMetrics<NodeId, ClusterNode>) -> RaftFacts {
    let membership = metrics.membership_config.membership();
    RaftFacts {
        term: metrics.current_term,
        leader: metrics.current_leader,
        voters: membership.voter_ids().collect(),
        learners: membership.learner_ids().collect(),
        snapshot_index: metrics.snapshot.map(|id| id.index),
    }
}
