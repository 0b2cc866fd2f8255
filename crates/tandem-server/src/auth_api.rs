//! Credentials over HTTP (`/v1/auth/credentials`: create, list, revoke) and the audit log
//! (`/v1/audit`). A scoped credential is shown once, when it is created; the cluster keeps only
//! its hash. Enrolled agents' credentials are listed and revoked here too, each holding its one
//! grant `agent:<name>`. Every change is proposed as audited, so the log names who made it.

use axum::extract::{Path, State};
use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use serde::Deserialize;
use serde_json::{json, Value};
use tandem_store::rules::grants::{parse_grants, Grant};
use tandem_store::{AgentCredentialRecord, AuthCommand, Command, CredentialRecord, Outcome};

use crate::agents_api::revoke_agent;
use crate::credentials::Caller;
use crate::error::ApiError;
use crate::extract::{parse_ttl, query_params, Json};
use crate::issued_secret::issue_secret;
use crate::registry::Registry;
use crate::replicated::Replicated;

/// Audit entries one answer holds unless `limit` says fewer.
const AUDIT_PAGE: u32 = 1000;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewCredential {
    name: String,
    grants: Vec<String>,
    /// How long it may be used, e.g. 30d; absent: until revoked.
    ttl: Option<String>,
}

/// `POST /v1/auth/credentials`: the credential is in the answer, and nowhere else.
pub async fn create(
    State(data): State<Replicated>,
    Extension(caller): Extension<Caller>,
    Json(request): Json<NewCredential>,
) -> Result<Response, ApiError> {
    parse_grants(&request.grants).map_err(ApiError::bad_request)?;
    let ttl_ms = request.ttl.as_deref().map(parse_ttl).transpose()?;
    let new = issue_secret();
    let command = Command::Auth(AuthCommand::Create {
        id: new.id.clone(),
        name: request.name.clone(),
        secret_sha256: new.secret_sha256,
        grants: request.grants.clone(),
        ttl_ms,
    });
    let expires_at_ms = match data.propose(command.audited(caller.who())).await? {
        Outcome::CredentialCreated { expires_at_ms } => expires_at_ms,
        other => {
            return Err(ApiError::internal(format!(
                "credential creation answered {other:?}"
            )))
        }
    };
    tracing::info!(credential = %new.id, name = %request.name, by = caller.who(), "credential created");
    Ok((
        StatusCode::CREATED,
        axum::Json(json!({
            "credential": new.token,
            "id": new.id,
            "name": request.name,
            "grants": request.grants,
            "expires_at_ms": expires_at_ms,
        })),
    )
        .into_response())
}

/// `GET /v1/auth/credentials`: every credential with its state (never a secret or its hash):
/// the scoped ones, then the agents'.
pub async fn list(State(data): State<Replicated>) -> Result<axum::Json<Value>, ApiError> {
    let (scoped, agents) = data
        .read(|db| Ok((db.credentials()?, db.registry_credentials()?)))
        .await?;
    let now = tandem_ha::now_ms();
    let scoped = scoped.iter().map(|record| {
        let mut shown = json!(record);
        shown["kind"] = json!("scoped");
        shown["state"] = json!(state_of(record, now));
        shown
    });
    let agents = agents.iter().map(|record| {
        let mut shown = json!(record);
        shown["kind"] = json!("agent");
        shown["grants"] = json!([Grant::Agent(record.name.clone()).to_string()]);
        shown["expires_at_ms"] = Value::Null;
        shown["state"] = json!(agent_state(record));
        shown
    });
    let credentials: Vec<Value> = scoped.chain(agents).collect();
    Ok(axum::Json(json!({ "credentials": credentials })))
}

fn agent_state(record: &AgentCredentialRecord) -> &'static str {
    if record.revoked_at_ms.is_some() {
        "revoked"
    } else {
        "active"
    }
}

fn state_of(record: &CredentialRecord, now_ms: i64) -> &'static str {
    if record.revoked_at_ms.is_some() {
        "revoked"
    } else if record.usable_at(now_ms) {
        "active"
    } else {
        "expired"
    }
}

/// `DELETE /v1/auth/credentials/{credential}`, by id or name for a scoped credential, by id
/// for an agent's (which revokes the agent): refused everywhere once applied.
pub async fn revoke(
    State(registry): State<Registry>,
    Extension(caller): Extension<Caller>,
    Path(credential): Path<String>,
) -> Result<axum::Json<Value>, ApiError> {
    let agent = registry
        .data()
        .read_now(|reads| reads.registry_credential(&credential))?;
    if let Some(agent) = agent {
        revoke_agent(&registry, &caller, &agent.name).await?;
        return Ok(axum::Json(
            json!({ "revoked": { "id": agent.id, "name": agent.name, "kind": "agent" } }),
        ));
    }
    let command = Command::Auth(AuthCommand::Revoke { credential });
    match registry
        .data()
        .propose(command.audited(caller.who()))
        .await?
    {
        Outcome::CredentialRevoked { id, name } => {
            tracing::info!(credential = %id, %name, by = caller.who(), "credential revoked");
            Ok(axum::Json(
                json!({ "revoked": { "id": id, "name": name, "kind": "scoped" } }),
            ))
        }
        other => Err(ApiError::internal(format!(
            "credential revocation answered {other:?}"
        ))),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditQuery {
    since: Option<u64>,
    limit: Option<u32>,
}

/// `GET /v1/audit?since=N&limit=M`: the entries after `N`, oldest first, from this server's
/// copy of the log; `last_seq` is the `since` of the next page.
pub async fn audit(
    State(data): State<Replicated>,
    uri: Uri,
) -> Result<axum::Json<Value>, ApiError> {
    let query: AuditQuery = query_params(&uri)?;
    let since = query.since.unwrap_or(0);
    let limit = query.limit.unwrap_or(AUDIT_PAGE).clamp(1, AUDIT_PAGE);
    let entries = data.read(move |db| Ok(db.audit(since, limit)?)).await?;
    let last_seq = entries.last().map_or(since, |e| e.seq);
    Ok(axum::Json(
        json!({ "entries": entries, "last_seq": last_seq }),
    ))
}
