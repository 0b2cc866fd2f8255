//! The data endpoints (SQL, key/value, cache, locks, backup), declared once: each endpoint's
//! path, method and where it must be served ([`Needs`]) build the router, and one parser turns a
//! request into a write command or a read, for the handler and the fuzz targets alike. Handlers
//! only carry out what the parser made and render the answer.

use axum::body::{Body, Bytes};
use axum::extract::rejection::RawPathParamsRejection;
use axum::extract::{RawPathParams, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{on, MethodFilter, MethodRouter};
use serde::Deserialize;
use serde_json::{json, Value};
use tandem_store::rules::grants::Access;
use tandem_store::{Command, Fence, Outcome, Params, SqlValue, Statement};
use tokio::io::AsyncReadExt;

use crate::credentials::require;
use crate::error::ApiError;
use crate::extract::{json_body, parse_ttl, query_params, RawBody};
use crate::forward::Needs;
use crate::replicated::{Consistency, Replicated};
use crate::state::ApiState;

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

    /// The route, as axum spells it; its captures are the names the parser reads.
    pub fn path(self) -> &'static str {
        use ApiEndpoint::*;
        match self {
            SqlExecute => "/v1/sql/execute",
            SqlQuery => "/v1/sql/query",
            KvList => "/v1/kv",
            KvGet | KvPut | KvDelete => "/v1/kv/{*key}",
            CacheGet | CachePut | CacheDelete => "/v1/cache/{namespace}/{key}",
            CacheTake => "/v1/cache/{namespace}/{key}/take",
            LockGet => "/v1/locks/{name}",
            LockAcquire => "/v1/locks/{name}/acquire",
            LockRenew => "/v1/locks/{name}/renew",
            LockRelease => "/v1/locks/{name}/release",
            Backup => "/v1/backup",
        }
    }

    pub fn method(self) -> Method {
        use ApiEndpoint::*;
        match self {
            KvGet | KvList | CacheGet | LockGet | Backup => Method::GET,
            KvPut | CachePut => Method::PUT,
            KvDelete | CacheDelete => Method::DELETE,
            SqlExecute | SqlQuery | CacheTake | LockAcquire | LockRenew | LockRelease => {
                Method::POST
            }
        }
    }

    /// Writes need the active node; reads need it unless they ask for a stale answer.
    pub fn needs(self) -> Needs {
        use ApiEndpoint::*;
        match self {
            SqlQuery | KvGet | KvList | CacheGet | LockGet | Backup => Needs::ActiveUnlessStale,
            _ => Needs::ActiveNode,
        }
    }

    /// What a request to this endpoint does, for the grant check: the key, namespace or lock it
    /// names, or the prefix it lists.
    pub(crate) fn access(self, names: &PathNames, uri: &Uri) -> Access {
        use ApiEndpoint::*;
        match self {
            SqlExecute => Access::SqlWrite,
            SqlQuery => Access::SqlRead,
            KvGet => Access::KvRead(names.first.clone()),
            KvList => {
                let prefix = query_params::<ListPrefix>(uri)
                    .ok()
                    .and_then(|q| q.prefix)
                    .unwrap_or_default();
                Access::KvRead(prefix)
            }
            KvPut | KvDelete => Access::KvWrite(names.first.clone()),
            CacheGet | CachePut | CacheDelete | CacheTake => Access::Cache(names.first.clone()),
            LockGet | LockAcquire | LockRenew | LockRelease => Access::Lock(names.first.clone()),
            // A copy of the whole state: every table, key and credential hash.
            Backup => Access::ClusterAdmin,
        }
    }

    /// Its body is JSON (the others take a raw value or none).
    fn takes_json(self) -> bool {
        use ApiEndpoint::*;
        matches!(
            self,
            SqlExecute | SqlQuery | LockAcquire | LockRenew | LockRelease
        )
    }

    /// The handler of this endpoint, behind the forwarding layer its needs call for.
    pub fn route(self, state: &ApiState) -> MethodRouter<ApiState> {
        let filter = match self.method() {
            Method::GET => MethodFilter::GET,
            Method::PUT => MethodFilter::PUT,
            Method::DELETE => MethodFilter::DELETE,
            _ => MethodFilter::POST,
        };
        let handler = move |State(data): State<Replicated>,
                            names: Result<RawPathParams, RawPathParamsRejection>,
                            uri: Uri,
                            headers: HeaderMap,
                            RawBody(body): RawBody| async move {
            if self.takes_json() && !declares_json(&headers) {
                return ApiError::bad_request(
                    "bad JSON body: Expected request with `Content-Type: application/json`",
                )
                .into_response();
            }
            serve(self, &data, &PathNames::of(names.ok()), &uri, body).await
        };
        let route = self.needs().serve(on(filter, handler), state);
        require(route, move |names, uri| {
            self.access(&PathNames::of(names), uri)
        })
    }
}

/// The one query parameter of a listing that the grant check reads.
#[derive(Deserialize)]
struct ListPrefix {
    prefix: Option<String>,
}

/// The names an endpoint's path captures, percent-decoded.
#[derive(Default)]
pub(crate) struct PathNames {
    /// The key, the cache namespace or the lock name.
    first: String,
    /// The cache key.
    second: String,
}

impl PathNames {
    fn of(params: Option<RawPathParams>) -> PathNames {
        let find = |wanted: &str| {
            params
                .iter()
                .flat_map(|p| p.iter())
                .find(|(name, _)| *name == wanted)
                .map(|(_, value)| value.to_string())
        };
        match find("namespace") {
            Some(namespace) => PathNames {
                first: namespace,
                second: find("key").unwrap_or_default(),
            },
            None => PathNames {
                first: find("key").or_else(|| find("name")).unwrap_or_default(),
                second: String::new(),
            },
        }
    }
}

/// Whether a body is declared as JSON (`application/json`, or a `+json` type).
fn declares_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|mime| mime.trim().to_ascii_lowercase())
        .is_some_and(|mime| mime == "application/json" || mime.ends_with("+json"))
}

/// What a request to a data endpoint asks for, once parsed and checked.
#[derive(Debug)]
pub enum DataRequest {
    /// A validated command to propose.
    Write(Command),
    Read(Read),
}

#[derive(Debug)]
pub enum Read {
    Sql(Statement, Consistency),
    Kv(String, Consistency),
    KvList {
        prefix: String,
        after: Option<String>,
        limit: u32,
        consistency: Consistency,
    },
    Cache(String, String, Consistency),
    Lock(String, Consistency),
    Backup(Consistency),
}

/// Parses and checks a request to `endpoint` before it reaches the replicated state: `name` and
/// `second_name` are the path's names after percent-decoding (the key, or the cache namespace
/// and key, or the lock name), `uri` carries the query string.
pub fn parse_api_request(
    endpoint: ApiEndpoint,
    name: &str,
    second_name: &str,
    uri: &Uri,
    body: &[u8],
) -> Result<DataRequest, ApiError> {
    let (name, second_name) = (name.to_string(), second_name.to_string());
    let read = |uri: &Uri| query_params::<ReadParams>(uri).map(|p| p.consistency);
    let command = match endpoint {
        ApiEndpoint::SqlExecute => sql_execute_command(&query_params(uri)?, json_body(body)?)?,
        ApiEndpoint::SqlQuery => {
            let consistency = read(uri)?;
            let statement = json_body::<QueryBody>(body)?.statement()?;
            return Ok(DataRequest::Read(Read::Sql(statement, consistency)));
        }
        ApiEndpoint::KvGet => return Ok(DataRequest::Read(Read::Kv(name, read(uri)?))),
        ApiEndpoint::CacheGet => {
            return Ok(DataRequest::Read(Read::Cache(
                name,
                second_name,
                read(uri)?,
            )))
        }
        ApiEndpoint::LockGet => return Ok(DataRequest::Read(Read::Lock(name, read(uri)?))),
        ApiEndpoint::Backup => return Ok(DataRequest::Read(Read::Backup(read(uri)?))),
        ApiEndpoint::KvList => {
            let p = query_params::<ListParams>(uri)?;
            return Ok(DataRequest::Read(Read::KvList {
                limit: p.limit()?,
                prefix: p.prefix,
                after: p.after,
                consistency: p.consistency,
            }));
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
    Ok(DataRequest::Write(command))
}

async fn serve(
    endpoint: ApiEndpoint,
    data: &Replicated,
    names: &PathNames,
    uri: &Uri,
    body: Bytes,
) -> Response {
    let answer = match parse_api_request(endpoint, &names.first, &names.second, uri, &body) {
        Ok(DataRequest::Write(command)) => match data.propose(command).await {
            Ok(outcome) => render_outcome(endpoint, names, outcome),
            Err(e) => Err(e),
        },
        Ok(DataRequest::Read(read)) => serve_read(data, read).await,
        Err(e) => Err(e),
    };
    answer.unwrap_or_else(IntoResponse::into_response)
}

/// The answer to a write, from what the state machine answered.
fn render_outcome(
    endpoint: ApiEndpoint,
    names: &PathNames,
    outcome: Outcome,
) -> Result<Response, ApiError> {
    let body = match (endpoint, outcome) {
        (ApiEndpoint::SqlExecute, Outcome::Sql { results }) => json!({ "results": results }),
        (ApiEndpoint::KvPut, Outcome::KvWritten { revision }) => json!({ "revision": revision }),
        (ApiEndpoint::KvDelete | ApiEndpoint::CacheDelete, Outcome::Deleted { existed }) => {
            json!({ "deleted": existed })
        }
        (ApiEndpoint::CachePut, _) => json!({"stored": true}),
        (ApiEndpoint::CacheTake, Outcome::Taken { value: Some(value) }) => {
            return Ok(raw_value(value))
        }
        (ApiEndpoint::CacheTake, Outcome::Taken { value: None }) => {
            return Err(ApiError::not_found(format!(
                "cache entry {}/{} does not exist (or was already taken)",
                names.first, names.second
            )))
        }
        (
            ApiEndpoint::LockAcquire | ApiEndpoint::LockRenew,
            Outcome::Lease {
                token,
                expires_at_ms,
            },
        ) => json!({"token": token, "expires_at_ms": expires_at_ms}),
        (ApiEndpoint::LockRelease, Outcome::Released) => json!({"released": true}),
        (_, other) => return Err(ApiError::internal(format!("unexpected outcome {other:?}"))),
    };
    Ok(axum::Json(body).into_response())
}

async fn serve_read(data: &Replicated, read: Read) -> Result<Response, ApiError> {
    let consistency = match &read {
        Read::Sql(_, c) | Read::Kv(_, c) | Read::Cache(_, _, c) | Read::Lock(_, c) => *c,
        Read::KvList { consistency, .. } => *consistency,
        Read::Backup(c) => *c,
    };
    data.read_barrier(consistency).await?;
    match read {
        Read::Sql(statement, _) => {
            let rows = data.query(statement).await?;
            let rows_json: Vec<Vec<Value>> = rows
                .rows
                .iter()
                .map(|row| row.iter().map(SqlValue::to_json).collect())
                .collect();
            Ok(axum::Json(json!({"columns": rows.columns, "rows": rows_json})).into_response())
        }
        Read::Kv(key, _) => {
            let lookup = key.clone();
            let entry = data.read(move |db| Ok(db.kv_get(&lookup)?)).await?;
            let entry =
                entry.ok_or_else(|| ApiError::not_found(format!("key {key:?} does not exist")))?;
            let mut response = raw_value(entry.value);
            let headers = response.headers_mut();
            headers.insert("tandem-revision", HeaderValue::from(entry.revision));
            if let Some(at) = entry.expires_at_ms {
                headers.insert("tandem-expires-at-ms", HeaderValue::from(at));
            }
            Ok(response)
        }
        Read::KvList {
            prefix,
            after,
            limit,
            ..
        } => {
            let keys = data
                .read(move |db| Ok(db.kv_list(&prefix, after.as_deref(), limit)?))
                .await?;
            let next = (keys.len() == limit as usize)
                .then(|| keys.last().cloned())
                .flatten();
            Ok(axum::Json(json!({"keys": keys, "next": next})).into_response())
        }
        Read::Cache(namespace, key, _) => {
            let (ns, k) = (namespace.clone(), key.clone());
            let value = data.read(move |db| Ok(db.cache_get(&ns, &k)?)).await?;
            value.map(raw_value).ok_or_else(|| {
                ApiError::not_found(format!("cache entry {namespace}/{key} does not exist"))
            })
        }
        Read::Lock(name, _) => {
            let lookup = name.clone();
            let lock = data.read(move |db| Ok(db.lock_get(&lookup)?)).await?;
            let lock = lock.ok_or_else(|| {
                ApiError::not_found(format!("lock {name:?} has never been acquired"))
            })?;
            Ok(axum::Json(json!(lock)).into_response())
        }
        Read::Backup(_) => {
            let (file, length, applied) = data.backup().await?;
            let mut response = file_body(file).into_response();
            let headers = response.headers_mut();
            headers.insert(header::CONTENT_LENGTH, HeaderValue::from(length));
            headers.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/vnd.sqlite3"),
            );
            headers.insert(
                header::CONTENT_DISPOSITION,
                HeaderValue::from_static("attachment; filename=\"tandem-backup.db\""),
            );
            headers.insert("tandem-applied-index", HeaderValue::from(applied));
            Ok(response)
        }
    }
}

/// The body of a download read from `file` a block at a time as the client takes it, so a
/// backup of any size costs the server one block of memory.
fn file_body(file: tokio::fs::File) -> Body {
    const BLOCK: usize = 256 * 1024;
    let blocks = futures::stream::try_unfold(file, |mut file| async move {
        let mut block = vec![0; BLOCK];
        let read = file.read(&mut block).await?;
        if read == 0 {
            return Ok::<_, std::io::Error>(None);
        }
        block.truncate(read);
        Ok(Some((Bytes::from(block), file)))
    });
    Body::from_stream(blocks)
}

fn raw_value(bytes: Vec<u8>) -> Response {
    let mut response = bytes.into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    response
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct ReadParams {
    #[serde(default)]
    consistency: Consistency,
}

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
                .map(|(k, v)| Ok((param_name(k), convert(v)?)))
                .collect::<Result<_, ApiError>>()?,
        )),
        Some(other) => Err(ApiError::bad_request(format!(
            "params must be an array or an object, not {other}"
        ))),
    }
}

/// A named parameter's name as SQLite binds it: `:name` unless it names its own prefix.
pub fn param_name(name: &str) -> String {
    if name.starts_with([':', '@', '$']) {
        name.to_string()
    } else {
        format!(":{name}")
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
