//! The agent's part in the mesh: its TLS identity from the stored credential, the runtime, and
//! the ingresses (SOCKS5, port-forwards) that open their connections through it.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use tandem_client::Client;
use tandem_mesh::ingress::{serve_forward, serve_socks5, Ingress, IngressLimits, Socks5Auth};
use tandem_mesh::path::PathState;
use tandem_mesh::runtime::MeshRuntime;
use tandem_mesh::{AgentId, MeshDialer, Restrictions};
use tandem_registry::{
    MeshDirectory, MeshPeer, MeshRoute, MeshSummary, RevokedNames, MAX_MESH_PATH_LEN,
    MAX_MESH_PEERS, MAX_MESH_ROUTES,
};
use tandem_tls::{AgentTls, RevocationCheck};

use crate::credential::StoredCredential;
use crate::settings::AgentSettings;
use crate::socks5_tokens::TokenKeys;
use crate::{upstream, AgentError};

/// How often the agent asks the servers for its mesh directory while its mesh runs.
pub const DIRECTORY_EVERY: Duration = Duration::from_secs(2);

/// The agent names whose credentials are revoked, asked in every mesh handshake; each mesh
/// directory from the servers (`GET /v1/agent/mesh`) replaces it.
#[derive(Debug, Default)]
pub struct RevokedAgents {
    names: RwLock<BTreeSet<String>>,
}

impl RevokedAgents {
    /// Replaces the revoked names; a peer named in them is refused from its next handshake on.
    pub fn replace(&self, names: BTreeSet<String>) {
        *self.names.write().unwrap_or_else(|e| e.into_inner()) = names;
    }
}

/// How the agent follows the servers' mesh directory.
pub struct DirectoryFollower {
    pub client: Arc<Client>,
    pub revoked: Arc<RevokedAgents>,
    pub runtime: Arc<MeshRuntime>,
    /// This agent's mesh.
    pub mesh: String,
    /// `--mesh-peer auto`: dial the peers the directory lists.
    pub auto: bool,
    /// The restrictions last applied, so a change is logged once.
    pub announce: BTreeMap<String, Vec<String>>,
}

impl DirectoryFollower {
    /// Asks for the directory every [`DIRECTORY_EVERY`] and applies each answer, until
    /// aborted. While no server answers, the last directory holds.
    pub async fn run(mut self) {
        let mut every = tokio::time::interval(DIRECTORY_EVERY);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_error = None;
        loop {
            every.tick().await;
            match fetch_directory(&self.client, &self.mesh).await {
                Ok(directory) => {
                    last_error = None;
                    self.apply(&directory);
                }
                Err(why) => {
                    if last_error.as_ref() != Some(&why) {
                        tracing::warn!(
                            "the mesh directory is not known now: {why}; keeping the last one"
                        );
                        last_error = Some(why);
                    }
                }
            }
        }
    }

    /// Revocations first (the handshake check, so that a peer cut off cannot come straight
    /// back), then who may announce what, then the peers to dial.
    pub fn apply(&mut self, directory: &MeshDirectory) {
        self.revoked
            .replace(directory.revoked.iter().cloned().collect());
        let cut = self.runtime.disconnect(
            |peer| self.revoked.is_revoked(peer.as_str()),
            "its credential was revoked",
        );
        for peer in cut {
            tracing::warn!(%peer, "mesh peer cut off: its credential was revoked");
        }
        if directory.announce != self.announce {
            self.runtime.restrict(restrictions(&directory.announce));
            self.announce = directory.announce.clone();
        }
        if self.auto {
            // The servers leave revoked agents out of the peers.
            self.runtime
                .set_learned_peers(directory.peers.iter().map(|peer| peer.address.clone()));
        }
    }
}

/// The policy made of the servers' lists; an entry this agent cannot read is logged.
pub fn restrictions(lists: &BTreeMap<String, Vec<String>>) -> Restrictions {
    let (restrictions, problems) = Restrictions::from_lists(lists);
    for problem in problems {
        tracing::warn!("mesh announce {problem}");
    }
    restrictions
}

/// The servers' mesh directory for `mesh`. A server older than the directory answers 404; its
/// list of revoked agents stands in, so that revocations still cut peers off.
pub async fn fetch_directory(client: &Client, mesh: &str) -> Result<MeshDirectory, String> {
    let reply = client
        .get(&format!("/v1/agent/mesh?mesh={mesh}"))
        .await
        .map_err(|e| e.to_string())?;
    if reply.status == reqwest::StatusCode::NOT_FOUND {
        let reply = client
            .get("/v1/agent/revoked")
            .await
            .and_then(|reply| reply.error_for_status())
            .map_err(|e| e.to_string())?;
        let list: RevokedNames = serde_json::from_slice(&reply.body)
            .map_err(|e| format!("the servers' answer is not a list of revoked agents: {e}"))?;
        return Ok(MeshDirectory {
            revoked: list.agents,
            ..MeshDirectory::default()
        });
    }
    let reply = reply.error_for_status().map_err(|e| e.to_string())?;
    serde_json::from_slice(&reply.body)
        .map_err(|e| format!("the servers' answer is not a mesh directory: {e}"))
}

/// The mesh in brief for the heartbeat: peers and paths as `/healthz` shows them, cut to what
/// the servers take.
pub fn summary(runtime: &MeshRuntime) -> MeshSummary {
    let status = runtime.status();
    let peers = status
        .peers
        .into_iter()
        .take(MAX_MESH_PEERS)
        .map(|peer| MeshPeer {
            id: peer.id.map(|id| id.to_string()),
            address: peer.address,
            rtt_ms: peer.rtt_ms.filter(|rtt| rtt.is_finite() && *rtt >= 0.0),
            state: peer.state.to_string(),
        })
        .collect();
    let routes = status
        .routes
        .into_iter()
        .take(MAX_MESH_ROUTES)
        .map(|view| MeshRoute {
            dest: view.route.dest.to_string(),
            origin: view.route.origin.to_string(),
            next_hop: view.route.next_hop.to_string(),
            path: view
                .route
                .path
                .iter()
                .take(MAX_MESH_PATH_LEN)
                .map(ToString::to_string)
                .collect(),
            metric: view.route.metric,
            weight: view.route.weight,
            state: match view.state {
                PathState::Selected => "selected",
                PathState::Backup => "backup",
            }
            .to_string(),
        })
        .collect();
    let mut summary = MeshSummary {
        peers,
        routes,
        route_changes: status.route_changes,
        bytes_sent: status.traffic.sent,
        bytes_received: status.traffic.received,
    };
    if summary.check().is_err() {
        // Rare (a domain pattern past the servers' field limit): leave out what they would
        // refuse rather than lose the whole summary.
        let fits = |peers: Vec<MeshPeer>, routes: Vec<MeshRoute>| {
            MeshSummary {
                peers,
                routes,
                ..MeshSummary::default()
            }
            .check()
            .is_ok()
        };
        summary
            .routes
            .retain(|route| fits(vec![], vec![route.clone()]));
        summary
            .peers
            .retain(|peer| fits(vec![peer.clone()], vec![]));
    }
    summary
}

impl RevocationCheck for RevokedAgents {
    fn is_revoked(&self, agent_name: &str) -> bool {
        self.names
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .contains(agent_name)
    }
}

/// The running mesh: the runtime, the ingress listeners and the exit's upstream probe.
/// Dropping it stops them all.
pub struct MeshPart {
    pub runtime: Arc<MeshRuntime>,
    /// The key set SOCKS5 tokens are verified with (`--socks5-tokens`); it needs the client to
    /// the servers, which comes later.
    pub token_keys: Option<Arc<TokenKeys>>,
    _ingresses: Vec<Ingress>,
    probe: Option<tokio::task::JoinHandle<()>>,
}

/// The agent's TLS identity on the mesh, from its enrolment credential.
pub fn agent_tls(
    stored: &StoredCredential,
    revoked: Arc<dyn RevocationCheck>,
) -> Result<AgentTls, AgentError> {
    let key = STANDARD
        .decode(stored.private_key_pkcs8.trim())
        .map_err(|e| AgentError::Credential(format!("the credential's private key is not base64 ({e}); remove the credential and enrol again with a new --join-token")))?;
    AgentTls::new(
        &stored.certificate_pem,
        &key,
        &stored.ca_certificate_pem,
        revoked,
    )
    .map_err(|e| AgentError::Credential(format!("the mesh cannot use the agent credential: {e}")))
}

impl Drop for MeshPart {
    /// The runtime may be shared (the local API shows it); it stops with the agent all the same.
    fn drop(&mut self) {
        if let Some(probe) = &self.probe {
            probe.abort();
        }
        self.runtime.shutdown();
    }
}

/// Starts the mesh when `--mesh-listen` is given: the runtime, under the restrictions of the
/// servers' mesh directory as far as it is known, then SOCKS5 and the forwards.
pub async fn start(
    settings: &AgentSettings,
    stored: &StoredCredential,
    revoked: Arc<RevokedAgents>,
    directory: Option<&MeshDirectory>,
) -> Result<Option<MeshPart>, AgentError> {
    let Some(mut config) = settings
        .mesh_config()
        .map_err(|e| AgentError::Settings(e.0))?
    else {
        return Ok(None);
    };
    if let Some(directory) = directory {
        revoked.replace(directory.revoked.iter().cloned().collect());
        config.restrictions = restrictions(&directory.announce);
    }
    let me = AgentId::new(stored.name.clone())
        .map_err(|e| AgentError::Credential(format!("the credential's agent name: {e}")))?;
    let tls = agent_tls(stored, revoked)?;
    let runtime = MeshRuntime::start(config, tls, me).map_err(|e| match e {
        tandem_mesh::runtime::MeshError::Endpoint(e) => AgentError::Listen(e.to_string()),
        other => AgentError::Settings(other.to_string()),
    })?;
    let runtime = Arc::new(runtime);
    let dialer: Arc<dyn MeshDialer> = runtime.clone();
    let token_keys = settings
        .socks5_tokens
        .then(|| Arc::new(TokenKeys::new(&stored.name, &stored.pool)));
    let mut ingresses = Vec::new();
    if let Some(listen) = settings.socks5_listen {
        let listener = bind(listen, "--socks5-listen").await?;
        tracing::info!(%listen, tokens = token_keys.is_some(), "SOCKS5 into the mesh");
        ingresses.push(serve_socks5(
            listener,
            dialer.clone(),
            socks5_auth(settings, token_keys.clone()),
            IngressLimits::default(),
        ));
    }
    for forward in &settings.forward {
        let listener = bind(forward.listen, "--forward").await?;
        tracing::info!(listen = %forward.listen, to = %forward.to, "port-forward into the mesh");
        ingresses.push(serve_forward(
            listener,
            forward.to.clone(),
            dialer.clone(),
            IngressLimits::default(),
        ));
    }
    let probe = settings
        .exit_probe()
        .map(|probe| upstream::spawn_probe(probe, runtime.clone()));
    Ok(Some(MeshPart {
        runtime,
        token_keys,
        _ingresses: ingresses,
        probe,
    }))
}

async fn bind(
    listen: std::net::SocketAddr,
    flag: &str,
) -> Result<tokio::net::TcpListener, AgentError> {
    tokio::net::TcpListener::bind(listen).await.map_err(|e| {
        AgentError::Listen(format!(
            "cannot listen on {listen} for {flag}: {e}; choose another address"
        ))
    })
}

/// No authentication, or the configured user name and password (compared in constant time),
/// or a token, or either.
fn socks5_auth(settings: &AgentSettings, tokens: Option<Arc<TokenKeys>>) -> Socks5Auth {
    let pair = match (&settings.socks5_username, &settings.socks5_password) {
        (Some(user), Some(password)) => Some((user.clone(), password.clone())),
        _ => None,
    };
    if pair.is_none() && tokens.is_none() {
        return Socks5Auth::NoAuth;
    }
    let pair = Arc::new(pair);
    Socks5Auth::password_async(Arc::new(move |given_user: &str, given_password: &str| {
        let fixed = pair.as_ref().as_ref().is_some_and(|(user, password)| {
            // Both compared whatever the first answers, so timing tells nothing.
            let user_matches = same_bytes(given_user.as_bytes(), user.as_bytes());
            let password_matches = same_bytes(given_password.as_bytes(), password.as_bytes());
            user_matches & password_matches
        });
        let tokens = tokens.clone().filter(|_| !fixed);
        let (user, token) = (given_user.to_owned(), given_password.to_owned());
        Box::pin(async move {
            match tokens {
                Some(tokens) => tokens.accepts(&user, &token).await,
                None => fixed,
            }
        })
    }))
}

fn same_bytes(given: &[u8], expected: &[u8]) -> bool {
    given.len() == expected.len()
        && given
            .iter()
            .zip(expected)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}
