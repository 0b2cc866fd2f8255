//! rqlite's endpoints on Tandem's API port. Each handler reads the request with [`crate::rqlite`],
//! carries it out through the replicated state as `/v1/sql` does, and answers rqlite's JSON.
//! Where each must be served is declared with its route, in rqlite's words
//! ([`Dialect::Rqlite`]), so forwarding and redirects stay one layer in front of them.

use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime};

use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, MethodRouter};
use serde_json::{json, Value};
use tandem_store::rules::grants::Access;
use tandem_store::{Command, Outcome, SqlAnswer, Statement};

use crate::error::ApiError;
use crate::extract::RawBody;
use crate::forward::{Dialect, Needs};
use crate::health::NodeHealth;
use crate::replicated::{Consistency, Replicated};
use crate::rqlite::{self, Flags, Freshness, NodeEntry, Shape, SqlEndpoint};
use crate::state::ApiState;

/// The version `/nodes` and `/status` report, and the `X-RQLITE-VERSION` header carries.
const VERSION: &str = concat!("tandem-", env!("CARGO_PKG_VERSION"));

/// When this server started serving, for `/status` (`node.start_time`, `node.uptime`).
static STARTED: OnceLock<(SystemTime, Instant)> = OnceLock::new();

/// The routes that need the API secret, each behind the forwarding layer as it needs.
pub fn routes(state: &ApiState) -> Vec<(&'static str, MethodRouter<ApiState>, Access)> {
    STARTED.get_or_init(|| (SystemTime::now(), Instant::now()));
    let rqlite = |needs: Needs, route| needs.serve_in(Dialect::Rqlite, route, state);
    vec![
        (
            "/db/execute",
            rqlite(Needs::ActiveNode, post(execute)),
            Access::SqlWrite,
        ),
        (
            "/db/query",
            rqlite(Needs::ActiveUnlessStale, get(query).post(query)),
            Access::SqlRead,
        ),
        // Its statements may write; which do is known only once they are prepared.
        (
            "/db/request",
            rqlite(Needs::ActiveUnlessStale, post(request)),
            Access::SqlWrite,
        ),
        ("/status", get(status), Access::ClusterRead),
        // The active node hears from every member, so it knows which are reachable.
        (
            "/nodes",
            rqlite(Needs::ActiveNode, get(nodes)),
            Access::ClusterRead,
        ),
    ]
}

async fn execute(
    State(health): State<NodeHealth>,
    uri: Uri,
    headers: HeaderMap,
    RawBody(body): RawBody,
) -> Response {
    match SqlRequest::read(SqlEndpoint::Execute, &Method::POST, &uri, &headers, &body) {
        Ok(request) => request.answer(request.write(&health.data).await),
        Err(e) => e.into_response(),
    }
}

async fn query(
    State(health): State<NodeHealth>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    RawBody(body): RawBody,
) -> Response {
    match SqlRequest::read(SqlEndpoint::Query, &method, &uri, &headers, &body) {
        Ok(request) => request.answer(request.query(&health).await),
        Err(e) => e.into_response(),
    }
}

async fn request(
    State(health): State<NodeHealth>,
    uri: Uri,
    headers: HeaderMap,
    RawBody(body): RawBody,
) -> Response {
    match SqlRequest::read(SqlEndpoint::Request, &Method::POST, &uri, &headers, &body) {
        Ok(request) => request.answer(request.read_or_write(&health).await),
        Err(e) => e.into_response(),
    }
}

/// A request to one of the SQL endpoints, read and checked.
struct SqlRequest {
    endpoint: SqlEndpoint,
    flags: Flags,
    statements: Vec<Statement>,
    started: Instant,
}

/// What carrying a request out answers: one answer per statement, or a whole-request failure
/// that rqlite reports in its body.
enum Carried {
    Answers(Vec<(SqlAnswer, f64)>),
    Failed(String),
}

impl SqlRequest {
    fn read(
        endpoint: SqlEndpoint,
        method: &Method,
        uri: &Uri,
        headers: &HeaderMap,
        body: &[u8],
    ) -> Result<SqlRequest, ApiError> {
        let started = Instant::now();
        let name = match endpoint {
            SqlEndpoint::Execute => "execute",
            SqlEndpoint::Query => "query",
            SqlEndpoint::Request => "request",
        };
        let flags = Flags::parse(name, uri)?;
        let statements = match (&flags.q, method == Method::GET) {
            (Some(sql), true) => rqlite::statements(sql.as_bytes(), true)?,
            (None, true) => {
                return Err(ApiError::bad_request(
                    "GET /db/query needs the query in q, e.g. ?q=SELECT%201",
                ))
            }
            (Some(_), false) => {
                return Err(ApiError::bad_request(
                    "q is for GET; a POST sends its statements in the body",
                ))
            }
            (None, false) => rqlite::statements(body, is_plain_text(headers))?,
        };
        Ok(SqlRequest {
            endpoint,
            flags,
            statements,
            started,
        })
    }

    /// Runs the statements as one entry of the log, each answering on its own.
    async fn write(&self, data: &Replicated) -> Result<Carried, ApiError> {
        let command = Command::SqlEach {
            statements: self.statements.clone(),
            all_or_nothing: self.flags.transaction,
        };
        match data.propose(command).await? {
            Outcome::SqlAnswers { answers } => Ok(Carried::Answers(answers)),
            other => Err(ApiError::internal(format!("unexpected outcome {other:?}"))),
        }
    }

    /// Runs the statements as reads at the level asked for.
    async fn query(&self, health: &NodeHealth) -> Result<Carried, ApiError> {
        let consistency = self.flags.level.consistency();
        if let Some(bound) = self
            .flags
            .freshness
            .filter(|_| consistency == Consistency::Stale)
        {
            if rqlite::is_stale_read(
                health.ha.view().is_self,
                freshness(health),
                bound,
                self.flags.freshness_strict,
            ) {
                return Ok(Carried::Failed("stale read".into()));
            }
        }
        health.data.read_barrier(consistency).await?;
        let statements = self.statements.clone();
        let answers = health.data.query_each(statements).await?;
        Ok(Carried::Answers(answers))
    }

    /// `/db/request`: reads when every statement only reads, otherwise one write.
    async fn read_or_write(&self, health: &NodeHealth) -> Result<Carried, ApiError> {
        let statements = self.statements.clone();
        let all_read = health.data.all_read_only(statements).await?;
        if all_read {
            return self.query(health).await;
        }
        // Only a level=none request reaches a standby's handler.
        if !health.ha.view().is_self {
            return Err(ApiError::bad_request(
                "this request writes, so the active node must serve it: drop level=none",
            ));
        }
        self.write(&health.data).await
    }

    /// The answer as rqlite writes it.
    fn answer(&self, carried: Result<Carried, ApiError>) -> Response {
        let body = match carried {
            Ok(Carried::Answers(answers)) => rqlite::results_body(
                &answers,
                Shape::of(&self.flags, self.endpoint),
                self.started.elapsed().as_secs_f64(),
            ),
            Ok(Carried::Failed(message)) => rqlite::error_body(&message),
            Err(e) => return e.into_response(),
        };
        json_answer(StatusCode::OK, &body, self.flags.pretty)
    }
}

fn json_answer(status: StatusCode, body: &Value, pretty: bool) -> Response {
    let mut response = (status, rqlite::encode(body, pretty)).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    response
        .headers_mut()
        .insert("x-rqlite-version", HeaderValue::from_static(VERSION));
    response
}

fn is_plain_text(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim().to_ascii_lowercase().starts_with("text/plain"))
}

/// What this node knows of how fresh its copy is.
fn freshness(health: &NodeHealth) -> Freshness {
    let status = health.data.status();
    let contact_ms = NodeHealth::active_contact_ms(&health.ha.view(), &status);
    let stamped = health.data.last_write_ms();
    Freshness {
        contact_ms,
        caught_up: status.applied_index >= status.commit_index,
        last_write_ms: (stamped > 0)
            .then(|| u64::try_from(tandem_ha::now_ms() - stamped).unwrap_or(0)),
    }
}

async fn nodes(State(health): State<NodeHealth>, uri: Uri) -> Result<Response, ApiError> {
    let flags = Flags::parse("nodes", &uri)?;
    let status = health.data.status();
    let active = health.ha.view().active.map(|a| a.id);
    let reachable_within = Duration::from_millis(health.contact_stale_after_ms);
    let entries: Vec<NodeEntry> = status
        .members
        .iter()
        .map(|m| NodeEntry {
            id: m.id,
            cluster_addr: m.cluster_addr.clone(),
            api_addr: m.api_addr.clone(),
            voter: m.voter,
            reachable: m.id == health.node_id
                || m.last_contact_ms
                    .is_some_and(|ms| ms <= reachable_within.as_millis() as u64),
            leader: active == Some(m.id),
        })
        .collect();
    let body = rqlite::nodes_body(&entries, &flags, VERSION, health.api_scheme);
    Ok(json_answer(StatusCode::OK, &body, flags.pretty))
}

async fn status(State(health): State<NodeHealth>, uri: Uri) -> Result<Response, ApiError> {
    let flags = Flags::parse("status", &uri)?;
    let replication = health.data.status();
    let view = health.ha.view();
    let addr_of = |id: u64| {
        replication
            .members
            .iter()
            .find(|m| m.id == id)
            .map(|m| m.cluster_addr.clone())
            .unwrap_or_default()
    };
    let leader_id = view.active.as_ref().map(|a| a.id);
    let state = match replication.role {
        "leader" => "Leader",
        "candidate" => "Candidate",
        "follower" => "Follower",
        other => other,
    };
    let nodes: Vec<Value> = replication
        .members
        .iter()
        .map(|m| {
            json!({
                "id": m.id.to_string(),
                "addr": m.cluster_addr,
                "suffrage": if m.voter { "Voter" } else { "Nonvoter" },
            })
        })
        .collect();
    let this = replication.members.iter().find(|m| m.id == health.node_id);
    let api_addr = this.map(|m| m.api_addr.clone()).unwrap_or_default();
    let (start_time, uptime) = match STARTED.get() {
        Some((at, since)) => (
            humantime::format_rfc3339_nanos(*at).to_string(),
            format!("{:.3}s", since.elapsed().as_secs_f64()),
        ),
        None => (String::new(), String::new()),
    };
    let status = json!({
        "build": {"version": VERSION},
        "http": {"bind_addr": api_addr, "addr": api_addr, "auth": "enabled"},
        "node": {"start_time": start_time, "uptime": uptime},
        "store": {
            "node_id": health.node_id.to_string(),
            "addr": addr_of(health.node_id),
            "leader": {
                "node_id": leader_id.map(|id| id.to_string()).unwrap_or_default(),
                "addr": leader_id.map(addr_of).unwrap_or_default(),
            },
            "ready": view.active.is_some(),
            "raft": {
                "state": state,
                "term": replication.term,
                "commit_index": replication.commit_index,
                "applied_index": replication.applied_index,
                "voter": this.is_some_and(|m| m.voter),
            },
            "nodes": nodes,
        },
        "tandem": health.cluster_report(),
    });
    let body = rqlite::status_part(status, flags.key.as_deref());
    Ok(json_answer(StatusCode::OK, &body, flags.pretty))
}

/// `GET /readyz`: served by every node without a secret, like `/ready`.
pub async fn readyz(State(health): State<NodeHealth>, uri: Uri) -> Result<Response, ApiError> {
    let flags = Flags::parse("readyz", &uri)?;
    let (status, text) = rqlite::readyz(health.standing(), flags.noleader);
    Ok((
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        text,
    )
        .into_response())
}
