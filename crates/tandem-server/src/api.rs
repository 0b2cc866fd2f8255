//! The client API: data (SQL, key/value, cache, locks) and cluster status. Authentication and
//! the leader redirect are layers in front of the handlers, not branches inside them.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{DefaultBodyLimit, Path, Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode, Uri};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde::Deserialize;
use serde_json::{json, Value};
use tandem_store::{Command, Fence, Outcome, Params, SqlValue, Statement};

use crate::error::{secrets_match, ApiError};
use crate::extract::{json_body, parse_ttl, query_params, Json, Query, RawBody};
use crate::forward::route_to_active;
use crate::health;
use crate::node::{Consistency, Node};
use crate::token_api;

pub fn router(node: Arc<Node>) -> Router {
    let authenticated = Router::new()
        .route("/v1/sys/leader", get(sys_leader))
        .route(crate::forward::STEP_DOWN_PATH, post(step_down))
        .route("/v1/cluster", get(cluster_status))
        .route("/v1/cluster/snapshot", post(take_snapshot))
        .route("/v1/backup", get(backup))
        .route("/v1/sql/execute", post(sql_execute))
        .route("/v1/sql/query", post(sql_query))
        .route("/v1/kv", get(kv_list))
        .route("/v1/kv/{*key}", get(kv_get).put(kv_put).delete(kv_delete))
        .route(
            "/v1/cache/{namespace}/{key}",
            get(cache_get).put(cache_put).delete(cache_delete),
        )
        .route("/v1/cache/{namespace}/{key}/take", post(cache_take))
        .route("/v1/locks/{name}", get(lock_get))
        .route("/v1/locks/{name}/acquire", post(lock_acquire))
        .route("/v1/locks/{name}/renew", post(lock_renew))
        .route("/v1/locks/{name}/release", post(lock_release))
        .route("/v1/keys", get(token_api::list))
        .route("/v1/keys/rotate", post(token_api::rotate_now))
        .route("/v1/tokens", post(token_api::issue))
        .route("/v1/tokens/verify", post(token_api::verify))
        .layer(middleware::from_fn_with_state(
            node.clone(),
            route_to_active,
        ))
        .layer(middleware::from_fn_with_state(
            node.clone(),
            require_api_secret,
        ));
    Router::new()
        .route("/health", get(health::alive))
        .route("/ready", get(health::ready))
        .route("/healthz", get(health::healthz))
        .route("/v1/sys/health", get(health::sys_health))
        .route("/metrics", get(health::metrics))
        // The public key set, at the paths verifiers look for it.
        .route("/v1/keys/jwks", get(token_api::jwks))
        .route("/.well-known/jwks.json", get(token_api::jwks))
        .route("/api/pkeys", get(token_api::jwks))
        .merge(authenticated)
        .fallback(unknown_route)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(node.settings.max_body_bytes))
        .layer(middleware::from_fn_with_state(node.clone(), served_by))
        .with_state(node)
}

/// The endpoints whose input the server parses: path names, query string, JSON body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ApiEndpoint {
    SqlExecute,
    SqlQuery,
    KvGet,
    KvPut,
    KvDelete,
    KvList,
    CacheGet,
    CachePut,
    CacheDelete,
    CacheTake,
    LockGet,
    LockAcquire,
    LockRenew,
    LockRelease,
    Backup,
}

impl ApiEndpoint {
    pub const ALL: [ApiEndpoint; 15] = [
        ApiEndpoint::SqlExecute,
        ApiEndpoint::SqlQuery,
        ApiEndpoint::KvGet,
        ApiEndpoint::KvPut,
        ApiEndpoint::KvDelete,
        ApiEndpoint::KvList,
        ApiEndpoint::CacheGet,
        ApiEndpoint::CachePut,
        ApiEndpoint::CacheDelete,
        ApiEndpoint::CacheTake,
        ApiEndpoint::LockGet,
        ApiEndpoint::LockAcquire,
        ApiEndpoint::LockRenew,
        ApiEndpoint::LockRelease,
        ApiEndpoint::Backup,
    ];
}

/// Parses and checks a request to `endpoint` as its handler does before it reaches Raft or the
/// database: `name` and `second_name` are the path's names after percent-decoding (the key, or
/// the cache namespace and key, or the lock name), `uri` carries the query string. Answers the
/// validated command a write proposes, or `None` for a read that would be served.
pub fn parse_api_request(
    endpoint: ApiEndpoint,
    name: &str,
    second_name: &str,
    uri: &Uri,
    body: &[u8],
) -> Result<Option<Command>, ApiError> {
    let (name, second_name) = (name.to_string(), second_name.to_string());
    let command = match endpoint {
        ApiEndpoint::SqlExecute => sql_execute_command(&query_params(uri)?, json_body(body)?)?,
        ApiEndpoint::SqlQuery => {
            query_params::<ReadParams>(uri)?;
            json_body::<QueryBody>(body)?.statement()?;
            return Ok(None);
        }
        ApiEndpoint::KvGet | ApiEndpoint::CacheGet | ApiEndpoint::LockGet | ApiEndpoint::Backup => {
            query_params::<ReadParams>(uri)?;
            return Ok(None);
        }
        ApiEndpoint::KvList => {
            query_params::<ListParams>(uri)?.limit()?;
            return Ok(None);
        }
        ApiEndpoint::KvPut => query_params::<WriteParams>(uri)?.kv_put(name, body.to_vec())?,
        ApiEndpoint::KvDelete => query_params::<WriteParams>(uri)?.kv_delete(name)?,
        ApiEndpoint::CachePut => {
            query_params::<WriteParams>(uri)?.cache_put(name, second_name, body.to_vec())?
        }
        ApiEndpoint::CacheDelete => {
            query_params::<WriteParams>(uri)?.cache_delete(name, second_name)?
        }
        ApiEndpoint::CacheTake => Command::CacheTake {
            namespace: name,
            key: second_name,
        },
        ApiEndpoint::LockAcquire => json_body::<LeaseBody>(body)?.acquire(name)?,
        ApiEndpoint::LockRenew => json_body::<LeaseBody>(body)?.renew(name)?,
        ApiEndpoint::LockRelease => json_body::<LeaseBody>(body)?.release(name)?,
    };
    command.validate()?;
    Ok(Some(command))
}

async fn unknown_route(method: Method, uri: Uri) -> ApiError {
    ApiError::not_found(format!(
        "no endpoint {method} {}; see docs/api.md",
        uri.path()
    ))
}

async fn method_not_allowed(method: Method, uri: Uri) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!(
            "{method} is not supported on {}; see docs/api.md",
            uri.path()
        ),
    )
}

/// Names the node that answered, on every response; a forwarded answer keeps the name of the
/// active node that served it.
async fn served_by(State(node): State<Arc<Node>>, request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    response
        .headers_mut()
        .entry("tandem-node-id")
        .or_insert(HeaderValue::from(node.id));
    response
}

async fn require_api_secret(
    State(node): State<Arc<Node>>,
    request: Request,
    next: Next,
) -> Response {
    let given = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default();
    if !secrets_match(given.trim().as_bytes(), node.secret_api.as_bytes()) {
        return ApiError::unauthorized().into_response();
    }
    next.run(request).await
}

// ---- status ----

async fn sys_leader(State(node): State<Arc<Node>>) -> axum::Json<Value> {
    let view = node.ha.view();
    axum::Json(json!({
        "leader_id": view.active.as_ref().map(|a| a.id),
        "leader_api_addr": view.active.as_ref().map(|a| a.api_addr.clone()),
        "is_self": view.is_self,
        "term": view.fencing_token,
    }))
}

async fn cluster_status(State(node): State<Arc<Node>>) -> axum::Json<Value> {
    axum::Json(health::cluster_report(&node))
}

/// Hands the active role to an up-to-date standby (reaches the active node through forwarding).
async fn step_down(State(node): State<Arc<Node>>) -> Result<axum::Json<Value>, ApiError> {
    node.ha
        .step_down()
        .await
        .map_err(|e| ApiError::unavailable(format!("step-down failed: {e}")))?;
    let view = node.ha.view();
    Ok(axum::Json(
        json!({"stepped_down": true, "active_node": view.active.as_ref().map(|a| a.id)}),
    ))
}

async fn take_snapshot(State(node): State<Arc<Node>>) -> Result<axum::Json<Value>, ApiError> {
    let applied = node.raft.metrics().borrow().last_applied.map(|l| l.index);
    node.raft
        .trigger()
        .snapshot()
        .await
        .map_err(|e| ApiError::unavailable(e.to_string()))?;
    let done = node
        .raft
        .wait(Some(Duration::from_secs(60)))
        .metrics(|m| m.snapshot.map(|l| l.index) >= applied, "snapshot")
        .await
        .map_err(|e| ApiError::unavailable(format!("snapshot did not finish: {e}")))?;
    Ok(axum::Json(
        json!({"snapshot_index": done.snapshot.map(|l| l.index)}),
    ))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct ReadParams {
    #[serde(default)]
    consistency: Consistency,
}

async fn backup(
    State(node): State<Arc<Node>>,
    Query(p): Query<ReadParams>,
) -> Result<Response, ApiError> {
    node.read_barrier(p.consistency).await?;
    let state = node.state.clone();
    let path = node
        .settings
        .data_dir
        .join(format!("backup-{}.db", crate::node::now_ms()));
    let (bytes, applied) = tokio::task::spawn_blocking(move || {
        let applied = state.backup_to(&path);
        let bytes = applied.as_ref().ok().map(|_| std::fs::read(&path));
        let _ = std::fs::remove_file(&path);
        (bytes, applied)
    })
    .await
    .map_err(ApiError::internal)?;
    let applied = applied?;
    let bytes = bytes
        .ok_or_else(|| ApiError::internal("backup file missing"))?
        .map_err(ApiError::internal)?;
    let mut response = bytes.into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/vnd.sqlite3"),
    );
    headers.insert(
        header::CONTENT_DISPOSITION,
        HeaderValue::from_static("attachment; filename=\"tandem-backup.db\""),
    );
    headers.insert(
        "tandem-applied-index",
        HeaderValue::from(applied.map(|l| l.index).unwrap_or(0)),
    );
    Ok(response)
}

// ---- SQL ----

#[derive(Deserialize)]
#[serde(untagged)]
enum StatementBody {
    Text(String),
    Full {
        sql: String,
        #[serde(default)]
        params: Option<Value>,
    },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ExecuteBody {
    #[serde(default)]
    statements: Vec<StatementBody>,
    sql: Option<String>,
    params: Option<Value>,
}

fn to_params(value: Option<Value>) -> Result<Params, ApiError> {
    let convert = |v: &Value| SqlValue::from_json(v).map_err(ApiError::bad_request);
    match value {
        None | Some(Value::Null) => Ok(Params::Positional(vec![])),
        Some(Value::Array(items)) => Ok(Params::Positional(
            items.iter().map(convert).collect::<Result<_, _>>()?,
        )),
        Some(Value::Object(map)) => Ok(Params::Named(
            map.iter()
                .map(|(k, v)| {
                    let name = if k.starts_with([':', '@', '$']) {
                        k.clone()
                    } else {
                        format!(":{k}")
                    };
                    Ok((name, convert(v)?))
                })
                .collect::<Result<_, ApiError>>()?,
        )),
        Some(other) => Err(ApiError::bad_request(format!(
            "params must be an array or an object, not {other}"
        ))),
    }
}

fn to_statement(body: StatementBody) -> Result<Statement, ApiError> {
    match body {
        StatementBody::Text(sql) => Ok(Statement {
            sql,
            params: Params::Positional(vec![]),
        }),
        StatementBody::Full { sql, params } => Ok(Statement {
            sql,
            params: to_params(params)?,
        }),
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct WriteParams {
    fence: Option<String>,
    ttl: Option<String>,
    if_revision: Option<u64>,
}

impl WriteParams {
    fn fence(&self) -> Result<Option<Fence>, ApiError> {
        self.fence
            .as_deref()
            .map(|f| f.parse::<Fence>().map_err(ApiError::bad_request))
            .transpose()
    }
    fn ttl_ms(&self) -> Result<Option<u64>, ApiError> {
        self.ttl.as_deref().map(parse_ttl).transpose()
    }

    fn kv_put(&self, key: String, value: Vec<u8>) -> Result<Command, ApiError> {
        Ok(Command::KvPut {
            key,
            value,
            ttl_ms: self.ttl_ms()?,
            if_revision: self.if_revision,
            fence: self.fence()?,
        })
    }

    fn kv_delete(&self, key: String) -> Result<Command, ApiError> {
        if self.ttl.is_some() {
            return Err(ApiError::bad_request("ttl has no meaning on DELETE"));
        }
        Ok(Command::KvDelete {
            key,
            if_revision: self.if_revision,
            fence: self.fence()?,
        })
    }

    fn cache_put(
        &self,
        namespace: String,
        key: String,
        value: Vec<u8>,
    ) -> Result<Command, ApiError> {
        if self.if_revision.is_some() {
            return Err(ApiError::bad_request(
                "if_revision applies to the key/value store, not the cache",
            ));
        }
        Ok(Command::CachePut {
            namespace,
            key,
            value,
            ttl_ms: self.ttl_ms()?,
            fence: self.fence()?,
        })
    }

    fn cache_delete(&self, namespace: String, key: String) -> Result<Command, ApiError> {
        Ok(Command::CacheDelete {
            namespace,
            key,
            fence: self.fence()?,
        })
    }
}

fn sql_execute_command(w: &WriteParams, body: ExecuteBody) -> Result<Command, ApiError> {
    let mut statements = body
        .statements
        .into_iter()
        .map(to_statement)
        .collect::<Result<Vec<_>, _>>()?;
    if let Some(sql) = body.sql {
        statements.push(Statement {
            sql,
            params: to_params(body.params)?,
        });
    }
    Ok(Command::Sql {
        statements,
        fence: w.fence()?,
    })
}

async fn sql_execute(
    State(node): State<Arc<Node>>,
    Query(w): Query<WriteParams>,
    Json(body): Json<ExecuteBody>,
) -> Result<axum::Json<Value>, ApiError> {
    match node.propose(sql_execute_command(&w, body)?).await? {
        Outcome::Sql { results } => Ok(axum::Json(json!({"results": results}))),
        other => Err(ApiError::internal(format!("unexpected outcome {other:?}"))),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct QueryBody {
    sql: String,
    params: Option<Value>,
}

impl QueryBody {
    fn statement(self) -> Result<Statement, ApiError> {
        Ok(Statement {
            sql: self.sql,
            params: to_params(self.params)?,
        })
    }
}

async fn sql_query(
    State(node): State<Arc<Node>>,
    Query(p): Query<ReadParams>,
    Json(body): Json<QueryBody>,
) -> Result<axum::Json<Value>, ApiError> {
    let statement = body.statement()?;
    node.read_barrier(p.consistency).await?;
    let rows = node.read(move |db| Ok(db.query(&statement)?)).await?;
    let rows_json: Vec<Vec<Value>> = rows
        .rows
        .iter()
        .map(|row| row.iter().map(SqlValue::to_json).collect())
        .collect();
    Ok(axum::Json(
        json!({"columns": rows.columns, "rows": rows_json}),
    ))
}

// ---- key/value ----

fn raw_value(bytes: Vec<u8>) -> Response {
    let mut response = bytes.into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    response
}

async fn kv_get(
    State(node): State<Arc<Node>>,
    Path(key): Path<String>,
    Query(p): Query<ReadParams>,
) -> Result<Response, ApiError> {
    node.read_barrier(p.consistency).await?;
    let lookup = key.clone();
    let entry = node.read(move |db| Ok(db.kv_get(&lookup)?)).await?;
    let entry = entry.ok_or_else(|| ApiError::not_found(format!("key {key:?} does not exist")))?;
    let mut response = raw_value(entry.value);
    response
        .headers_mut()
        .insert("tandem-revision", HeaderValue::from(entry.revision));
    if let Some(at) = entry.expires_at_ms {
        response
            .headers_mut()
            .insert("tandem-expires-at-ms", HeaderValue::from(at));
    }
    Ok(response)
}

async fn kv_put(
    State(node): State<Arc<Node>>,
    Path(key): Path<String>,
    Query(w): Query<WriteParams>,
    RawBody(value): RawBody,
) -> Result<axum::Json<Value>, ApiError> {
    match node.propose(w.kv_put(key, value.to_vec())?).await? {
        Outcome::KvWritten { revision } => Ok(axum::Json(json!({"revision": revision}))),
        other => Err(ApiError::internal(format!("unexpected outcome {other:?}"))),
    }
}

async fn kv_delete(
    State(node): State<Arc<Node>>,
    Path(key): Path<String>,
    Query(w): Query<WriteParams>,
) -> Result<axum::Json<Value>, ApiError> {
    deleted(node.propose(w.kv_delete(key)?).await?)
}

fn deleted(outcome: Outcome) -> Result<axum::Json<Value>, ApiError> {
    match outcome {
        Outcome::Deleted { existed } => Ok(axum::Json(json!({"deleted": existed}))),
        other => Err(ApiError::internal(format!("unexpected outcome {other:?}"))),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ListParams {
    #[serde(default)]
    prefix: String,
    after: Option<String>,
    limit: Option<u32>,
    #[serde(default)]
    consistency: Consistency,
}

const LIST_LIMIT_MAX: u32 = 10_000;

impl ListParams {
    fn limit(&self) -> Result<u32, ApiError> {
        let limit = self.limit.unwrap_or(1000);
        if limit == 0 || limit > LIST_LIMIT_MAX {
            return Err(ApiError::bad_request(format!(
                "limit must be between 1 and {LIST_LIMIT_MAX}"
            )));
        }
        Ok(limit)
    }
}

async fn kv_list(
    State(node): State<Arc<Node>>,
    Query(p): Query<ListParams>,
) -> Result<axum::Json<Value>, ApiError> {
    let limit = p.limit()?;
    node.read_barrier(p.consistency).await?;
    let (prefix, after) = (p.prefix, p.after);
    let keys = node
        .read(move |db| Ok(db.kv_list(&prefix, after.as_deref(), limit)?))
        .await?;
    let next = (keys.len() == limit as usize)
        .then(|| keys.last().cloned())
        .flatten();
    Ok(axum::Json(json!({"keys": keys, "next": next})))
}

// ---- cache ----

async fn cache_get(
    State(node): State<Arc<Node>>,
    Path((namespace, key)): Path<(String, String)>,
    Query(p): Query<ReadParams>,
) -> Result<Response, ApiError> {
    node.read_barrier(p.consistency).await?;
    let (ns, k) = (namespace.clone(), key.clone());
    let value = node.read(move |db| Ok(db.cache_get(&ns, &k)?)).await?;
    value
        .map(raw_value)
        .ok_or_else(|| ApiError::not_found(format!("cache entry {namespace}/{key} does not exist")))
}

async fn cache_put(
    State(node): State<Arc<Node>>,
    Path((namespace, key)): Path<(String, String)>,
    Query(w): Query<WriteParams>,
    RawBody(value): RawBody,
) -> Result<axum::Json<Value>, ApiError> {
    node.propose(w.cache_put(namespace, key, value.to_vec())?)
        .await?;
    Ok(axum::Json(json!({"stored": true})))
}

async fn cache_delete(
    State(node): State<Arc<Node>>,
    Path((namespace, key)): Path<(String, String)>,
    Query(w): Query<WriteParams>,
) -> Result<axum::Json<Value>, ApiError> {
    deleted(node.propose(w.cache_delete(namespace, key)?).await?)
}

async fn cache_take(
    State(node): State<Arc<Node>>,
    Path((namespace, key)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let command = Command::CacheTake {
        namespace: namespace.clone(),
        key: key.clone(),
    };
    match node.propose(command).await? {
        Outcome::Taken { value: Some(value) } => Ok(raw_value(value)),
        Outcome::Taken { value: None } => Err(ApiError::not_found(format!(
            "cache entry {namespace}/{key} does not exist (or was already taken)"
        ))),
        other => Err(ApiError::internal(format!("unexpected outcome {other:?}"))),
    }
}

// ---- locks ----

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LeaseBody {
    holder: String,
    token: Option<u64>,
    ttl: Option<String>,
}

impl LeaseBody {
    fn ttl_ms(&self) -> Result<u64, ApiError> {
        parse_ttl(
            self.ttl
                .as_deref()
                .ok_or_else(|| ApiError::bad_request("ttl is required, e.g. \"ttl\": \"10s\""))?,
        )
    }
    fn token(&self) -> Result<u64, ApiError> {
        self.token.ok_or_else(|| {
            ApiError::bad_request("token is required: the fencing token acquire returned")
        })
    }

    fn acquire(self, name: String) -> Result<Command, ApiError> {
        Ok(Command::LockAcquire {
            name,
            ttl_ms: self.ttl_ms()?,
            holder: self.holder,
        })
    }

    fn renew(self, name: String) -> Result<Command, ApiError> {
        Ok(Command::LockRenew {
            name,
            token: self.token()?,
            ttl_ms: self.ttl_ms()?,
            holder: self.holder,
        })
    }

    fn release(self, name: String) -> Result<Command, ApiError> {
        Ok(Command::LockRelease {
            name,
            token: self.token()?,
            holder: self.holder,
        })
    }
}

fn lease(outcome: Outcome) -> Result<axum::Json<Value>, ApiError> {
    match outcome {
        Outcome::Lease {
            token,
            expires_at_ms,
        } => Ok(axum::Json(
            json!({"token": token, "expires_at_ms": expires_at_ms}),
        )),
        Outcome::Released => Ok(axum::Json(json!({"released": true}))),
        other => Err(ApiError::internal(format!("unexpected outcome {other:?}"))),
    }
}

async fn lock_acquire(
    State(node): State<Arc<Node>>,
    Path(name): Path<String>,
    Json(body): Json<LeaseBody>,
) -> Result<axum::Json<Value>, ApiError> {
    lease(node.propose(body.acquire(name)?).await?)
}

async fn lock_renew(
    State(node): State<Arc<Node>>,
    Path(name): Path<String>,
    Json(body): Json<LeaseBody>,
) -> Result<axum::Json<Value>, ApiError> {
    lease(node.propose(body.renew(name)?).await?)
}

async fn lock_release(
    State(node): State<Arc<Node>>,
    Path(name): Path<String>,
    Json(body): Json<LeaseBody>,
) -> Result<axum::Json<Value>, ApiError> {
    lease(node.propose(body.release(name)?).await?)
}

async fn lock_get(
    State(node): State<Arc<Node>>,
    Path(name): Path<String>,
    Query(p): Query<ReadParams>,
) -> Result<axum::Json<Value>, ApiError> {
    node.read_barrier(p.consistency).await?;
    let lookup = name.clone();
    let lock = node.read(move |db| Ok(db.lock_get(&lookup)?)).await?;
    let lock =
        lock.ok_or_else(|| ApiError::not_found(format!("lock {name:?} has never been acquired")))?;
    Ok(axum::Json(json!(lock)))
}
