//! The agent process (`tandem agent`): enrols with a join token on its first start, registers
//! with the servers, runs its health checks, reports health and load every second and at once
//! when a check changes, follows the servers' list of themselves, and serves its own `/health`.
//! With `--mesh-listen` it also joins the mesh with its credential: it peers, relays, exits to
//! the routes it advertises, and takes SOCKS5 and port-forward connections in.
//! On SIGTERM or SIGINT it drains, deregisters and exits.
#![forbid(unsafe_code)]

mod checks;
mod credential;
mod load;
mod local_api;
mod mesh;
mod open_files;
mod reporter;
mod settings;
mod socks5_tokens;
mod status;
mod upstream;

use std::sync::Arc;
use std::time::Duration;

use tandem_client::Client;
use tandem_keys::{SigningAlgorithm, SigningKey};
use tandem_registry::Enrollment;
use tokio::task::JoinHandle;

pub use settings::{AgentArgs, AgentSettings, CheckSpec, Label, MeshPeer};
pub use tandem_settings::Setting;

use crate::checks::CheckBoard;
use crate::credential::{Assertions, StoredCredential};
use crate::load::LoadSource;
use crate::reporter::Reporter;
use crate::status::{AgentStatus, Shared};

/// Why the agent stopped or could not start.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// The settings make a start impossible.
    #[error("{0}")]
    Settings(String),
    /// The servers refused the join token.
    #[error("enrolment refused: {0}")]
    Enrolment(String),
    /// The servers refuse this agent's credential.
    #[error("{0}")]
    Revoked(String),
    /// The stored credential cannot be read, used or written.
    #[error("{0}")]
    Credential(String),
    /// The agent's own HTTP endpoint cannot listen.
    #[error("{0}")]
    Listen(String),
    /// `tandem agent drain` could not drain the local agent.
    #[error("{0}")]
    Drain(String),
}

impl AgentError {
    /// The process's exit code: 2 for settings that make a start impossible, 1 otherwise.
    pub fn exit_code(&self) -> u8 {
        match self {
            AgentError::Settings(_) => 2,
            _ => 1,
        }
    }
}

/// How long each farewell (drain, then deregister) may take on shutdown.
const FAREWELL_DEADLINE: Duration = Duration::from_secs(3);
/// How long a call to the servers keeps trying other servers before the reporter backs off.
const CALL_DEADLINE: Duration = Duration::from_secs(3);
/// How long one server may take to answer one call before the next one is tried.
const CALL_TIMEOUT: Duration = Duration::from_secs(2);

/// Runs the agent until SIGTERM or SIGINT (then it drains, deregisters and answers `Ok`), or
/// until it cannot go on.
pub async fn run(args: AgentArgs) -> Result<(), AgentError> {
    let settings = AgentSettings::load(&args).map_err(|e| AgentError::Settings(e.0))?;
    run_with(settings).await
}

/// Asks the agent whose local endpoint listens on `health_listen` to drain (`tandem agent
/// drain`): the servers pick it no more, and it keeps running until it is stopped.
pub async fn drain_local(health_listen: &str) -> Result<(), AgentError> {
    let url = format!("http://{}/drain", health_listen.trim());
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(15))
        .build()
        .map_err(|e| AgentError::Drain(format!("cannot build an HTTP client: {e}")))?;
    let response = http.post(&url).send().await.map_err(|e| {
        AgentError::Drain(format!(
            "no agent answers on {health_listen} ({e}); is `tandem agent` running with --health-listen {health_listen}?"
        ))
    })?;
    let status = response.status();
    if status.is_success() {
        return Ok(());
    }
    let body = response.text().await.unwrap_or_default();
    let message = serde_json::from_str::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v["error"]["message"].as_str().map(str::to_string))
        .unwrap_or(body);
    Err(AgentError::Drain(format!(
        "the agent could not drain (HTTP {}): {message}",
        status.as_u16()
    )))
}

/// Runs the agent with settings already loaded (see [`run`]).
pub async fn run_with(settings: AgentSettings) -> Result<(), AgentError> {
    let data_dir = settings.data_dir.clone();
    credential::ensure_data_dir(&data_dir).map_err(AgentError::Credential)?;
    let stored = credential::load(&data_dir).map_err(AgentError::Credential)?;
    let cred_path = credential::credential_path(&data_dir);
    match &stored {
        Some(stored) => stored
            .check_matches(settings.name(), settings.pool.as_deref(), &cred_path)
            .map_err(AgentError::Settings)?,
        None if settings.join_token.is_none() => {
            return Err(AgentError::Settings(format!(
                "this agent has not enrolled yet ({} does not exist): give --join-token (or TANDEM_AGENT_JOIN_TOKEN); create one on a server with `tandem agents token create --pool <pool>`",
                cred_path.display()
            )))
        }
        None => {}
    }
    let saved_servers = reporter::load_servers(&data_dir);
    let servers = reporter::merge_servers(&saved_servers, &settings.servers);
    if servers.is_empty() {
        return Err(AgentError::Settings(
            "no servers are known: give --servers host:port,host:port (or TANDEM_AGENT_SERVERS)"
                .into(),
        ));
    }
    let labels = settings.labels().map_err(|e| AgentError::Settings(e.0))?;
    if settings.mesh_listen.is_some() {
        open_files::raise_to_hard_limit();
    }

    let specs = settings.checks();
    let board = Arc::new(CheckBoard::new(&specs));
    let load = LoadSource::new(settings.load_command.clone(), settings.check_timeout.0);
    let status = AgentStatus {
        pool: stored
            .as_ref()
            .map(|s| s.pool.clone())
            .or(settings.pool.clone()),
        enrolled: stored.is_some(),
        servers: servers.clone(),
        ..Default::default()
    };
    let shared = Arc::new(Shared::new(
        settings.name().to_string(),
        status,
        board.clone(),
        load,
        settings.mesh_listen.is_some(),
    ));

    let listener = tokio::net::TcpListener::bind(&settings.health_listen)
        .await
        .map_err(|e| {
            AgentError::Listen(format!(
                "cannot listen on {} for /health: {e}; choose another --health-listen",
                settings.health_listen
            ))
        })?;
    let mut tasks: Vec<JoinHandle<()>> = checks::spawn_checks(&specs, board);
    let app = local_api::router(shared.clone());
    tasks.push(tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!("the local /health endpoint stopped: {e}");
        }
    }));
    tracing::info!(
        name = %shared.name,
        health = %settings.health_listen,
        checks = specs.len(),
        "agent starting"
    );

    let outcome = tokio::select! {
        result = serve(&settings, stored, (servers, saved_servers), labels, shared.clone()) => result,
        () = shutdown_signal() => {
            tracing::info!("stopping: draining and deregistering");
            farewell(&shared).await;
            Ok(())
        }
    };
    for task in tasks {
        task.abort();
    }
    if let Some(mesh) = shared.mesh.get() {
        mesh.shutdown();
    }
    outcome
}

/// Enrols when needed, then reports until the credential is revoked.
async fn serve(
    settings: &AgentSettings,
    stored: Option<StoredCredential>,
    (servers, saved_servers): (Vec<String>, Vec<String>),
    labels: std::collections::BTreeMap<String, String>,
    shared: Arc<Shared>,
) -> Result<(), AgentError> {
    let stored = match stored {
        Some(stored) => stored,
        None => {
            let enrolled = enrol(settings, &servers, &shared).await?;
            let mut status = shared.status();
            status.enrolled = true;
            status.pool = Some(enrolled.pool.clone());
            status.unreachable_since = None;
            status.last_error = None;
            enrolled
        }
    };
    let key = stored.signing_key().map_err(|e| {
        AgentError::Credential(format!(
            "the key in {} cannot be used ({e}); remove the file and enrol again with a new --join-token",
            credential::credential_path(&settings.data_dir).display()
        ))
    })?;
    let assertions = Arc::new(Assertions::new(key, stored.name.clone()));
    let bearer = assertions.clone();
    let client = Client::with_bearer(&servers, Arc::new(move || bearer.bearer()))
        .and_then(|c| c.with_request_timeout(CALL_TIMEOUT))
        .map_err(|e| AgentError::Settings(e.to_string()))?
        .with_deadline(CALL_DEADLINE);
    let client = trusting_the_servers_ca(client, settings)?;
    let client = Arc::new(client);
    let _ = shared.client.set(client.clone());
    // Asked once before the mesh starts, so that it starts under the servers' restrictions
    // (and an exit never advertises what it may not); without an answer it starts without.
    let directory = match settings.mesh_listen {
        Some(_) => match mesh::fetch_directory(&client, settings.mesh_name()).await {
            Ok(directory) => Some(directory),
            Err(why) => {
                tracing::warn!("the mesh starts without the servers' mesh directory: {why}");
                None
            }
        },
        None => None,
    };
    // Kept until the agent stops: dropping it stops the ingresses.
    let revoked = Arc::new(mesh::RevokedAgents::default());
    let mesh_part = mesh::start(settings, &stored, revoked.clone(), directory.as_ref()).await?;
    if let Some(part) = &mesh_part {
        let _ = shared.mesh.set(part.runtime.clone());
    }
    let membership = mesh_part.as_ref().and_then(|part| {
        let port = part.runtime.local_addr().ok()?.port();
        settings.mesh_membership(port)
    });
    let token_keys = mesh_part
        .as_ref()
        .and_then(|part| part.token_keys.clone())
        .map(|keys| {
            keys.set_client(client.clone());
            tokio::spawn(keys.follow())
        });
    let follower = mesh_part.as_ref().map(|part| {
        let mut follower = mesh::DirectoryFollower {
            client: client.clone(),
            revoked,
            runtime: part.runtime.clone(),
            mesh: settings.mesh_name().to_string(),
            auto: settings.mesh_peers_auto(),
            announce: Default::default(),
        };
        if let Some(directory) = &directory {
            follower.apply(directory);
        }
        tokio::spawn(follower.run())
    });
    let outcome = Reporter {
        shared,
        client,
        address: settings.address.clone().unwrap_or_default(),
        mesh: membership,
        labels,
        report_interval: settings.report_interval.0,
        data_dir: settings.data_dir.clone(),
        configured_servers: settings.servers.clone(),
        saved_servers: std::sync::Mutex::new(saved_servers),
    }
    .run()
    .await;
    for task in [follower, token_keys].into_iter().flatten() {
        task.abort();
    }
    drop(mesh_part);
    outcome
}

/// The first start: a new key, traded with the join token for a credential, saved 0600.
async fn enrol(
    settings: &AgentSettings,
    servers: &[String],
    shared: &Shared,
) -> Result<StoredCredential, AgentError> {
    let key = SigningKey::generate(SigningAlgorithm::Es256, "pending".into())
        .map_err(|e| AgentError::Credential(format!("cannot make the agent's key: {e}")))?;
    let public_key = serde_json::to_value(key.public_jwk())
        .map_err(|e| AgentError::Credential(format!("cannot encode the agent's key: {e}")))?;
    let enrollment = Enrollment {
        token: settings.join_token.clone().unwrap_or_default(),
        name: settings.name().to_string(),
        pool: settings.pool.clone(),
        public_key,
    };
    let client = Client::new(servers, None)
        .and_then(|c| c.with_request_timeout(CALL_TIMEOUT))
        .map_err(|e| AgentError::Settings(e.to_string()))?
        .with_deadline(CALL_DEADLINE);
    let client = trusting_the_servers_ca(client, settings)?;
    tracing::info!(name = %enrollment.name, "enrolling with the join token");
    let answer = credential::enrol(&client, &enrollment, shared).await?;
    let stored = StoredCredential::from_enrolment(answer, &key);
    credential::save(&settings.data_dir, &stored).map_err(AgentError::Credential)?;
    tracing::info!(
        name = %stored.name,
        pool = %stored.pool,
        credential = %stored.credential_id,
        "enrolled; later starts use the saved credential"
    );
    Ok(stored)
}

/// `client` reaching the servers over HTTPS with the CA of `ca_file`, when one is given.
fn trusting_the_servers_ca(client: Client, settings: &AgentSettings) -> Result<Client, AgentError> {
    let Some(path) = &settings.ca_file else {
        return Ok(client);
    };
    let pem = std::fs::read(path).map_err(|e| {
        AgentError::Settings(format!("cannot read the CA file {}: {e}", path.display()))
    })?;
    client
        .with_ca_pem(&pem)
        .map_err(|e| AgentError::Settings(format!("{}: {e}", path.display())))
}

/// Waits for SIGTERM or SIGINT.
async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::terminate()) {
        Ok(mut terminate) => {
            tokio::select! {
                _ = terminate.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        Err(e) => {
            tracing::warn!("cannot watch for SIGTERM ({e}); only SIGINT stops the agent cleanly");
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// On the way out: drain, then deregister, each for a short while at most.
async fn farewell(shared: &Shared) {
    let Some(client) = shared.client.get() else {
        return;
    };
    if !shared.status().registered {
        return;
    }
    let empty = serde_json::json!({});
    for path in ["/v1/agent/drain", "/v1/agent/deregister"] {
        let call = client.post_json(path, &empty);
        match tokio::time::timeout(FAREWELL_DEADLINE, call).await {
            Ok(Ok(reply)) if reply.status.is_success() => {
                tracing::info!("{path}: done");
            }
            Ok(Ok(reply)) => {
                let why = reply
                    .error_for_status()
                    .err()
                    .map(|e| e.to_string())
                    .unwrap_or_default();
                tracing::warn!("{path}: {why}");
            }
            Ok(Err(e)) => tracing::warn!("{path}: {e}"),
            Err(_) => tracing::warn!(
                "{path}: no answer within {}",
                tandem_settings::Span(FAREWELL_DEADLINE)
            ),
        }
    }
}
