//! The agent's part in the mesh: its TLS identity from the stored credential, the runtime, and
//! the ingresses (SOCKS5, port-forwards) that open their connections through it.

use std::collections::BTreeSet;
use std::sync::{Arc, RwLock};

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use tandem_mesh::ingress::{serve_forward, serve_socks5, Ingress, IngressLimits, Socks5Auth};
use tandem_mesh::runtime::MeshRuntime;
use tandem_mesh::{AgentId, MeshDialer};
use tandem_tls::{AgentTls, RevocationCheck};

use crate::credential::StoredCredential;
use crate::settings::AgentSettings;
use crate::AgentError;

/// The agent names whose credentials are revoked, asked in every mesh handshake. Empty for
/// now: nothing tells the agent of revocations yet. The hook for the registry's list is
/// [`RevokedAgents::replace`]; a peer named in it is refused from its next handshake on.
#[derive(Debug, Default)]
pub struct RevokedAgents {
    names: RwLock<BTreeSet<String>>,
}

impl RevokedAgents {
    /// Replaces the revoked names (with the registry's list, once the reporter carries it).
    #[allow(dead_code)]
    pub fn replace(&self, names: BTreeSet<String>) {
        *self.names.write().unwrap_or_else(|e| e.into_inner()) = names;
    }
}

impl RevocationCheck for RevokedAgents {
    fn is_revoked(&self, agent_name: &str) -> bool {
        self.names
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .contains(agent_name)
    }
}

/// The running mesh: the runtime and the ingress listeners. Dropping it stops both.
pub struct MeshPart {
    pub runtime: Arc<MeshRuntime>,
    _ingresses: Vec<Ingress>,
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
        self.runtime.shutdown();
    }
}

/// Starts the mesh when `--mesh-listen` is given: the runtime, then SOCKS5 and the forwards.
pub async fn start(
    settings: &AgentSettings,
    stored: &StoredCredential,
    revoked: Arc<RevokedAgents>,
) -> Result<Option<MeshPart>, AgentError> {
    let Some(config) = settings
        .mesh_config()
        .map_err(|e| AgentError::Settings(e.0))?
    else {
        return Ok(None);
    };
    let me = AgentId::new(stored.name.clone())
        .map_err(|e| AgentError::Credential(format!("the credential's agent name: {e}")))?;
    let tls = agent_tls(stored, revoked)?;
    let runtime = MeshRuntime::start(config, tls, me).map_err(|e| match e {
        tandem_mesh::runtime::MeshError::Endpoint(e) => AgentError::Listen(e.to_string()),
        other => AgentError::Settings(other.to_string()),
    })?;
    let runtime = Arc::new(runtime);
    let dialer: Arc<dyn MeshDialer> = runtime.clone();
    let mut ingresses = Vec::new();
    if let Some(listen) = settings.socks5_listen {
        let listener = bind(listen, "--socks5-listen").await?;
        tracing::info!(%listen, "SOCKS5 into the mesh");
        ingresses.push(serve_socks5(
            listener,
            dialer.clone(),
            socks5_auth(settings),
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
    Ok(Some(MeshPart {
        runtime,
        _ingresses: ingresses,
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

/// No authentication, or the configured user name and password (compared in constant time).
fn socks5_auth(settings: &AgentSettings) -> Socks5Auth {
    match (&settings.socks5_username, &settings.socks5_password) {
        (Some(user), Some(password)) => {
            let (user, password) = (user.clone(), password.clone());
            Socks5Auth::password(move |given_user, given_password| {
                // Both compared whatever the first answers, so timing tells nothing.
                let user_matches = same_bytes(given_user.as_bytes(), user.as_bytes());
                let password_matches = same_bytes(given_password.as_bytes(), password.as_bytes());
                user_matches & password_matches
            })
        }
        _ => Socks5Auth::NoAuth,
    }
}

fn same_bytes(given: &[u8], expected: &[u8]) -> bool {
    given.len() == expected.len()
        && given
            .iter()
            .zip(expected)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}
