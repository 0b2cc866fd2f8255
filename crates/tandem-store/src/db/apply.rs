//! Applying one command to Tandem's tables, whichever engine holds them: what it works with,
//! how it can fail, and which area of the tables each command changes.

use crate::command::{Applied, Command, Outcome, Rejection, SqlAnswer, Statement, StatementResult};
use crate::db::{auth, cache, keys, kv, locks, registry};
use crate::error::{ReadError, StoreError};
use crate::tables::{params, Tables};

/// The store's counters while a batch of entries is applied; each command's savepoint puts
/// them back as they were when the command is rejected.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Counters {
    /// The write counter, from which key revisions and fencing tokens come.
    pub revision: u64,
    /// The agent registry's index, which blocking watches wait on.
    pub registry_index: u64,
}

/// One command being applied: its savepoint, the leader's stamp, and the store's counters.
pub(super) struct Applying<'a> {
    pub conn: &'a dyn Tables,
    pub now: i64,
    pub revision: &'a mut u64,
    pub registry_index: &'a mut u64,
}

impl Applying<'_> {
    /// Counts one change to the agent registry, answering its index.
    pub fn count_registry_change(&mut self) -> u64 {
        *self.registry_index += 1;
        *self.registry_index
    }

    /// Counts one write, answering its revision.
    pub fn count_write(&mut self) -> u64 {
        *self.revision += 1;
        *self.revision
    }

    /// The revision the next write will get.
    pub fn next_revision(&self) -> u64 {
        *self.revision + 1
    }
}

pub enum ApplyError {
    Rejected(Rejection),
    /// A user statement ran out of steps; SQLite has rolled back the whole transaction.
    Stopped(Rejection),
    Store(StoreError),
}

impl From<rusqlite::Error> for ApplyError {
    fn from(e: rusqlite::Error) -> Self {
        ApplyError::Store(StoreError::Sqlite(e))
    }
}

impl From<StoreError> for ApplyError {
    fn from(e: StoreError) -> Self {
        ApplyError::Store(e)
    }
}

impl From<Rejection> for ApplyError {
    fn from(r: Rejection) -> Self {
        ApplyError::Rejected(r)
    }
}

impl From<ApplyError> for ReadError {
    fn from(e: ApplyError) -> Self {
        match e {
            ApplyError::Rejected(r) | ApplyError::Stopped(r) => ReadError::Rejected(r),
            ApplyError::Store(s) => ReadError::Store(s),
        }
    }
}

/// Users' own statements, which each engine runs in its own dialect, in the transaction (or
/// savepoint) the command is applied in.
pub trait UserStatements {
    /// Runs one statement of a write, answering what it changed.
    fn execute(&self, statement: &Statement) -> Result<StatementResult, ApplyError>;

    /// Runs one statement of a write, answering its rows when it only reads and what it
    /// changed otherwise. A statement that fails leaves the transaction as it was before it.
    fn answer(&self, statement: &Statement) -> Result<SqlAnswer, ApplyError>;
}

/// Runs the statements of one request in order ([`Command::Sql`]); the savepoint around the
/// command makes them all apply or none.
fn run_all(
    applying: &mut Applying<'_>,
    user: &dyn UserStatements,
    statements: &[Statement],
) -> Result<Outcome, ApplyError> {
    let mut results = Vec::with_capacity(statements.len());
    for (i, statement) in statements.iter().enumerate() {
        let numbered = |r: Rejection| Rejection {
            kind: r.kind,
            message: format!("statement {}: {}", i + 1, r.message),
        };
        let result = user.execute(statement).map_err(|e| match e {
            ApplyError::Rejected(r) => ApplyError::Rejected(numbered(r)),
            ApplyError::Stopped(r) => ApplyError::Stopped(numbered(r)),
            other => other,
        })?;
        results.push(result);
    }
    applying.count_write();
    Ok(Outcome::Sql { results })
}

/// Runs the statements of one request each on its own ([`Command::SqlEach`]).
fn run_each(
    applying: &mut Applying<'_>,
    user: &dyn UserStatements,
    statements: &[Statement],
    all_or_nothing: bool,
) -> Result<Outcome, ApplyError> {
    let conn = applying.conn;
    // User statements may not control transactions, so this name cannot clash with theirs.
    if all_or_nothing {
        conn.execute("SAVEPOINT tandem_sql_each", params![])?;
    }
    let mut answers = Vec::with_capacity(statements.len());
    for statement in statements {
        let started = std::time::Instant::now();
        let answer = user.answer(statement);
        let seconds = started.elapsed().as_secs_f64();
        match answer {
            Ok(answer) => answers.push((answer, seconds)),
            Err(ApplyError::Rejected(rejection)) => {
                answers.push((SqlAnswer::Failed(rejection.message), seconds));
                if all_or_nothing {
                    conn.execute("ROLLBACK TO SAVEPOINT tandem_sql_each", params![])?;
                    conn.execute("RELEASE SAVEPOINT tandem_sql_each", params![])?;
                    return Ok(Outcome::SqlAnswers { answers });
                }
            }
            Err(other) => return Err(other),
        }
    }
    if all_or_nothing {
        conn.execute("RELEASE SAVEPOINT tandem_sql_each", params![])?;
    }
    applying.count_write();
    Ok(Outcome::SqlAnswers { answers })
}

/// How applying one command ended.
pub(crate) enum Step {
    Done(Applied),
    /// It ran out of steps; SQLite has rolled back the whole transaction.
    Stopped(Rejection),
}

/// Applies one command in a savepoint of the transaction under way: a rejected command leaves
/// no trace, and the counters are as they were before it.
pub(crate) fn apply_step(
    conn: &dyn Tables,
    user: &dyn UserStatements,
    command: &Command,
    now: i64,
    counters: &mut Counters,
) -> Result<Step, StoreError> {
    // User statements may not control transactions, so this name cannot clash with theirs.
    conn.execute("SAVEPOINT tandem_command", params![])?;
    let before = *counters;
    let applying = &mut Applying {
        conn,
        now,
        revision: &mut counters.revision,
        registry_index: &mut counters.registry_index,
    };
    match apply_command(applying, user, command) {
        Ok(outcome) => {
            conn.execute("RELEASE SAVEPOINT tandem_command", params![])?;
            Ok(Step::Done(Ok(outcome)))
        }
        Err(ApplyError::Rejected(rejection)) => {
            *counters = before;
            conn.execute("ROLLBACK TO SAVEPOINT tandem_command", params![])?;
            conn.execute("RELEASE SAVEPOINT tandem_command", params![])?;
            Ok(Step::Done(Err(rejection)))
        }
        Err(ApplyError::Stopped(rejection)) => Ok(Step::Stopped(rejection)),
        Err(ApplyError::Store(e)) => Err(e),
    }
}

/// Applies one command, in the area that holds what it changes.
fn apply_command(
    applying: &mut Applying<'_>,
    user: &dyn UserStatements,
    command: &Command,
) -> Result<Outcome, ApplyError> {
    command.validate()?;
    match command {
        Command::Sql { statements, fence } => {
            locks::check_fence(applying.conn, fence, applying.now)?;
            run_all(applying, user, statements)
        }
        Command::SqlEach {
            statements,
            all_or_nothing,
        } => run_each(applying, user, statements, *all_or_nothing),
        Command::KvPut {
            key,
            value,
            ttl_ms,
            if_revision,
            fence,
        } => kv::put(applying, key, value, *ttl_ms, *if_revision, fence),
        Command::KvDelete {
            key,
            if_revision,
            fence,
        } => kv::delete(applying, key, *if_revision, fence),
        Command::CachePut {
            namespace,
            key,
            value,
            ttl_ms,
            fence,
        } => cache::put(applying, namespace, key, value, *ttl_ms, fence),
        Command::CacheDelete {
            namespace,
            key,
            fence,
        } => cache::delete(applying, namespace, key, fence),
        Command::CacheTake { namespace, key } => Ok(Outcome::Taken {
            value: cache::take(applying, namespace, key)?,
        }),
        Command::LockAcquire {
            name,
            holder,
            ttl_ms,
        } => locks::acquire(applying, name, holder, *ttl_ms),
        Command::LockRenew {
            name,
            holder,
            token,
            ttl_ms,
        } => locks::renew(applying, name, holder, *token, *ttl_ms),
        Command::LockRelease {
            name,
            holder,
            token,
        } => locks::release(applying, name, holder, *token),
        Command::Expire => Ok(Outcome::Expired {
            removed: expire(applying.conn, applying.now)?,
        }),
        Command::KeyPublish { kid, node_id, jwk } => keys::publish(applying, kid, *node_id, jwk),
        Command::KeyRetire { kid, keep_for_ms } => keys::retire(applying, kid, *keep_for_ms),
        Command::Registry(command) => registry::apply(applying, command),
        Command::Auth(command) => auth::apply(applying, command),
        Command::Audited { by, command } => {
            let outcome = apply_command(applying, user, command)?;
            if let Some((action, detail)) = command.audit_record() {
                auth::record_audit(applying.conn, applying.now, by, action, &detail)?;
            }
            Ok(outcome)
        }
        // The replication layer's own entry made the change; the audit record is all this one
        // adds.
        Command::MembershipChanged(_) => Ok(Outcome::Nothing),
        // Only the top level of an entry may be a batch; the engine unpacks it.
        Command::Batch(_) => Err(Rejection::invalid("a batch inside a batch").into()),
    }
}

/// Removes every key, cache entry, lease and join token expired by `now`, and every retired
/// signing key whose last token has expired; answers how many.
fn expire(conn: &dyn Tables, now: i64) -> Result<u64, StoreError> {
    Ok(kv::expire(conn, now)?
        + cache::expire(conn, now)?
        + locks::expire(conn, now)?
        + keys::expire(conn, now)?
        + registry::expire(conn, now)?)
}
