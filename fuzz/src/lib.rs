//! How each fuzz target turns its bytes into outside input and hands it to the server's own
//! parsers. The regression test (crates/tandem-server/tests/fuzz_regressions_test.rs) includes
//! this file too, so a saved input replays along exactly the path the fuzzer took.
//!
//! Inputs are laid out as text lines followed by a raw rest, so saved inputs can be read and
//! written by hand; bytes that cannot be the outside input (a name that is not UTF-8, a header
//! value HTTP would refuse) are skipped, since the server never sees them.

use std::sync::atomic::{AtomicU64, Ordering};

use axum::body::Bytes;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Uri};
use tandem_raft::openraft::{CommittedLeaderId, EntryPayload, LogId};
use tandem_raft::{Entry, Proposal};
use tandem_server::config::NodeList;
use tandem_server::{
    decode_cluster_request, parse_api_request, ApiEndpoint, ApiError, ClusterRequest, DataRequest,
    Settings,
};
use tandem_store::{Applied, Command, Params, QueryRows, ReadError, StateDb, Statement};

/// Splits `lines` newline-ended UTF-8 lines off the front of `data`, and answers them with the
/// rest. `None` when the input is too short or a line is not UTF-8.
fn split_lines(data: &[u8], lines: usize) -> Option<(Vec<&str>, &[u8])> {
    let mut rest = data;
    let mut out = Vec::with_capacity(lines);
    for _ in 0..lines {
        let end = rest.iter().position(|&b| b == b'\n')?;
        out.push(std::str::from_utf8(&rest[..end]).ok()?);
        rest = &rest[end + 1..];
    }
    Some((out, rest))
}

/// `--nodes` / `TANDEM_NODES`: the whole input is the node list.
pub fn node_list(data: &[u8]) -> Option<Result<NodeList, String>> {
    let text = std::str::from_utf8(data).ok()?;
    Some(text.parse::<NodeList>())
}

/// `--config`: line 1 is the machine's hostname (read when `node_id_from = "k8s"`), the rest is
/// the TOML file.
pub fn config_file(data: &[u8]) -> Option<Result<Settings, tandem_server::ConfigError>> {
    let (lines, rest) = split_lines(data, 1)?;
    let hostname = lines[0].to_string();
    let text = std::str::from_utf8(rest).ok()?;
    Some(Settings::from_config_text(text, &|| {
        Some(hostname.clone()).filter(|h| !h.is_empty())
    }))
}

/// A client API request: line 1 names the endpoint (`KvPut`, as [`ApiEndpoint`] spells it),
/// lines 2 and 3 are the path's names, line 4 the query string; the rest is the body. The
/// parser is the one the endpoint's handler calls.
pub fn api_request(data: &[u8]) -> Option<Result<DataRequest, ApiError>> {
    let (lines, body) = split_lines(data, 4)?;
    let endpoint = *ApiEndpoint::ALL
        .iter()
        .find(|e| format!("{e:?}") == lines[0])?;
    // The HTTP server hands over only URIs that parse; anything else never reaches a handler.
    let uri: Uri = format!("/?{}", lines[3]).parse().ok()?;
    Some(parse_api_request(endpoint, lines[1], lines[2], &uri, body))
}

/// A request on the cluster port: line 1 is the path, then `name: value` header lines up to an
/// empty line; the rest is the body.
pub fn cluster_request(data: &[u8]) -> Option<Result<ClusterRequest, ApiError>> {
    let (lines, mut rest) = split_lines(data, 1)?;
    let path = lines[0];
    let mut headers = HeaderMap::new();
    loop {
        let (line, after) = split_lines(rest, 1)?;
        rest = after;
        if line[0].is_empty() {
            break;
        }
        let (name, value) = line[0].split_once(": ")?;
        headers.append(
            HeaderName::from_bytes(name.as_bytes()).ok()?,
            HeaderValue::from_str(value).ok()?,
        );
    }
    Some(decode_cluster_request(
        path,
        &headers,
        Bytes::copy_from_slice(rest),
    ))
}

/// A state database that user SQL runs against, and the next log index to apply at.
pub struct SqlTarget {
    db: StateDb,
    next_index: AtomicU64,
    _dir: tempfile::TempDir,
}

/// What user SQL came to: refused before it was proposed, or the answers of the replicated write
/// and of the read.
#[derive(Debug)]
pub enum SqlOutcome {
    Refused(tandem_store::Rejection),
    Ran {
        write: Applied,
        read: Result<QueryRows, ReadError>,
    },
}

impl SqlTarget {
    pub fn new() -> SqlTarget {
        let dir = tempfile::tempdir().expect("a temporary folder");
        let db = StateDb::open(&dir.path().join("state.db")).expect("an empty state database");
        SqlTarget {
            db,
            next_index: AtomicU64::new(1),
            _dir: dir,
        }
    }

    /// User SQL, as `/v1/sql/execute` and `/v1/sql/query` receive it: the whole input is one
    /// statement. It is validated as a write is before it is proposed, then applied as a
    /// committed write and run as a read.
    pub fn run(&self, data: &[u8]) -> Option<SqlOutcome> {
        let sql = std::str::from_utf8(data).ok()?.to_string();
        let statement = Statement {
            sql,
            params: Params::Positional(vec![]),
        };
        let command = Command::Sql {
            statements: vec![statement.clone()],
            fence: None,
        };
        if let Err(rejection) = command.validate() {
            return Some(SqlOutcome::Refused(rejection));
        }
        let index = self.next_index.fetch_add(1, Ordering::Relaxed);
        let entry = Entry {
            log_id: LogId::new(CommittedLeaderId::new(1, 1), index),
            payload: EntryPayload::Normal(Proposal {
                stamped_at_ms: 1_700_000_000_000,
                command: command.encode(),
            }),
        };
        let answers = self
            .db
            .apply(&[entry])
            .expect("applying a command never fails");
        let write = serde_json::from_value(answers[0].clone()).expect("an apply result");
        let read = self.db.query(&statement);
        Some(SqlOutcome::Ran { write, read })
    }
}
