//! The TTL cache in SQLite: loads, asks [`crate::rules::ttl`], stores.

use rusqlite::{params, Connection, OptionalExtension};

use crate::command::{Fence, Outcome};
use crate::db::apply::{ApplyError, Applying};
use crate::db::locks;
use crate::rules::ttl;

/// The entry's value, unless it is absent or expired at `now`.
pub(super) fn row(
    conn: &Connection,
    namespace: &str,
    key: &str,
    now: i64,
) -> rusqlite::Result<Option<Vec<u8>>> {
    let row: Option<(Vec<u8>, Option<i64>)> = conn
        .prepare_cached(
            "SELECT value, expires_at FROM _tandem_cache WHERE namespace = ?1 AND key = ?2",
        )?
        .query_row([namespace, key], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    Ok(row
        .filter(|(_, at)| !ttl::is_expired(*at, now))
        .map(|(v, _)| v))
}

pub(super) fn put(
    applying: &mut Applying<'_>,
    namespace: &str,
    key: &str,
    value: &[u8],
    ttl_ms: Option<u64>,
    fence: &Option<Fence>,
) -> Result<Outcome, ApplyError> {
    locks::check_fence(applying.conn, fence, applying.now)?;
    applying.conn.prepare_cached(
        "INSERT OR REPLACE INTO _tandem_cache (namespace, key, value, expires_at) VALUES (?1, ?2, ?3, ?4)",
    )?
    .execute(params![namespace, key, value, ttl::expires_at(applying.now, ttl_ms)])?;
    applying.count_write();
    Ok(Outcome::CacheWritten)
}

pub(super) fn delete(
    applying: &mut Applying<'_>,
    namespace: &str,
    key: &str,
    fence: &Option<Fence>,
) -> Result<Outcome, ApplyError> {
    locks::check_fence(applying.conn, fence, applying.now)?;
    let existed = take(applying, namespace, key)?.is_some();
    Ok(Outcome::Deleted { existed })
}

/// Removes the entry, answering its value if it was live: whoever takes it first gets it.
pub(super) fn take(
    applying: &mut Applying<'_>,
    namespace: &str,
    key: &str,
) -> Result<Option<Vec<u8>>, ApplyError> {
    let value = row(applying.conn, namespace, key, applying.now)?;
    applying
        .conn
        .prepare_cached("DELETE FROM _tandem_cache WHERE namespace = ?1 AND key = ?2")?
        .execute([namespace, key])?;
    applying.count_write();
    Ok(value)
}

/// Removes every entry expired by `now`; answers how many.
pub(super) fn expire(conn: &Connection, now: i64) -> rusqlite::Result<u64> {
    Ok(conn
        .prepare_cached("DELETE FROM _tandem_cache WHERE expires_at <= ?1")?
        .execute([ttl::expired_through(now)])? as u64)
}
