//! What agents call: enrolment (a join token traded for a credential), and, with that
//! credential, registering, reporting, draining and deregistering themselves. A credential
//! speaks for its own agent only: every handler here acts on the name the credential was issued
//! to, never on a name in the request.

use std::time::SystemTime;

use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Extension;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use rand::RngCore;
use serde_json::json;
use tandem_keys::{public_jwk_from_json, token_key_id, verify_token};
use tandem_registry::{
    check_name, health_of, mesh_peers, state_of, Credential, Enrollment, Heartbeat, MeshDirectory,
    Registration, ReportAnswer, RevokedNames, DEFAULT_MESH,
};
use tandem_store::{AgentRow, Outcome, RegistryCommand};

use crate::error::ApiError;
use crate::extract::Json;
use crate::issued_secret::parse_issued;
use crate::registry::{AgentIdentity, Registry};

/// The longest an agent's assertion may be valid for; agents sign a fresh one every minute.
const MAX_ASSERTION_LIFETIME_SECS: u64 = 600;

fn credential_error(code: &'static str, message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::UNAUTHORIZED, code, message)
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Lets a request through only with a valid assertion of an enrolled, unrevoked agent
/// (`Authorization: Bearer <JWT signed with the agent's key, kid = credential id, sub = name>`).
pub async fn require_agent_credential(
    State(registry): State<Registry>,
    mut request: Request,
    next: Next,
) -> Response {
    let token = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .unwrap_or_default()
        .to_string();
    match identify(&registry, &token) {
        Ok(identity) => {
            request.extensions_mut().insert(identity);
            next.run(request).await
        }
        Err(e) => e.into_response(),
    }
}

/// The error code of an assertion signed with a revoked credential.
pub const CREDENTIAL_REVOKED: &str = "credential_revoked";

/// The enrolled, unrevoked agent whose assertion `token` is.
pub fn identify(registry: &Registry, token: &str) -> Result<AgentIdentity, ApiError> {
    let no_credential = || {
        credential_error(
            "credential_invalid",
            "send `Authorization: Bearer <assertion>` signed with the agent's credential; enrol with a join token first (`tandem agent --join-token ...`)",
        )
    };
    if token.is_empty() {
        return Err(no_credential());
    }
    let now = now_secs();
    if let Some(identity) = registry.verified_before(token, now) {
        return Ok(identity);
    }
    let credential_id = token_key_id(token).ok_or_else(no_credential)?;
    let row = registry
        .data()
        .read_now(|reads| reads.registry_credential(&credential_id))?
        .ok_or_else(|| {
            credential_error(
                "credential_invalid",
                format!("credential {credential_id:?} is not known to this cluster; enrol with a new join token"),
            )
        })?;
    if row.revoked {
        return Err(credential_error(
            CREDENTIAL_REVOKED,
            format!(
                "the credential of agent {:?} was revoked; only a new join token brings it back",
                row.name
            ),
        ));
    }
    let jwk = public_jwk_from_json(&row.public_jwk).map_err(ApiError::internal)?;
    let claims =
        verify_token(token, |kid| (kid == credential_id).then(|| jwk.clone())).map_err(|e| {
            credential_error(
                "credential_invalid",
                format!("agent assertion refused: {e}"),
            )
        })?;
    if claims.get("sub").and_then(|s| s.as_str()) != Some(row.name.as_str()) {
        return Err(credential_error(
            "credential_invalid",
            format!(
                "the assertion's \"sub\" must be the credential's agent, {:?}",
                row.name
            ),
        ));
    }
    let exp = claims.get("exp").and_then(|e| e.as_u64()).unwrap_or(0);
    if exp > now + MAX_ASSERTION_LIFETIME_SECS {
        return Err(credential_error(
            "credential_invalid",
            format!("the assertion is valid for more than {MAX_ASSERTION_LIFETIME_SECS}s; sign a shorter one"),
        ));
    }
    let identity = AgentIdentity {
        name: row.name,
        pool: row.pool,
        credential_id,
    };
    registry.remember_verified(token, &identity, exp);
    Ok(identity)
}

/// `POST /v1/agent/enroll`: checks the join token and the agent's public key, issues the
/// agent's certificate, and records the credential; the token's use is counted in the same
/// replicated step, so two agents can never share a single-use token.
pub async fn enroll(
    State(registry): State<Registry>,
    Json(enrollment): Json<Enrollment>,
) -> Result<axum::Json<Credential>, ApiError> {
    check_name("agent name", &enrollment.name).map_err(ApiError::bad_request)?;
    let invalid_token = || {
        credential_error(
            "join_token_invalid",
            "the join token is not valid; create one with `tandem agents token create --pool <pool>`",
        )
    };
    let (token_id, secret_sha256) = parse_issued(&enrollment.token).ok_or_else(invalid_token)?;
    let pool = registry
        .data()
        .read_now(|reads| reads.join_token_pool(&token_id))?
        .ok_or_else(invalid_token)?;
    if let Some(wanted) = &enrollment.pool {
        if *wanted != pool {
            return Err(ApiError::bad_request(format!(
                "the join token is for pool {pool:?}, but the agent was started with --pool {wanted:?}"
            )));
        }
    }
    let (x, y) = p256_coordinates(&enrollment.public_key)?;
    let credential_id = new_credential_id();
    let jwk = json!({
        "kty": "EC", "crv": "P-256", "alg": "ES256", "use": "sig",
        "kid": credential_id,
        "x": URL_SAFE_NO_PAD.encode(&x), "y": URL_SAFE_NO_PAD.encode(&y),
    });
    let certificate_pem = registry
        .agent_ca()
        .issue(&enrollment.name, &pool, &x, &y, SystemTime::now())
        .map_err(|e| ApiError::bad_request(format!("cannot issue a certificate: {e}")))?;
    let outcome = registry
        .propose(RegistryCommand::Enroll {
            token_id,
            secret_sha256,
            name: enrollment.name.clone(),
            credential_id: credential_id.clone(),
            public_jwk: jwk.to_string(),
            certificate_pem: certificate_pem.clone(),
        })
        .await?;
    // A repeated enrolment (its first answer was lost) gets the credential it already has.
    let (pool, credential_id) = match outcome {
        Outcome::AgentEnrolled {
            pool: enrolled,
            credential_id,
        } => (enrolled, credential_id),
        other => return Err(ApiError::internal(format!("enrolment answered {other:?}"))),
    };
    tracing::info!(agent = %enrollment.name, %pool, credential = %credential_id, "agent enrolled");
    Ok(axum::Json(Credential {
        name: enrollment.name,
        pool,
        credential_id,
        certificate_pem,
        ca_certificate_pem: registry.agent_ca().certificate_pem(),
    }))
}

/// `agent-` and 16 random hex digits: unique without coordination.
fn new_credential_id() -> String {
    let mut bytes = [0u8; 8];
    rand::rng().fill_bytes(&mut bytes);
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("agent-{hex}")
}

/// The x and y of an ES256 public JWK, 32 bytes each.
fn p256_coordinates(jwk: &serde_json::Value) -> Result<(Vec<u8>, Vec<u8>), ApiError> {
    let refuse = |what: &str| {
        ApiError::bad_request(format!(
            "public_key must be an ES256 public JWK ({{\"kty\": \"EC\", \"crv\": \"P-256\", \"x\", \"y\"}}): {what}"
        ))
    };
    if jwk["kty"] != "EC" || jwk["crv"] != "P-256" {
        return Err(refuse("kty must be EC and crv P-256"));
    }
    if jwk.get("d").is_some() {
        return Err(refuse(
            "it holds a private key (\"d\"); send only the public half",
        ));
    }
    let coordinate = |name: &str| -> Result<Vec<u8>, ApiError> {
        let text = jwk[name]
            .as_str()
            .ok_or_else(|| refuse(&format!("{name} is missing")))?;
        let bytes = URL_SAFE_NO_PAD
            .decode(text)
            .map_err(|_| refuse(&format!("{name} is not base64url")))?;
        if bytes.len() != 32 {
            return Err(refuse(&format!("{name} is not 32 bytes")));
        }
        Ok(bytes)
    };
    Ok((coordinate("x")?, coordinate("y")?))
}

/// The answer to every report: the agent's state now, and the servers to talk to (this, the
/// active server, first, so the agent comes here directly instead of through a standby).
fn answer(registry: &Registry, state: tandem_registry::AgentState) -> axum::Json<ReportAnswer> {
    axum::Json(ReportAnswer {
        state,
        servers: registry.servers().to_vec(),
        report_every_ms: registry.report_every().as_millis() as u64,
    })
}

async fn own_row(
    registry: &Registry,
    identity: &AgentIdentity,
) -> Result<Option<AgentRow>, ApiError> {
    registry.agent(&identity.name).await
}

fn state_outcome(outcome: Outcome) -> Result<tandem_registry::AgentState, ApiError> {
    match outcome {
        Outcome::AgentState { state } => Ok(state),
        other => Err(ApiError::internal(format!(
            "the registry answered {other:?}"
        ))),
    }
}

/// `POST /v1/agent/register`: an agent (re)starts and says where it serves.
pub async fn register(
    State(registry): State<Registry>,
    Extension(identity): Extension<AgentIdentity>,
    Json(registration): Json<Registration>,
) -> Result<axum::Json<ReportAnswer>, ApiError> {
    registration.check().map_err(ApiError::bad_request)?;
    let before = own_row(&registry, &identity).await?.map(|row| row.state());
    let Registration {
        address,
        labels,
        version,
        mesh,
        report,
    } = registration;
    let state = state_outcome(
        registry
            .propose(RegistryCommand::Register {
                credential_id: identity.credential_id.clone(),
                name: identity.name.clone(),
                address,
                labels,
                version,
                checks: report.checks.clone(),
            })
            .await?,
    )?;
    // Most restarts keep their mesh: only a change costs a second entry.
    let name = identity.name.clone();
    let stored = registry
        .data()
        .read(move |db| Ok(db.mesh_members()?.into_iter().find(|m| m.name == name)))
        .await?
        .map(|m| (m.mesh, m.address));
    if stored != mesh.as_ref().map(|m| (m.mesh.clone(), m.address.clone())) {
        registry
            .propose(RegistryCommand::MeshJoin {
                credential_id: identity.credential_id.clone(),
                name: identity.name.clone(),
                membership: mesh,
            })
            .await?;
    }
    registry.heard(&identity.name, report.load, report.checks, None);
    registry.note_change(&identity.name, &identity.pool, before, state);
    Ok(answer(&registry, state))
}

/// `POST /v1/agent/report`: a heartbeat. Kept in memory; replicated only when the agent's
/// health or a check's status changed, or the agent comes back from down. The mesh summary it
/// may carry is kept in memory only, like the load.
pub async fn report(
    State(registry): State<Registry>,
    Extension(identity): Extension<AgentIdentity>,
    Json(heartbeat): Json<Heartbeat>,
) -> Result<axum::Json<ReportAnswer>, ApiError> {
    heartbeat.check().map_err(ApiError::bad_request)?;
    let Heartbeat { report, mesh } = heartbeat;
    let row = own_row(&registry, &identity).await?.ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "agent_not_registered",
            format!(
                "agent {:?} is not registered; register first",
                identity.name
            ),
        )
    })?;
    let before = row.state();
    let statuses =
        |checks: &[tandem_registry::CheckReport]| -> Vec<(String, tandem_registry::CheckStatus)> {
            checks.iter().map(|c| (c.name.clone(), c.status)).collect()
        };
    let changed = row.down_since_ms.is_some() || statuses(&row.checks) != statuses(&report.checks);
    let state = if changed {
        state_outcome(
            registry
                .propose(RegistryCommand::Report {
                    credential_id: identity.credential_id.clone(),
                    name: identity.name.clone(),
                    checks: report.checks.clone(),
                })
                .await?,
        )?
    } else {
        state_of(health_of(&report.checks), false, row.draining)
    };
    registry.heard(&identity.name, report.load, report.checks, mesh);
    registry.note_change(&identity.name, &identity.pool, Some(before), state);
    Ok(answer(&registry, state))
}

/// `GET /v1/agent/revoked`: the agents whose credentials are revoked, for meshes to refuse
/// and cut off as peers. Any enrolled, unrevoked agent may ask. Agents of this version ask
/// [`mesh_directory`] instead; this stays for older ones.
pub async fn revoked(
    State(registry): State<Registry>,
) -> Result<axum::Json<RevokedNames>, ApiError> {
    let agents = registry
        .data()
        .read(|db| Ok(db.revoked_agent_names()?))
        .await?;
    Ok(axum::Json(RevokedNames { agents }))
}

#[derive(serde::Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct DirectoryQuery {
    mesh: Option<String>,
}

/// `GET /v1/agent/mesh[?mesh=NAME]`: everything a mesh agent follows, in one answer: the
/// revoked agents, the other agents of its mesh (default `default`) with their mesh
/// addresses, and who may announce what. Any enrolled, unrevoked agent may ask.
pub async fn mesh_directory(
    State(registry): State<Registry>,
    Extension(identity): Extension<AgentIdentity>,
    uri: axum::http::Uri,
) -> Result<axum::Json<MeshDirectory>, ApiError> {
    let query: DirectoryQuery = crate::extract::query_params(&uri)?;
    let mesh = query.mesh.unwrap_or_else(|| DEFAULT_MESH.to_string());
    check_name("mesh name", &mesh).map_err(ApiError::bad_request)?;
    let rows = registry.agents(None).await?;
    let (revoked, members, announce) = registry
        .data()
        .read(|db| {
            Ok((
                db.revoked_agent_names()?,
                db.mesh_members()?,
                db.announce_limits()?,
            ))
        })
        .await?;
    let registered = rows.iter().map(|row| row.name.as_str()).collect();
    let revoked_set = revoked.iter().map(String::as_str).collect();
    let peers = mesh_peers(&identity.name, &mesh, &members, &registered, &revoked_set);
    Ok(axum::Json(MeshDirectory {
        revoked,
        peers,
        announce,
    }))
}

/// `POST /v1/agent/drain`: the agent asks to be picked no more (on SIGTERM, or `tandem agent
/// drain`); it keeps reporting until it deregisters.
pub async fn drain_self(
    State(registry): State<Registry>,
    Extension(identity): Extension<AgentIdentity>,
) -> Result<axum::Json<ReportAnswer>, ApiError> {
    let before = own_row(&registry, &identity).await?.map(|row| row.state());
    let state = state_outcome(
        registry
            .propose(RegistryCommand::Drain {
                name: identity.name.clone(),
            })
            .await?,
    )?;
    registry.note_change(&identity.name, &identity.pool, before, state);
    Ok(answer(&registry, state))
}

/// `POST /v1/agent/deregister`: the agent stops; its credential stays valid for its next start.
pub async fn deregister_self(
    State(registry): State<Registry>,
    Extension(identity): Extension<AgentIdentity>,
) -> Result<axum::Json<serde_json::Value>, ApiError> {
    let outcome = registry
        .propose(RegistryCommand::Deregister {
            name: identity.name.clone(),
            credential_id: Some(identity.credential_id.clone()),
        })
        .await?;
    registry.forget(&identity.name);
    tracing::info!(agent = %identity.name, pool = %identity.pool, "agent deregistered");
    let existed = matches!(outcome, Outcome::AgentsChanged { count } if count > 0);
    Ok(axum::Json(
        json!({"deregistered": identity.name, "existed": existed}),
    ))
}
