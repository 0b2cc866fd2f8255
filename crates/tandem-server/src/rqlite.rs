//! rqlite's HTTP API in Tandem's terms, as plain functions: what a request's query flags and
//! body ask for, which of Tandem's read paths an rqlite read level means, and the JSON rqlite
//! clients expect back. The handlers in `rqlite_api` only carry these out; docs/rqlite.md lists
//! every endpoint and flag.

use std::time::Duration;

use axum::http::{StatusCode, Uri};
use base64::Engine as _;
use serde_json::{json, Map, Value};
use tandem_store::{Params, QueryRows, SqlAnswer, SqlValue, Statement};

use crate::data_api::param_name;
use crate::error::ApiError;
use crate::extract::query_params;
use crate::health::Standing;
use crate::replicated::Consistency;

/// The three SQL endpoints.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SqlEndpoint {
    /// `/db/execute`: writes.
    Execute,
    /// `/db/query`: reads.
    Query,
    /// `/db/request`: reads and writes together.
    Request,
}

/// rqlite's read consistency levels (`?level=`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Level {
    None,
    #[default]
    Weak,
    Linearizable,
    Strong,
    Auto,
}

impl Level {
    /// rqlite reads an unknown level as weak, its default.
    fn parse(text: &str) -> Level {
        match text.to_ascii_lowercase().as_str() {
            "none" => Level::None,
            "linearizable" => Level::Linearizable,
            "strong" => Level::Strong,
            "auto" => Level::Auto,
            _ => Level::Weak,
        }
    }

    /// Tandem's read path with rqlite's meaning: `none` reads this node's copy; `weak` (and
    /// `auto`, since every Tandem server votes) reads the active node's copy without asking a
    /// quorum; `linearizable` and `strong` confirm with a quorum first (rqlite's strong goes
    /// through the log, which gives nothing a read index does not).
    pub fn consistency(self) -> Consistency {
        match self {
            Level::None => Consistency::Stale,
            Level::Weak | Level::Auto => Consistency::Active,
            Level::Linearizable | Level::Strong => Consistency::Linearizable,
        }
    }
}

/// Whether a request's query string asks for a read from whichever node receives it.
pub fn reads_locally(uri: &Uri) -> bool {
    pairs(uri).any(|(k, v)| k == "level" && Level::parse(&v) == Level::None)
}

/// Whether a request's query string asks for a redirect to the active node (`?redirect`).
pub fn wants_redirect(uri: &Uri) -> bool {
    pairs(uri).any(|(k, _)| k == "redirect")
}

fn pairs(uri: &Uri) -> impl Iterator<Item = (String, String)> {
    axum::extract::Query::<Vec<(String, String)>>::try_from_uri(uri)
        .map(|q| q.0)
        .unwrap_or_default()
        .into_iter()
}

/// The query flags of a request to one of rqlite's endpoints.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Flags {
    pub pretty: bool,
    pub timings: bool,
    pub associative: bool,
    pub transaction: bool,
    pub blob_array: bool,
    pub level: Level,
    /// With `level=none` on a standby: the longest the node may have been out of touch.
    pub freshness: Option<Duration>,
    pub freshness_strict: bool,
    /// The statement of a `GET /db/query`.
    pub q: Option<String>,
    /// `/nodes`: list non-voting members too.
    pub nonvoters: bool,
    /// `/nodes?ver=2`: the list form.
    pub nodes_v2: bool,
    /// `/readyz?noleader`.
    pub noleader: bool,
    /// `/status?key=store.leader`: only that part.
    pub key: Option<String>,
}

/// Flags Tandem accepts and has no use for, each with why.
const IGNORED_FLAGS: [(&str, &str); 5] = [
    ("redirect", "read by the forwarding layer"),
    ("timeout", "Tandem's request timeout applies"),
    ("retries", "a standby reaches the active node once"),
    ("db_timeout", "every statement is bounded in steps instead"),
    ("linearizable_timeout", "Tandem's request timeout applies"),
];

/// Flags rqlite has and Tandem refuses, each with why.
const REFUSED_FLAGS: [(&str, &str); 8] = [
    ("queue", "queued writes are not supported: every write is durable before it is answered"),
    ("wait", "queued writes are not supported: every write is durable before it is answered"),
    ("noparse", "statements are always checked: Tandem refuses nondeterministic ones"),
    ("norwrandom", "Tandem never rewrites RANDOM(); it refuses it, so pass the value as a parameter"),
    ("norwtime", "Tandem never rewrites the time; it refuses reading the clock, so pass the time as a parameter"),
    ("qualify_columns", "qualified column names are not supported; alias the columns (AS) instead"),
    ("raft_index", "Raft indexes are not reported; see GET /v1/cluster"),
    ("sync", "not supported on /readyz; GET /ready waits for nothing and says whether reads are served"),
];

/// Which flags an endpoint reads (the ignored and refused ones aside).
fn flags_of(endpoint: &str) -> &'static [&'static str] {
    match endpoint {
        "execute" => &[
            "pretty",
            "timings",
            "associative",
            "transaction",
            "blob_array",
        ],
        "query" | "request" => &[
            "pretty",
            "timings",
            "associative",
            "transaction",
            "blob_array",
            "level",
            "freshness",
            "freshness_strict",
            "q",
        ],
        "nodes" => &["pretty", "nonvoters", "ver"],
        "status" => &["pretty", "key"],
        "readyz" => &["noleader"],
        _ => &[],
    }
}

impl Flags {
    /// Parses the query string of a request to `endpoint` (`execute`, `query`, `request`,
    /// `nodes`, `status` or `readyz`); a flag rqlite does not define, or one Tandem refuses,
    /// is a 400 that says so.
    pub fn parse(endpoint: &str, uri: &Uri) -> Result<Flags, ApiError> {
        let mut flags = Flags::default();
        let known = flags_of(endpoint);
        for (key, value) in query_params::<Vec<(String, String)>>(uri)? {
            if let Some((_, why)) = REFUSED_FLAGS.iter().find(|(k, _)| *k == key) {
                return Err(ApiError::bad_request(format!(
                    "?{key} is refused: {why}; see docs/rqlite.md"
                )));
            }
            if IGNORED_FLAGS.iter().any(|(k, _)| *k == key) {
                // Checked as rqlite checks them, so a typo is not silently taken.
                if key.ends_with("timeout") {
                    go_duration(&key, &value)?;
                }
                if key == "retries" && value.parse::<i64>().is_err() {
                    return Err(ApiError::bad_request(format!(
                        "retries {value:?} is not a whole number"
                    )));
                }
                continue;
            }
            if !known.contains(&key.as_str()) {
                return Err(ApiError::bad_request(format!(
                    "unknown query parameter {key:?} on /{endpoint}; it takes {}; see docs/rqlite.md",
                    known.join(", ")
                )));
            }
            match key.as_str() {
                "pretty" => flags.pretty = true,
                "timings" => flags.timings = true,
                "associative" => flags.associative = true,
                "transaction" => flags.transaction = true,
                "blob_array" => flags.blob_array = true,
                "level" => flags.level = Level::parse(&value),
                "freshness" => flags.freshness = Some(go_duration(&key, &value)?),
                "freshness_strict" => flags.freshness_strict = true,
                "nonvoters" => flags.nonvoters = true,
                "noleader" => flags.noleader = true,
                "ver" => flags.nodes_v2 = value == "2",
                "key" => flags.key = Some(value),
                "q" if value.is_empty() => {
                    return Err(ApiError::bad_request(
                        "q is empty: give the query, q=SELECT ...",
                    ))
                }
                "q" => flags.q = Some(value),
                _ => {}
            }
        }
        if flags.freshness_strict && flags.freshness.is_none() {
            return Err(ApiError::bad_request(
                "freshness_strict requires freshness, e.g. freshness=1s",
            ));
        }
        Ok(flags)
    }
}

/// A duration as rqlite takes it (`500ms`, `1s`, `2m`; also `1m30s`).
fn go_duration(key: &str, text: &str) -> Result<Duration, ApiError> {
    humantime::parse_duration(text).map_err(|_| {
        ApiError::bad_request(format!("{key} {text:?} is not a duration like 1s or 500ms"))
    })
}

/// The statements of a request body. A JSON body is an array whose items are SQL strings or
/// `[sql, params...]` arrays, each parameter a value (positional) or an object of named ones;
/// a `text/plain` body is one statement. Empty SQL strings are skipped, as rqlite does.
pub fn statements(body: &[u8], plain_text: bool) -> Result<Vec<Statement>, ApiError> {
    let statements = if plain_text {
        vec![Statement {
            sql: String::from_utf8(body.to_vec())
                .map_err(|_| ApiError::bad_request("the text/plain body is not UTF-8"))?,
            params: Params::Positional(vec![]),
        }]
    } else {
        let items: Vec<Value> = serde_json::from_slice::<Value>(body)
            .map_err(|e| ApiError::bad_request(format!("bad JSON body: {e}")))
            .and_then(|value| match value {
                Value::Array(items) => Ok(items),
                other => Err(ApiError::bad_request(format!(
                    "the body must be a JSON array of statements, not {}",
                    kind(&other)
                ))),
            })?;
        items
            .into_iter()
            .enumerate()
            .map(|(i, item)| statement(item).map_err(|e| numbered(i, e)))
            .collect::<Result<Vec<_>, _>>()?
    };
    let statements: Vec<Statement> = statements
        .into_iter()
        .filter(|s| !s.sql.trim().is_empty())
        .collect();
    if statements.is_empty() {
        return Err(ApiError::bad_request(
            "no statements: send [\"SELECT ...\"]",
        ));
    }
    Ok(statements)
}

fn numbered(i: usize, e: ApiError) -> ApiError {
    ApiError::bad_request(format!("statement {}: {}", i + 1, e.message))
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn statement(item: Value) -> Result<Statement, ApiError> {
    let mut parts = match item {
        Value::String(sql) => {
            return Ok(Statement {
                sql,
                params: Params::Positional(vec![]),
            })
        }
        Value::Array(parts) => parts.into_iter(),
        other => {
            return Err(ApiError::bad_request(format!(
                "a statement is a SQL string or a [sql, params...] array, not {}",
                kind(&other)
            )))
        }
    };
    let sql = match parts.next() {
        Some(Value::String(sql)) => sql,
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "a [sql, params...] array starts with the SQL string, not {}",
                kind(&other)
            )))
        }
        None => return Err(ApiError::bad_request("an empty [sql, params...] array")),
    };
    let mut positional = Vec::new();
    let mut named = Vec::new();
    for part in parts {
        match part {
            Value::Object(map) => {
                for (name, value) in map {
                    named.push((param_name(&name), param_value(&value)?));
                }
            }
            value => positional.push(param_value(&value)?),
        }
    }
    let params = match (positional.is_empty(), named.is_empty()) {
        (_, true) => Params::Positional(positional),
        (true, false) => Params::Named(named),
        (false, false) => {
            return Err(ApiError::bad_request(
                "a statement's parameters are either all positional or all named, not both",
            ))
        }
    };
    Ok(Statement { sql, params })
}

/// A parameter as rqlite reads it: null, a boolean, a number, a string (`x'...'` is a blob),
/// or an array of byte values (a blob).
fn param_value(value: &Value) -> Result<SqlValue, ApiError> {
    match value {
        Value::Array(bytes) => bytes
            .iter()
            .map(|b| {
                b.as_u64()
                    .and_then(|b| u8::try_from(b).ok())
                    .ok_or_else(|| {
                        ApiError::bad_request(format!(
                            "a blob parameter is an array of byte values 0-255; {b} is not one"
                        ))
                    })
            })
            .collect::<Result<Vec<u8>, _>>()
            .map(SqlValue::Blob),
        Value::Object(_) => Err(ApiError::bad_request(
            "a named parameter's value cannot be an object: use null, a boolean, a number, a string or an array of bytes",
        )),
        Value::String(s) => Ok(hex_blob(s).map_or_else(|| SqlValue::Text(s.clone()), SqlValue::Blob)),
        other => SqlValue::from_json(other).map_err(ApiError::bad_request),
    }
}

/// The bytes of an `x'68656c6c6f'` string, as rqlite reads one.
fn hex_blob(text: &str) -> Option<Vec<u8>> {
    let digits = text
        .strip_prefix(['x', 'X'])?
        .strip_prefix('\'')?
        .strip_suffix('\'')?;
    if digits.len() % 2 != 0 {
        return None;
    }
    (0..digits.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(digits.get(i..i + 2)?, 16).ok())
        .collect()
}

/// How answers are written out.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Shape {
    pub associative: bool,
    pub timings: bool,
    pub blob_array: bool,
    /// Answers of `/db/execute` carry no rows.
    pub execute: bool,
}

impl Shape {
    pub fn of(flags: &Flags, endpoint: SqlEndpoint) -> Shape {
        Shape {
            associative: flags.associative,
            timings: flags.timings,
            blob_array: flags.blob_array,
            execute: endpoint == SqlEndpoint::Execute,
        }
    }
}

/// The body of an answer: `results`, one per statement answered, and with `?timings` the
/// seconds each took and the whole request took.
pub fn results_body(answers: &[(SqlAnswer, f64)], shape: Shape, seconds: f64) -> Value {
    let results: Vec<Value> = answers
        .iter()
        .map(|(answer, took)| result(answer, *took, shape))
        .collect();
    let mut body = json!({ "results": results });
    if shape.timings {
        body["time"] = json!(seconds);
    }
    body
}

fn result(answer: &SqlAnswer, seconds: f64, shape: Shape) -> Value {
    let mut out = Map::new();
    match answer {
        SqlAnswer::Failed(message) => {
            out.insert("error".into(), json!(message));
            return Value::Object(out);
        }
        SqlAnswer::Changed(changed) => changed_fields(
            &mut out,
            changed.last_insert_id,
            changed.rows_affected,
            shape,
        ),
        SqlAnswer::Rows(_) if shape.execute => changed_fields(&mut out, 0, 0, shape),
        SqlAnswer::Rows(rows) if shape.associative => {
            let types: Map<String, Value> = rows
                .columns
                .iter()
                .zip(&rows.types)
                .map(|(c, t)| (c.clone(), json!(t)))
                .collect();
            if !types.is_empty() {
                out.insert("types".into(), Value::Object(types));
            }
            let objects: Vec<Value> = rows
                .rows
                .iter()
                .map(|row| {
                    Value::Object(
                        rows.columns
                            .iter()
                            .zip(row)
                            .map(|(c, v)| (c.clone(), value(v, shape)))
                            .collect(),
                    )
                })
                .collect();
            out.insert("rows".into(), Value::Array(objects));
        }
        SqlAnswer::Rows(rows) => rows_fields(&mut out, rows, shape),
    }
    if shape.timings {
        out.insert("time".into(), json!(seconds));
    }
    Value::Object(out)
}

/// rqlite leaves out a count of zero; in the associative form a write says it has no rows.
fn changed_fields(out: &mut Map<String, Value>, last_insert_id: i64, affected: u64, shape: Shape) {
    if last_insert_id != 0 {
        out.insert("last_insert_id".into(), json!(last_insert_id));
    }
    if affected != 0 {
        out.insert("rows_affected".into(), json!(affected));
    }
    if shape.associative {
        out.insert("rows".into(), Value::Null);
    }
}

/// rqlite leaves out empty lists.
fn rows_fields(out: &mut Map<String, Value>, rows: &QueryRows, shape: Shape) {
    if !rows.columns.is_empty() {
        out.insert("columns".into(), json!(rows.columns));
        out.insert("types".into(), json!(rows.types));
    }
    if !rows.rows.is_empty() {
        let values: Vec<Value> = rows
            .rows
            .iter()
            .map(|row| Value::Array(row.iter().map(|v| value(v, shape)).collect()))
            .collect();
        out.insert("values".into(), Value::Array(values));
    }
}

/// A value as rqlite writes it: a blob in base64, or with `?blob_array` as byte values.
fn value(value: &SqlValue, shape: Shape) -> Value {
    match value {
        SqlValue::Blob(bytes) if shape.blob_array => json!(bytes),
        SqlValue::Blob(bytes) => json!(base64::engine::general_purpose::STANDARD.encode(bytes)),
        other => other.to_json(),
    }
}

/// A whole-request failure that rqlite reports in a 200 answer (a stale read).
pub fn error_body(message: &str) -> Value {
    json!({ "error": message })
}

/// The body as rqlite writes it: compact, or with `?pretty` indented by four spaces.
pub fn encode(body: &Value, pretty: bool) -> Vec<u8> {
    if !pretty {
        return serde_json::to_vec(body).unwrap_or_default();
    }
    let mut out = Vec::new();
    let formatter = serde_json::ser::PrettyFormatter::with_indent(b"    ");
    let mut serializer = serde_json::Serializer::with_formatter(&mut out, formatter);
    match serde::Serialize::serialize(body, &mut serializer) {
        Ok(()) => out,
        Err(_) => serde_json::to_vec(body).unwrap_or_default(),
    }
}

/// What a node knows when it decides whether a `level=none` read would be too stale.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Freshness {
    /// Milliseconds since this node last heard from the active node; `None` if never.
    pub contact_ms: Option<u64>,
    /// This node has applied everything it knows to be committed.
    pub caught_up: bool,
    /// Milliseconds since the active node stamped the last entry this node applied.
    pub last_write_ms: Option<u64>,
}

/// rqlite's rule for `freshness`: a read is stale when this node has not heard from the
/// active node within the bound, or, with `freshness_strict`, when it is also behind and the
/// last write it applied is older than the bound. The active node is never stale.
pub fn is_stale_read(is_active: bool, seen: Freshness, bound: Duration, strict: bool) -> bool {
    let bound = bound.as_millis() as u64;
    if is_active || bound == 0 {
        return false;
    }
    match seen.contact_ms {
        Some(ms) if ms <= bound => {}
        _ => return true,
    }
    strict && !seen.caught_up && seen.last_write_ms.is_some_and(|ms| ms > bound)
}

/// `/readyz`'s status and text, from this node's standing: ready when it can reach an active
/// node, or with `?noleader` whenever it answers at all.
pub fn readyz(standing: Standing, noleader: bool) -> (StatusCode, &'static str) {
    if noleader {
        return (StatusCode::OK, "[+]node ok");
    }
    match standing {
        Standing::Active | Standing::Standby => {
            (StatusCode::OK, "[+]node ok\n[+]leader ok\n[+]store ok")
        }
        Standing::StandbyCutOff => (
            StatusCode::SERVICE_UNAVAILABLE,
            "[+]node ok\n[+]leader not contactable",
        ),
        Standing::Unavailable => (
            StatusCode::SERVICE_UNAVAILABLE,
            "[+]node ok\n[+]leader does not exist",
        ),
        Standing::Removed => (
            StatusCode::SERVICE_UNAVAILABLE,
            "[+]node ok\n[+]removed from the cluster",
        ),
    }
}

/// One member as `/nodes` lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeEntry {
    pub id: u64,
    pub cluster_addr: String,
    pub api_addr: String,
    pub voter: bool,
    pub reachable: bool,
    pub leader: bool,
}

/// `/nodes`: by default a map from node id to node; with `?ver=2` a `nodes` list. Non-voters
/// are left out unless `?nonvoters`.
pub fn nodes_body(nodes: &[NodeEntry], flags: &Flags, version: &str, scheme: &str) -> Value {
    let mut nodes: Vec<&NodeEntry> = nodes
        .iter()
        .filter(|n| n.voter || flags.nonvoters)
        .collect();
    nodes.sort_by_key(|n| n.id.to_string());
    let entry = |n: &NodeEntry| {
        let mut node = json!({
            "id": n.id.to_string(),
            "api_addr": api_url(scheme, &n.api_addr),
            "addr": n.cluster_addr,
            "version": version,
            "voter": n.voter,
            "reachable": n.reachable,
            "leader": n.leader,
        });
        if !n.reachable {
            node["error"] = json!("not heard from lately");
        }
        node
    };
    if flags.nodes_v2 {
        return json!({ "nodes": nodes.iter().copied().map(entry).collect::<Vec<_>>() });
    }
    Value::Object(
        nodes
            .iter()
            .copied()
            .map(|n| (n.id.to_string(), entry(n)))
            .collect(),
    )
}

/// rqlite gives a node's API address as a URL (`scheme` is `http` or `https`).
pub fn api_url(scheme: &str, api_addr: &str) -> String {
    if api_addr.contains("://") || api_addr.is_empty() {
        api_addr.to_string()
    } else {
        format!("{scheme}://{api_addr}")
    }
}

/// The part of `/status` that `?key=store.leader` names (an empty object when it names
/// nothing, as rqlite answers).
pub fn status_part(status: Value, key: Option<&str>) -> Value {
    let Some(key) = key.filter(|k| !k.is_empty()) else {
        return status;
    };
    let mut part = status;
    for name in key.split('.') {
        match part {
            Value::Object(mut map) => match map.remove(name) {
                Some(inner) => part = inner,
                None => return json!({}),
            },
            other => return other,
        }
    }
    part
}

#[cfg(test)]
mod tests;
