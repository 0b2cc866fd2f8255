//! Applying one command to Tandem's tables, whichever engine holds them: what it works with,
//! how it can fail, and which area of the tables each command changes.

use crate::command::{Command, Outcome, Rejection, Statement};
use crate::db::{auth, cache, keys, kv, locks, registry};
use crate::error::{ReadError, StoreError};
use crate::tables::Tables;

/// The store's counters while a batch of entries is applied; each command's savepoint puts
/// them back as they were when the command is rejected.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct Counters {
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

pub(super) enum ApplyError {
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
pub(super) trait UserStatements {
    /// Runs the statements of one request in order, all or none ([`Command::Sql`]).
    fn run(
        &self,
        applying: &mut Applying<'_>,
        statements: &[Statement],
    ) -> Result<Outcome, ApplyError>;

    /// Runs the statements of one request each on its own ([`Command::SqlEach`]).
    fn run_each(
        &self,
        applying: &mut Applying<'_>,
        statements: &[Statement],
        all_or_nothing: bool,
    ) -> Result<Outcome, ApplyError>;
}

/// Applies one command, in the area that holds what it changes.
pub(super) fn apply_command(
    applying: &mut Applying<'_>,
    user: &dyn UserStatements,
    command: &Command,
) -> Result<Outcome, ApplyError> {
    command.validate()?;
    match command {
        Command::Sql { statements, fence } => {
            locks::check_fence(applying.conn, fence, applying.now)?;
            user.run(applying, statements)
        }
        Command::SqlEach {
            statements,
            all_or_nothing,
        } => user.run_each(applying, statements, *all_or_nothing),
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
