//! The replicated state in SQLite: the user's tables and Tandem's own (key/value, cache, locks,
//! and the state machine's bookkeeping) in one database file, so a command changes several
//! atomically and the last-applied log id is written in the same transaction as the rows.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;

use rusqlite::{Connection, OptionalExtension, TransactionBehavior};
use tandem_raft::openraft::EntryPayload;
use tandem_raft::{Entry, LogId, StoredMembership};

use crate::command::{
    Applied, Command, Outcome, Params, Rejection, SqlAnswer, Statement, StatementResult,
};
use crate::error::{ReadError, StoreError};
use crate::guard::{Mode, SqlGuard, STATEMENT_STEP_LIMIT};
use crate::sql::{self, SqlValue};

mod apply;
mod auth;
mod cache;
mod keys;
mod kv;
mod locks;
pub(crate) mod meta;
mod reads;
mod registry;

pub(crate) use apply::{apply_step, ApplyError, Counters, Step, UserStatements};
pub use auth::{AuditEntry, CredentialRecord};
pub use kv::KvEntry;
pub use reads::{StateReads, TablesRead};
pub use registry::AgentCredentialRecord;

/// The tables that hold users' values, which may be a kilobyte or more, with their columns. They
/// are rowid tables: in a table WITHOUT ROWID, a row of more than about 1 000 bytes (with 4 KiB
/// pages) spills into an overflow page of its own, so that values of 1 to 2 KB took three to
/// five times their size on disk, and in every snapshot and backup. In a rowid table a row stays
/// in its leaf page up to about 4 000 bytes.
const VALUE_TABLES: [(&str, &str); 2] = [
    (
        "_tandem_kv",
        "(key TEXT PRIMARY KEY, value BLOB NOT NULL, revision INTEGER NOT NULL, expires_at INTEGER)",
    ),
    (
        "_tandem_cache",
        "(namespace TEXT NOT NULL, key TEXT NOT NULL, value BLOB NOT NULL, expires_at INTEGER,
          PRIMARY KEY (namespace, key))",
    ),
];

/// The rest of the schema; [`VALUE_TABLES`] exist before it runs.
const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS _tandem_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS _tandem_kv_expiry ON _tandem_kv(expires_at) WHERE expires_at IS NOT NULL;
CREATE INDEX IF NOT EXISTS _tandem_cache_expiry ON _tandem_cache(expires_at) WHERE expires_at IS NOT NULL;
CREATE TABLE IF NOT EXISTS _tandem_locks (
    name TEXT PRIMARY KEY, holder TEXT, token INTEGER NOT NULL, expires_at INTEGER
) WITHOUT ROWID;
-- Rows stay after a key leaves the key set (removed = 1), so a key id can never be published twice.
CREATE TABLE IF NOT EXISTS _tandem_keys (
    kid TEXT PRIMARY KEY, node_id INTEGER NOT NULL, jwk TEXT NOT NULL, published_at INTEGER NOT NULL,
    retired_at INTEGER, remove_at INTEGER, removed INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;
-- The agent registry. A join token's secret is kept only as its hash; uses_left NULL is unlimited.
CREATE TABLE IF NOT EXISTS _tandem_join_tokens (
    id TEXT PRIMARY KEY, pool TEXT NOT NULL, secret_sha256 BLOB NOT NULL, created_at INTEGER NOT NULL,
    expires_at INTEGER, uses_left INTEGER, revoked INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS _tandem_join_tokens_expiry ON _tandem_join_tokens(expires_at) WHERE expires_at IS NOT NULL;
CREATE TABLE IF NOT EXISTS _tandem_agent_credentials (
    id TEXT PRIMARY KEY, name TEXT NOT NULL, pool TEXT NOT NULL, public_jwk TEXT NOT NULL,
    certificate_pem TEXT NOT NULL, token_id TEXT NOT NULL, issued_at INTEGER NOT NULL, revoked_at INTEGER
);
CREATE INDEX IF NOT EXISTS _tandem_agent_credentials_name ON _tandem_agent_credentials(name);
-- labels is a JSON object, checks a JSON array of check reports, health passing|warning|critical.
CREATE TABLE IF NOT EXISTS _tandem_agents (
    name TEXT PRIMARY KEY, pool TEXT NOT NULL, credential_id TEXT NOT NULL, address TEXT NOT NULL,
    labels TEXT NOT NULL, version TEXT NOT NULL, health TEXT NOT NULL, checks TEXT NOT NULL,
    down_since INTEGER, draining INTEGER NOT NULL, state_since INTEGER NOT NULL,
    registered_at INTEGER NOT NULL, modify_index INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS _tandem_agents_pool ON _tandem_agents(pool);
CREATE TABLE IF NOT EXISTS _tandem_registry_pools (
    pool TEXT PRIMARY KEY, idx INTEGER NOT NULL
) WITHOUT ROWID;
-- The mesh: where each registered agent's mesh listens (gone with its row), what an agent may
-- announce (no row: anything), and what the agents a join token enrols may announce. allow is a
-- JSON array of CIDRs and domain patterns.
CREATE TABLE IF NOT EXISTS _tandem_mesh_members (
    name TEXT PRIMARY KEY, mesh TEXT NOT NULL, address TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS _tandem_mesh_announce (
    name TEXT PRIMARY KEY, allow TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS _tandem_join_token_announce (
    token_id TEXT PRIMARY KEY, allow TEXT NOT NULL
) WITHOUT ROWID;
-- Scoped credentials of the client API: the secret only as its hash, grants a JSON array.
CREATE TABLE IF NOT EXISTS _tandem_credentials (
    id TEXT PRIMARY KEY, name TEXT NOT NULL, secret_sha256 BLOB NOT NULL, grants TEXT NOT NULL,
    created_at INTEGER NOT NULL, expires_at INTEGER, revoked_at INTEGER
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS _tandem_credentials_name ON _tandem_credentials(name);
-- Who changed credentials, signing keys, join tokens and agents' revocation, and when; detail is JSON.
CREATE TABLE IF NOT EXISTS _tandem_audit (
    seq INTEGER PRIMARY KEY, at INTEGER NOT NULL, who TEXT NOT NULL, action TEXT NOT NULL,
    detail TEXT NOT NULL
);
";

const META_APPLIED: &str = "last_applied";
const META_MEMBERSHIP: &str = "membership";
/// A counter bumped by every successful write; key revisions and fencing tokens come from it, so
/// both only ever grow, also across a restore from backup.
pub(crate) const META_REVISION: &str = "revision";
/// The state machine's clock: the latest leader stamp applied.
pub(crate) const META_CLOCK: &str = "clock_ms";
/// A counter bumped by every change to the registry's agents, apart from `revision`: blocking
/// watches of the agents wait on it.
pub(crate) const META_REGISTRY_INDEX: &str = "registry_index";

const READERS: usize = 4;

/// A signing key as the replicated state holds it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct PublishedKey {
    pub kid: String,
    pub node_id: u64,
    /// The public key, a JWK as JSON.
    pub jwk: String,
    pub published_at_ms: i64,
    pub retired_at_ms: Option<i64>,
    /// When a retired key leaves the key set.
    pub remove_at_ms: Option<i64>,
}

/// Rows of a read-only query.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct QueryRows {
    pub columns: Vec<String>,
    /// Each column's declared type, lower-cased; for a column without one (an expression), the
    /// storage class of its value in the first row, or "" when there is none (as rqlite says it).
    pub types: Vec<String>,
    pub rows: Vec<Vec<SqlValue>>,
}

/// Why a query that writes is refused; it begins with rqlite's words for it, which rqlite
/// clients look for.
pub const QUERY_WRITES: &str = "attempt to change database via query operation: send this statement to /v1/sql/execute (rqlite clients: /db/execute) so that it is replicated";

/// The largest answer a query may build, so that one read cannot exhaust the node's memory.
pub const MAX_QUERY_RESULT_BYTES: usize = 64 * 1024 * 1024;

pub struct StateDb {
    path: PathBuf,
    writer: Mutex<Connection>,
    write_guard: SqlGuard,
    readers: Vec<(Mutex<Connection>, SqlGuard)>,
    next_reader: AtomicUsize,
    clock_ms: AtomicI64,
    /// The registry index as of the last committed apply.
    registry_changes: tokio::sync::watch::Sender<u64>,
    /// Grows whenever the published key set may have changed, so verifiers decode it again.
    keys_version: AtomicU64,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn open_connection(path: &Path, guard: &SqlGuard) -> rusqlite::Result<Connection> {
    let mut conn = Connection::open(path)?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    // The Raft log is the durability: the state machine may lose its tail on power loss, and is
    // brought back by replaying the log, so it does not fsync on every commit.
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    guard.install(&mut conn)?;
    Ok(conn)
}

/// Is this SQLite error a property of the statement (same on every replica) or of this machine?
fn is_local_failure(e: &rusqlite::Error) -> bool {
    use rusqlite::ErrorCode::*;
    match e {
        rusqlite::Error::SqliteFailure(f, _) => matches!(
            f.code,
            DiskFull
                | SystemIoFailure
                | DatabaseCorrupt
                | OutOfMemory
                | CannotOpen
                | NotADatabase
                | FileLockingProtocolFailed
        ),
        _ => false,
    }
}

/// Where a command sits: its entry's log index, and its place in that entry (0 unless the entry
/// is a batch of commands).
type CommandAt = (u64, usize);

/// How applying a batch of entries ended.
enum Batch {
    Applied(Vec<serde_json::Value>),
    /// This command was stopped, which undid the batch's transaction.
    Stopped(CommandAt, Rejection),
}

impl StateDb {
    pub fn open(path: &Path) -> Result<StateDb, StoreError> {
        let open_err = |source| StoreError::Open {
            path: path.display().to_string(),
            source,
        };
        let write_guard = SqlGuard::default();
        let writer = open_connection(path, &write_guard).map_err(open_err)?;
        prepare_schema(&writer).map_err(open_err)?;
        let mut readers = Vec::with_capacity(READERS);
        for _ in 0..READERS {
            let guard = SqlGuard::default();
            let conn = open_connection(path, &guard).map_err(open_err)?;
            conn.pragma_update(None, "query_only", "ON")
                .map_err(open_err)?;
            readers.push((Mutex::new(conn), guard));
        }
        let db = StateDb {
            path: path.to_path_buf(),
            writer: Mutex::new(writer),
            write_guard,
            readers,
            next_reader: AtomicUsize::new(0),
            clock_ms: AtomicI64::new(0),
            registry_changes: tokio::sync::watch::Sender::new(0),
            keys_version: AtomicU64::new(0),
        };
        db.reload_watched(&lock(&db.writer))?;
        Ok(db)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The latest leader stamp applied: what this replica takes as "now" when it decides whether
    /// something has expired.
    pub fn clock_ms(&self) -> i64 {
        self.clock_ms.load(Ordering::SeqCst)
    }

    /// Reloads what is kept beside the database (the clock, the registry index) from it.
    fn reload_watched(&self, conn: &Connection) -> Result<(), StoreError> {
        let clock = meta::read_i64(conn, META_CLOCK)?;
        self.clock_ms.store(clock, Ordering::SeqCst);
        let registry_index = meta::read_i64(conn, META_REGISTRY_INDEX)?;
        self.publish_registry_index(registry_index.max(0) as u64);
        Ok(())
    }

    /// Tells the registry's watchers of `index`, if it is not the one they have.
    fn publish_registry_index(&self, index: u64) {
        self.registry_changes.send_if_modified(|current| {
            let changed = *current != index;
            *current = index;
            changed
        });
    }

    /// The last log id applied and the membership in force, as stored with the rows.
    pub fn applied_state(&self) -> Result<(Option<LogId>, StoredMembership), StoreError> {
        let conn = lock(&self.writer);
        Self::applied_state_of(&conn)
    }

    fn applied_state_of(
        conn: &Connection,
    ) -> Result<(Option<LogId>, StoredMembership), StoreError> {
        let applied = meta::read_json(conn, META_APPLIED)?.flatten();
        let membership = meta::read_json(conn, META_MEMBERSHIP)?.unwrap_or_default();
        Ok((applied, membership))
    }

    /// Applies a batch of committed entries in one SQLite transaction, each command in its own
    /// savepoint so that a rejected one leaves no trace. Answers one result per entry.
    pub fn apply(&self, entries: &[Entry]) -> Result<Vec<serde_json::Value>, StoreError> {
        let mut conn = lock(&self.writer);
        let mut stopped = HashMap::new();
        loop {
            match self.apply_batch(&mut conn, entries, &stopped)? {
                Batch::Applied(answers) => return Ok(answers),
                // SQLite rolled back the whole transaction when it stopped the statement: apply
                // the batch again from the start, with that command rejected without running.
                Batch::Stopped(step, rejection) => {
                    stopped.insert(step, rejection);
                }
            }
        }
    }

    /// Applies `entries` in one transaction, answering the commands in `stopped` with their
    /// rejection instead of running them.
    fn apply_batch(
        &self,
        conn: &mut Connection,
        entries: &[Entry],
        stopped: &HashMap<CommandAt, Rejection>,
    ) -> Result<Batch, StoreError> {
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let mut clock = self.clock_ms();
        let mut counters = Counters {
            revision: meta::read_i64(&*tx, META_REVISION)? as u64,
            registry_index: meta::read_i64(&*tx, META_REGISTRY_INDEX)? as u64,
        };
        let registry_index_before = counters.registry_index;
        let mut keys_changed = false;
        let mut last_applied = None;
        let mut membership = None;
        let mut answers = Vec::with_capacity(entries.len());
        for entry in entries {
            last_applied = Some(entry.log_id);
            let applied: Applied = match &entry.payload {
                EntryPayload::Blank => Ok(Outcome::Nothing),
                EntryPayload::Membership(m) => {
                    membership = Some(StoredMembership::new(Some(entry.log_id), m.clone()));
                    Ok(Outcome::Nothing)
                }
                EntryPayload::Normal(proposal) => {
                    clock = clock.max(proposal.stamped_at_ms);
                    // A batch answers one result per command, in order; any other entry one.
                    let (commands, batched) = match Command::decode(&proposal.command) {
                        Err(detail) => {
                            return Err(StoreError::NewerEntry {
                                index: entry.log_id.index,
                                detail,
                            })
                        }
                        Ok(Command::Batch(commands)) if !commands.is_empty() => (commands, true),
                        Ok(command) => (vec![command], false),
                    };
                    let mut results = Vec::with_capacity(commands.len());
                    for (position, command) in commands.iter().enumerate() {
                        keys_changed |= command.changes_keys();
                        let step = (entry.log_id.index, position);
                        match self.apply_step(&tx, command, step, stopped, clock, &mut counters)? {
                            Step::Done(applied) => results.push(applied),
                            Step::Stopped(rejection) => return Ok(Batch::Stopped(step, rejection)),
                        }
                    }
                    if batched {
                        let values = results.iter().map(|applied| {
                            serde_json::to_value(applied).unwrap_or(serde_json::Value::Null)
                        });
                        answers.push(serde_json::Value::Array(values.collect()));
                        continue;
                    }
                    results.pop().unwrap_or(Ok(Outcome::Nothing))
                }
            };
            answers.push(serde_json::to_value(&applied).unwrap_or(serde_json::Value::Null));
        }
        if let Some(applied) = last_applied {
            meta::write(
                &*tx,
                META_APPLIED,
                &serde_json::to_string(&Some(applied)).unwrap_or_default(),
            )?;
        }
        if let Some(m) = membership {
            meta::write(
                &*tx,
                META_MEMBERSHIP,
                &serde_json::to_string(&m).unwrap_or_default(),
            )?;
        }
        meta::write(&*tx, META_REVISION, &counters.revision.to_string())?;
        if counters.registry_index != registry_index_before {
            meta::write(
                &*tx,
                META_REGISTRY_INDEX,
                &counters.registry_index.to_string(),
            )?;
        }
        meta::write(&*tx, META_CLOCK, &clock.to_string())?;
        tx.commit()?;
        self.clock_ms.store(clock, Ordering::SeqCst);
        // Only now that the change is durable in the database may watchers read it.
        self.publish_registry_index(counters.registry_index);
        if keys_changed {
            self.keys_version.fetch_add(1, Ordering::SeqCst);
        }
        Ok(Batch::Applied(answers))
    }

    /// Applies one command (see [`apply::apply_step`]). A command that an earlier attempt
    /// found runs out of steps is answered with that rejection without running.
    fn apply_step(
        &self,
        tx: &rusqlite::Transaction<'_>,
        command: &Command,
        step: CommandAt,
        stopped: &HashMap<CommandAt, Rejection>,
        clock: i64,
        counters: &mut Counters,
    ) -> Result<Step, StoreError> {
        if let Some(rejection) = stopped.get(&step) {
            return Ok(Step::Done(Err(rejection.clone())));
        }
        let user = SqliteStatements { db: self, conn: tx };
        apply::apply_step(&**tx, &user, command, clock, counters)
    }

    /// Prepares a user statement for a write, with its parameters bound; a nondeterministic
    /// one is refused.
    fn prepare_user_statement<'c>(
        &self,
        conn: &'c Connection,
        statement: &Statement,
    ) -> Result<rusqlite::Statement<'c>, ApplyError> {
        if let Some(reason) = sql::nondeterminism(&statement.sql, &statement.params) {
            return Err(Rejection::invalid(reason).into());
        }
        self.write_guard.set(Some(Mode::Write));
        let prepared = conn.prepare(&statement.sql);
        self.write_guard.set(None);
        let mut stmt = prepared.map_err(|e| self.user_error(&self.write_guard, e))?;
        bind(&mut stmt, &statement.params)?;
        Ok(stmt)
    }

    fn execute_user_statement(
        &self,
        conn: &Connection,
        statement: &Statement,
    ) -> Result<StatementResult, ApplyError> {
        let mut stmt = self.prepare_user_statement(conn, statement)?;
        self.execute_prepared(conn, &mut stmt)
    }

    /// Runs a user statement in a write, answering its rows when it only reads.
    fn answer_user_statement(
        &self,
        conn: &Connection,
        statement: &Statement,
    ) -> Result<SqlAnswer, ApplyError> {
        let mut stmt = self.prepare_user_statement(conn, statement)?;
        if stmt.readonly() && stmt.column_count() > 0 {
            return Ok(SqlAnswer::Rows(
                self.collect_rows(&mut stmt, &self.write_guard)?,
            ));
        }
        Ok(SqlAnswer::Changed(self.execute_prepared(conn, &mut stmt)?))
    }

    fn execute_prepared(
        &self,
        conn: &Connection,
        stmt: &mut rusqlite::Statement<'_>,
    ) -> Result<StatementResult, ApplyError> {
        let _limit = self.write_guard.limit_steps();
        // `changes()` keeps the count of the last INSERT/UPDATE/DELETE even across DDL, so
        // count this statement's own changes from the running total.
        let changes_before = conn.total_changes();
        let mut rows = stmt.raw_query();
        // Drain rows so statements with RETURNING run to completion.
        while rows
            .next()
            .map_err(|e| self.user_error(&self.write_guard, e))?
            .is_some()
        {}
        drop(rows);
        Ok(StatementResult {
            rows_affected: conn.total_changes() - changes_before,
            last_insert_id: if self.write_guard.inserts() {
                conn.last_insert_rowid()
            } else {
                0
            },
        })
    }

    /// Steps a prepared statement to its end, keeping its rows (at most
    /// [`MAX_QUERY_RESULT_BYTES`] of them).
    fn collect_rows(
        &self,
        stmt: &mut rusqlite::Statement<'_>,
        guard: &SqlGuard,
    ) -> Result<QueryRows, ApplyError> {
        let _limit = guard.limit_steps();
        let mut rows = stmt.raw_query();
        // The columns are read once the statement has run: SQLite prepares it again when the
        // schema changed since this connection last read it, and that can change its columns.
        let mut described: Option<(Vec<String>, Vec<String>)> = None;
        let mut out: Vec<Vec<SqlValue>> = Vec::new();
        let mut result_bytes = 0;
        while let Some(row) = rows.next().map_err(|e| self.user_error(guard, e))? {
            let width = described
                .get_or_insert_with(|| describe(row.as_ref()))
                .0
                .len();
            let mut values = Vec::with_capacity(width);
            for i in 0..width {
                let value = SqlValue::from(row.get_ref(i).map_err(|e| self.user_error(guard, e))?);
                result_bytes += value.size_in_memory();
                values.push(value);
            }
            if result_bytes > MAX_QUERY_RESULT_BYTES {
                return Err(Rejection::invalid(format!(
                    "the result is larger than {} MiB; select fewer rows or columns (LIMIT, WHERE)",
                    MAX_QUERY_RESULT_BYTES >> 20
                ))
                .into());
            }
            out.push(values);
        }
        drop(rows);
        let (columns, mut types) = described.unwrap_or_else(|| describe(stmt));
        if let Some(first) = out.first() {
            for (declared, value) in types.iter_mut().zip(first) {
                if declared.is_empty() {
                    *declared = value.storage_class().to_string();
                }
            }
        }
        Ok(QueryRows {
            columns,
            types,
            rows: out,
        })
    }

    /// Turns a SQLite error from a user statement into a rejection, unless it is this machine's
    /// own failure (disk full, I/O error), which must stop the state machine rather than make
    /// this replica differ from the others.
    fn user_error(&self, guard: &SqlGuard, e: rusqlite::Error) -> ApplyError {
        if is_local_failure(&e) {
            return ApplyError::Store(StoreError::Sqlite(e));
        }
        if e.sqlite_error_code() == Some(rusqlite::ErrorCode::OperationInterrupted) {
            return ApplyError::Stopped(Rejection::invalid(format!(
                "the statement took more than {STATEMENT_STEP_LIMIT} steps of work and was stopped; \
                 bound it (a recursive query needs a condition that ends it)"
            )));
        }
        let message = match guard.take_denial() {
            Some(reason) => reason,
            None => match &e {
                rusqlite::Error::MultipleStatement => {
                    "several statements in one string; send each as its own entry in \"statements\""
                        .into()
                }
                rusqlite::Error::SqliteFailure(_, Some(msg)) => msg.clone(),
                other => other.to_string(),
            },
        };
        ApplyError::Rejected(Rejection::invalid(message))
    }

    fn with_reader<T>(
        &self,
        f: impl FnOnce(&Connection, &SqlGuard) -> Result<T, ReadError>,
    ) -> Result<T, ReadError> {
        let start = self.next_reader.fetch_add(1, Ordering::Relaxed);
        for i in 0..self.readers.len() {
            let (conn, guard) = &self.readers[(start + i) % self.readers.len()];
            if let Ok(conn) = conn.try_lock() {
                return f(&conn, guard);
            }
        }
        let (conn, guard) = &self.readers[start % self.readers.len()];
        f(&lock(conn), guard)
    }

    /// Runs a read-only statement on this replica's copy.
    pub fn query(&self, statement: &Statement) -> Result<QueryRows, ReadError> {
        self.with_reader(|conn, guard| self.query_on(conn, guard, statement))
    }

    /// Runs read-only statements on this replica's copy, all on one snapshot; each answers on
    /// its own (with the seconds it took), so one that fails leaves the others their rows.
    pub fn query_each(
        &self,
        statements: &[Statement],
    ) -> Result<Vec<(SqlAnswer, f64)>, StoreError> {
        self.with_reader(|conn, guard| {
            conn.execute_batch("BEGIN").map_err(StoreError::from)?;
            let mut answers = Vec::with_capacity(statements.len());
            for statement in statements {
                let started = std::time::Instant::now();
                let answer = self.query_on(conn, guard, statement);
                let seconds = started.elapsed().as_secs_f64();
                match answer {
                    Ok(rows) => answers.push((SqlAnswer::Rows(rows), seconds)),
                    Err(ReadError::Rejected(rejection)) => {
                        answers.push((SqlAnswer::Failed(rejection.message), seconds))
                    }
                    Err(ReadError::Store(e)) => {
                        let _ = conn.execute_batch("ROLLBACK");
                        return Err(e.into());
                    }
                }
            }
            conn.execute_batch("COMMIT").map_err(StoreError::from)?;
            Ok(answers)
        })
        .map_err(read_store_error)
    }

    /// Whether `sql` only reads; one that cannot be prepared counts as a read, so that its
    /// error is answered without a round through the log.
    pub fn is_read_only(&self, sql: &str) -> bool {
        self.with_reader(|conn, guard| {
            guard.set(Some(Mode::Read));
            let prepared = conn.prepare(sql);
            guard.set(None);
            let _ = guard.take_denial();
            Ok(prepared.map(|stmt| stmt.readonly()).unwrap_or(true))
        })
        .unwrap_or(true)
    }

    fn query_on(
        &self,
        conn: &Connection,
        guard: &SqlGuard,
        statement: &Statement,
    ) -> Result<QueryRows, ReadError> {
        guard.set(Some(Mode::Read));
        let prepared = conn.prepare(&statement.sql);
        guard.set(None);
        let mut stmt = prepared.map_err(|e| ReadError::from(self.user_error(guard, e)))?;
        if !stmt.readonly() {
            return Err(Rejection::invalid(QUERY_WRITES).into());
        }
        bind(&mut stmt, &statement.params).map_err(ReadError::from)?;
        Ok(self.collect_rows(&mut stmt, guard)?)
    }

    /// Grows whenever the published key set may have changed: a key was published, retired or
    /// expired, or the whole state was replaced. Read it before
    /// [`StateReads::keys_published`].
    pub fn keys_version(&self) -> u64 {
        self.keys_version.load(Ordering::SeqCst)
    }

    /// The registry index, updated once each apply that changed the agents has committed, so a
    /// blocking watch can wait for an index above the one it has seen.
    pub fn registry_changes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.registry_changes.subscribe()
    }

    /// Bytes of the database file that hold no rows: pages freed by deletes, which SQLite fills
    /// again before it grows the file.
    pub fn reusable_bytes(&self) -> Result<u64, StoreError> {
        self.with_reader(|conn, _| {
            let pragma = |name: &str| -> Result<u64, ReadError> {
                let value: i64 = conn
                    .query_row(&format!("PRAGMA {name}"), [], |row| row.get(0))
                    .map_err(StoreError::from)?;
                Ok(u64::try_from(value).unwrap_or(0))
            };
            Ok(pragma("freelist_count")? * pragma("page_size")?)
        })
        .map_err(read_store_error)
    }

    /// Writes a consistent copy of the whole database to `target` (which must not exist).
    pub fn copy_to(&self, target: &Path) -> Result<(), StoreError> {
        let target = target.to_str().ok_or_else(|| StoreError::Corrupt {
            what: "path",
            detail: format!("{} is not valid UTF-8", target.display()),
        })?;
        // A connection of its own: the pooled readers are query-only, which VACUUM INTO refuses.
        let conn = Connection::open(&self.path).map_err(|source| StoreError::Open {
            path: self.path.display().to_string(),
            source,
        })?;
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        conn.execute("VACUUM INTO ?1", [target])?;
        Ok(())
    }

    /// Replaces the whole database with the one at `source`, then reloads the clock and the
    /// registry index.
    pub fn replace_with(&self, source: &Path) -> Result<(), StoreError> {
        let mut conn = lock(&self.writer);
        conn.restore(
            rusqlite::MAIN_DB,
            source,
            None::<fn(rusqlite::backup::Progress)>,
        )?;
        prepare_schema(&conn)?;
        self.reload_watched(&conn)?;
        self.keys_version.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }

    /// Reads the applied state stored inside another database file (a snapshot or backup).
    pub fn applied_state_in(path: &Path) -> Result<(Option<LogId>, StoredMembership), StoreError> {
        let conn = Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .map_err(|source| StoreError::Open {
                path: path.display().to_string(),
                source,
            })?;
        Self::applied_state_of(&conn)
    }

    /// Clears the Raft bookkeeping of a database file so it can seed a new cluster: used when
    /// restoring a backup.
    pub fn forget_raft_state(path: &Path) -> Result<(), StoreError> {
        let conn = Connection::open(path).map_err(|source| StoreError::Open {
            path: path.display().to_string(),
            source,
        })?;
        prepare_schema(&conn)?;
        conn.execute(
            "DELETE FROM _tandem_meta WHERE key IN (?1, ?2)",
            [META_APPLIED, META_MEMBERSHIP],
        )?;
        Ok(())
    }
}

/// Reads are served by this replica's copy, at the latest leader stamp it applied.
impl StateReads for StateDb {
    fn read_tables(&self, read: &mut TablesRead<'_>) -> Result<(), StoreError> {
        let now = self.clock_ms();
        self.with_reader(|conn, _| Ok(read(conn, now)?))
            .map_err(read_store_error)
    }
}

/// Users' statements on SQLite, in the savepoint of the command that carries them.
struct SqliteStatements<'a> {
    db: &'a StateDb,
    conn: &'a Connection,
}

impl UserStatements for SqliteStatements<'_> {
    fn execute(&self, statement: &Statement) -> Result<StatementResult, ApplyError> {
        self.db.execute_user_statement(self.conn, statement)
    }

    fn answer(&self, statement: &Statement) -> Result<SqlAnswer, ApplyError> {
        self.db.answer_user_statement(self.conn, statement)
    }
}

/// Creates what is missing of Tandem's tables, and rebuilds as rowid tables the
/// [`VALUE_TABLES`] that a database made by an earlier release holds WITHOUT ROWID: each in one
/// transaction, rows unchanged, so queries answer exactly as before.
fn prepare_schema(conn: &Connection) -> rusqlite::Result<()> {
    for (table, columns) in VALUE_TABLES {
        conn.execute(&format!("CREATE TABLE IF NOT EXISTS {table} {columns}"), [])?;
    }
    for (table, columns) in VALUE_TABLES {
        let without_rowid: bool = conn
            .query_row(
                "SELECT wr FROM pragma_table_list WHERE schema = 'main' AND name = ?1",
                [table],
                |row| row.get(0),
            )
            .optional()?
            .unwrap_or(false);
        if without_rowid {
            let started = std::time::Instant::now();
            let rebuilt = format!("{table}_rebuilt");
            let rebuild = conn.unchecked_transaction()?;
            rebuild.execute_batch(&format!(
                "CREATE TABLE {rebuilt} {columns};
                 INSERT INTO {rebuilt} SELECT * FROM {table};
                 DROP TABLE {table};
                 ALTER TABLE {rebuilt} RENAME TO {table};"
            ))?;
            // The table's indexes went with it; the schema makes them again.
            rebuild.execute_batch(SCHEMA)?;
            rebuild.commit()?;
            tracing::info!(
                table,
                took_ms = started.elapsed().as_millis() as u64,
                "rebuilt a table of the state database as a rowid table, which keeps values of a kilobyte or two in its pages (once, after an upgrade)"
            );
        }
    }
    conn.execute_batch(SCHEMA)
}

/// A statement's column names and declared types (lower-cased, "" where none is declared).
fn describe(stmt: &rusqlite::Statement<'_>) -> (Vec<String>, Vec<String>) {
    stmt.columns()
        .map(|c| {
            (
                c.name().to_string(),
                c.decl_type().unwrap_or_default().to_ascii_lowercase(),
            )
        })
        .unzip()
}

fn read_store_error(e: ReadError) -> StoreError {
    match e {
        ReadError::Store(s) => s,
        ReadError::Rejected(r) => StoreError::Corrupt {
            what: "query",
            detail: r.message,
        },
    }
}

fn bind(stmt: &mut rusqlite::Statement<'_>, params: &Params) -> Result<(), ApplyError> {
    let expected = stmt.parameter_count();
    match params {
        Params::Positional(values) => {
            if values.len() != expected {
                return Err(Rejection::invalid(format!(
                    "the statement has {expected} parameter(s) but {} were given",
                    values.len()
                ))
                .into());
            }
            for (i, value) in values.iter().enumerate() {
                stmt.raw_bind_parameter(i + 1, value)
                    .map_err(|e| Rejection::invalid(e.to_string()))?;
            }
        }
        Params::Named(values) => {
            for (name, value) in values {
                let index = stmt
                    .parameter_index(name)
                    .map_err(|e| Rejection::invalid(e.to_string()))?
                    .ok_or_else(|| {
                        Rejection::invalid(format!("the statement has no parameter {name}"))
                    })?;
                stmt.raw_bind_parameter(index, value)
                    .map_err(|e| Rejection::invalid(e.to_string()))?;
            }
        }
    }
    Ok(())
}
