//! The registry as operators and clients use it, with the API secret or a scoped credential: join tokens, the agent
//! list (and its blocking watch), one agent, drain, revoke, and picks.

use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use serde::Deserialize;
use serde_json::{json, Value};
use tandem_registry::{
    check_announce_list, check_name, pick, AgentList, AgentRecord, AgentState, AnnounceRestriction,
    Candidate, JoinTokenInfo, MeshView, PickRequest, Strategy,
};
use tandem_store::{AgentRow, Outcome, RegistryCommand, TokenSpec};

use crate::credentials::Caller;
use crate::error::ApiError;
use crate::extract::{parse_ttl, query_params, Json};
use crate::issued_secret::issue_secret;
use crate::registry::Registry;
use crate::replicated::Consistency;

/// The answer header carrying the registry index to wait on next (as Consul's `X-Consul-Index`).
pub const INDEX_HEADER: &str = "x-tandem-index";
/// A join token lives this long unless `ttl` says otherwise.
const DEFAULT_TOKEN_TTL: &str = "24h";
/// A blocking watch waits this long unless `wait` says otherwise, and never longer than the max.
const DEFAULT_WAIT: Duration = Duration::from_secs(60);
const MAX_WAIT: Duration = Duration::from_secs(600);

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewToken {
    pool: String,
    ttl: Option<String>,
    uses: Option<u64>,
    /// What the agents enrolled with the token may announce in the mesh; absent: anything.
    #[serde(default)]
    mesh_announce: Option<Vec<String>>,
}

/// `POST /v1/join-tokens`: the token is shown once, here; the cluster keeps only its hash.
pub async fn create_token(
    State(registry): State<Registry>,
    Extension(caller): Extension<Caller>,
    Json(request): Json<NewToken>,
) -> Result<Response, ApiError> {
    check_name("pool", &request.pool).map_err(ApiError::bad_request)?;
    if request.uses == Some(0) {
        return Err(ApiError::bad_request(
            "uses must be at least 1; leave it out for no limit",
        ));
    }
    let ttl_ms = parse_ttl(request.ttl.as_deref().unwrap_or(DEFAULT_TOKEN_TTL))?;
    if let Some(allow) = &request.mesh_announce {
        check_announce_list(allow)
            .map_err(|e| ApiError::bad_request(format!("mesh_announce: {e}")))?;
    }
    let new = issue_secret();
    let token = TokenSpec {
        id: new.id.clone(),
        pool: request.pool.clone(),
        secret_sha256: new.secret_sha256,
        ttl_ms: Some(ttl_ms),
        uses: request.uses,
    };
    let command = match request.mesh_announce.clone() {
        None => token.into_command(),
        Some(mesh_announce) => RegistryCommand::TokenCreateRestricted {
            token,
            mesh_announce,
        },
    };
    let outcome = registry.propose_by(caller.who(), command).await?;
    let expires_at_ms = match outcome {
        Outcome::TokenCreated { expires_at_ms } => expires_at_ms,
        other => {
            return Err(ApiError::internal(format!(
                "token creation answered {other:?}"
            )))
        }
    };
    tracing::info!(token = %new.id, pool = %request.pool, "join token created");
    Ok((
        StatusCode::CREATED,
        axum::Json(json!({
            "token": new.token,
            "id": new.id,
            "pool": request.pool,
            "expires_at_ms": expires_at_ms,
            "uses_left": request.uses,
            "mesh_announce": request.mesh_announce,
        })),
    )
        .into_response())
}

/// `GET /v1/join-tokens`: the tokens that can still enrol, never their secrets.
pub async fn list_tokens(State(registry): State<Registry>) -> Result<axum::Json<Value>, ApiError> {
    let tokens: Vec<JoinTokenInfo> = registry.data().read(|db| Ok(db.join_tokens()?)).await?;
    Ok(axum::Json(json!({ "tokens": tokens })))
}

/// `DELETE /v1/join-tokens/{id}`.
pub async fn revoke_token(
    State(registry): State<Registry>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<axum::Json<Value>, ApiError> {
    registry
        .propose_by(
            caller.who(),
            RegistryCommand::TokenRevoke { id: id.clone() },
        )
        .await?;
    tracing::info!(token = %id, "join token revoked");
    Ok(axum::Json(json!({ "revoked": id })))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    pool: Option<String>,
    state: Option<String>,
    /// `key=value`
    label: Option<String>,
    index: Option<u64>,
    wait: Option<String>,
}

/// `GET /v1/agents[?pool=&state=&label=k=v]`, and with `index=N` a blocking watch: the answer
/// comes as soon as anything in the pool (or the registry) changes after index N, or when
/// `wait` (default 60s, at most 10m) runs out.
pub async fn list(State(registry): State<Registry>, uri: Uri) -> Result<Response, ApiError> {
    let query: ListQuery = query_params(&uri)?;
    let state = query
        .state
        .as_deref()
        .map(str::parse::<AgentState>)
        .transpose()
        .map_err(ApiError::bad_request)?;
    let label = query
        .label
        .as_deref()
        .map(|pair| {
            pair.split_once('=')
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .ok_or_else(|| ApiError::bad_request(format!("label {pair:?} must be key=value")))
        })
        .transpose()?;
    let pool = query.pool.clone();
    registry
        .data()
        .read_barrier(Consistency::Linearizable)
        .await?;
    let mut index = registry_index(&registry, pool.clone()).await?;
    if let Some(seen) = query.index {
        let wait = wait_of(query.wait.as_deref())?;
        let mut changes = registry.data().registry_changes();
        let deadline = tokio::time::Instant::now() + wait;
        // An index that went backwards (a restore) answers at once, as a change would.
        while index == seen {
            if tokio::time::timeout_at(deadline, changes.changed())
                .await
                .is_err()
            {
                break;
            }
            index = registry_index(&registry, pool.clone()).await?;
        }
    }
    let rows = registry.agents(pool.as_deref()).await?;
    let agents: Vec<AgentRecord> = rows
        .iter()
        .map(|row| registry.record(row.clone()))
        .filter(|agent| state.is_none_or(|s| agent.state == s))
        .filter(|agent| {
            label
                .as_ref()
                .is_none_or(|(k, v)| agent.labels.get(k) == Some(v))
        })
        .collect();
    let mut response = axum::Json(AgentList { index, agents }).into_response();
    response
        .headers_mut()
        .insert(INDEX_HEADER, HeaderValue::from(index));
    Ok(response)
}

/// A blocking read's `wait`: its default, and never more than the most.
pub(crate) fn wait_of(wait: Option<&str>) -> Result<Duration, ApiError> {
    Ok(match wait {
        Some(text) => Duration::from_millis(parse_ttl(text)?).min(MAX_WAIT),
        None => DEFAULT_WAIT,
    })
}

async fn registry_index(registry: &Registry, pool: Option<String>) -> Result<u64, ApiError> {
    registry
        .data()
        .read(move |db| Ok(db.registry_index(pool.as_deref())?))
        .await
}

async fn agent_row(registry: &Registry, name: String) -> Result<AgentRow, ApiError> {
    let shown = name.clone();
    registry
        .data()
        .read(move |db| Ok(db.registry_agent(&name)?))
        .await?
        .ok_or_else(|| {
            ApiError::not_found(format!(
                "no agent {shown:?} is registered; `tandem agents ls` lists them"
            ))
        })
}

/// `GET /v1/agents/{name}`.
pub async fn show(
    State(registry): State<Registry>,
    Path(name): Path<String>,
) -> Result<axum::Json<AgentRecord>, ApiError> {
    let row = agent_row(&registry, name).await?;
    Ok(axum::Json(registry.record(row)))
}

/// `POST /v1/agents/{name}/drain`: picked no more; the agent keeps serving what it has and
/// deregisters when it stops.
pub async fn drain(
    State(registry): State<Registry>,
    Path(name): Path<String>,
) -> Result<axum::Json<AgentRecord>, ApiError> {
    let before = agent_row(&registry, name.clone()).await?;
    registry
        .propose(RegistryCommand::Drain { name: name.clone() })
        .await?;
    registry.note_change(
        &name,
        &before.pool,
        Some(before.state()),
        AgentState::Draining,
    );
    let row = agent_row(&registry, name).await?;
    Ok(axum::Json(registry.record(row)))
}

/// `POST /v1/agents/{name}/revoke`: the agent's credential is refused from now on, by every
/// server, and the agent leaves every pick; it needs a new join token to come back.
pub async fn revoke(
    State(registry): State<Registry>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
) -> Result<axum::Json<Value>, ApiError> {
    let credentials = revoke_agent(&registry, &caller, &name).await?;
    Ok(axum::Json(
        json!({ "revoked": name, "credentials": credentials }),
    ))
}

/// Revokes every credential of agent `name` for `caller`, and forgets what this node knew of
/// the agent; answers how many credentials were revoked.
pub async fn revoke_agent(
    registry: &Registry,
    caller: &Caller,
    name: &str,
) -> Result<u64, ApiError> {
    let outcome = registry
        .propose_by(
            caller.who(),
            RegistryCommand::Revoke {
                name: name.to_string(),
            },
        )
        .await?;
    registry.forget(name);
    registry.forget_assertions(name);
    let credentials = match outcome {
        Outcome::AgentRevoked { credentials } => credentials,
        other => return Err(ApiError::internal(format!("revocation answered {other:?}"))),
    };
    tracing::info!(agent = %name, credentials, by = caller.who(), "agent revoked");
    Ok(credentials)
}

/// `POST /v1/agents/{name}/announce`: what the agent may announce in the mesh from now on
/// (`{"allow": [...]}`), or anything again (`{"allow": null}`). Every mesh agent learns it
/// with its next directory poll.
pub async fn restrict_announce(
    State(registry): State<Registry>,
    Path(name): Path<String>,
    Json(request): Json<AnnounceRestriction>,
) -> Result<axum::Json<Value>, ApiError> {
    check_name("agent name", &name).map_err(ApiError::bad_request)?;
    if let Some(allow) = &request.allow {
        check_announce_list(allow).map_err(|e| ApiError::bad_request(format!("allow: {e}")))?;
    }
    registry
        .propose(RegistryCommand::SetAnnounce {
            name: name.clone(),
            allow: request.allow.clone(),
        })
        .await?;
    match &request.allow {
        Some(allow) => {
            tracing::info!(agent = %name, ?allow, "agent's mesh announcements restricted")
        }
        None => tracing::info!(agent = %name, "agent's mesh announcements unrestricted"),
    }
    Ok(axum::Json(json!({ "agent": name, "allow": request.allow })))
}

/// `GET /v1/mesh`: every agent's peers and paths, as its last heartbeat to this (active) node
/// told them; agents without a mesh, or not heard from since this node became active, are not
/// listed.
pub async fn mesh(State(registry): State<Registry>) -> Result<axum::Json<MeshView>, ApiError> {
    let rows = registry.agents(None).await?;
    Ok(axum::Json(MeshView {
        agents: registry.meshes(&rows),
    }))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct PickQuery {
    #[serde(default)]
    strategy: Option<String>,
    /// Comma-separated agent names the client already failed with.
    #[serde(default)]
    exclude: Option<String>,
    #[serde(default)]
    key: Option<String>,
}

/// `GET /v1/pools/{pool}/pick`: one healthy agent, from the registry alone (no probing).
pub async fn pick_agent(
    State(registry): State<Registry>,
    Path(pool): Path<String>,
    uri: Uri,
) -> Result<axum::Json<AgentRecord>, ApiError> {
    let query: PickQuery = query_params(&uri)?;
    let strategy = query
        .strategy
        .as_deref()
        .map(str::parse::<Strategy>)
        .transpose()
        .map_err(ApiError::bad_request)?
        .unwrap_or_default();
    let exclude: Vec<String> = query
        .exclude
        .as_deref()
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|name| !name.is_empty())
        .map(str::to_string)
        .collect();
    // Linearizable: a node that lost the active role without knowing it yet must not hand out
    // agents from a state that may be behind.
    registry
        .data()
        .read_barrier(Consistency::Linearizable)
        .await?;
    let rows = registry.agents(Some(&pool)).await?;
    let overdue = registry.overdue(&rows);
    let loads = registry.loads(&rows);
    let candidates: Vec<Candidate> = rows
        .iter()
        .zip(loads)
        .map(|(row, load)| {
            let state = match row.state() {
                AgentState::Draining => AgentState::Draining,
                _ if overdue.contains(&row.name) => AgentState::Down,
                state => state,
            };
            Candidate {
                name: &row.name,
                state,
                load,
            }
        })
        .collect();
    let request = PickRequest {
        strategy,
        exclude: &exclude,
        key: query.key.as_deref(),
    };
    let chosen = pick(&candidates, &request, rand::random());
    metrics::counter!("tandem_agent_picks_total", "result" => if chosen.is_some() { "picked" } else { "none" })
        .increment(1);
    let Some(chosen) = chosen else {
        let states: Vec<AgentState> = candidates.iter().map(|c| c.state).collect();
        return Err(no_healthy_agent(&pool, &states, exclude.len()));
    };
    let row = rows
        .iter()
        .find(|row| row.name == chosen)
        .ok_or_else(|| ApiError::internal("the picked agent vanished"))?;
    Ok(axum::Json(registry.record(row.clone())))
}

fn no_healthy_agent(pool: &str, states: &[AgentState], excluded: usize) -> ApiError {
    let message = if states.is_empty() {
        format!("no agent is registered in pool {pool:?}")
    } else {
        let mut counts: Vec<String> = AgentState::ALL
            .iter()
            .map(|state| (state, states.iter().filter(|s| *s == state).count()))
            .filter(|(_, count)| *count > 0)
            .map(|(state, count)| format!("{count} {}", state.as_str()))
            .collect();
        if excluded > 0 {
            counts.push(format!("{excluded} excluded by the request"));
        }
        format!(
            "no agent of pool {pool:?} is passing or warning ({}); see `tandem agents ls --pool {pool}`",
            counts.join(", ")
        )
    };
    let mut error = ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "no_healthy_agent", message);
    error.retry_after = Some(1);
    error
}
