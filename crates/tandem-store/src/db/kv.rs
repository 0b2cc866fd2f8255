//! Key/value entries in SQLite: loads, asks [`crate::rules`], stores.

use rusqlite::{params, Connection, OptionalExtension};

use crate::command::{Fence, Outcome};
use crate::db::apply::{ApplyError, Applying};
use crate::db::locks;
use crate::rules::{revision, ttl};

/// A key/value entry as a read returns it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KvEntry {
    pub value: Vec<u8>,
    pub revision: u64,
    pub expires_at_ms: Option<i64>,
}

/// The key's entry, unless it is absent or expired at `now`.
pub(super) fn row(conn: &Connection, key: &str, now: i64) -> rusqlite::Result<Option<KvEntry>> {
    let row = conn
        .prepare_cached("SELECT value, revision, expires_at FROM _tandem_kv WHERE key = ?1")?
        .query_row([key], |r| {
            Ok(KvEntry {
                value: r.get(0)?,
                revision: r.get::<_, i64>(1)? as u64,
                expires_at_ms: r.get(2)?,
            })
        })
        .optional()?;
    Ok(row.filter(|e| !ttl::is_expired(e.expires_at_ms, now)))
}

/// Keys starting with `prefix` and sorting after `after` that have not expired at `now`, in
/// order, at most `limit`.
pub(super) fn list(
    conn: &Connection,
    prefix: &str,
    after: Option<&str>,
    limit: u32,
    now: i64,
) -> rusqlite::Result<Vec<String>> {
    let upper = format!("{prefix}\u{10FFFF}");
    let mut stmt = conn.prepare_cached(
        "SELECT key, expires_at FROM _tandem_kv WHERE key >= ?1 AND key < ?2 AND key > ?3
         ORDER BY key",
    )?;
    // Rows are read one at a time, so the scan stops at the `limit`-th live key.
    let rows = stmt.query_map(params![prefix, upper, after.unwrap_or("")], |r| {
        Ok((r.get::<_, String>(0)?, r.get::<_, Option<i64>>(1)?))
    })?;
    let mut keys = Vec::new();
    for row in rows {
        if keys.len() >= limit as usize {
            break;
        }
        let (key, expires_at) = row?;
        if !ttl::is_expired(expires_at, now) {
            keys.push(key);
        }
    }
    Ok(keys)
}

/// Refuses the write unless `if_revision`, if given, is the key's revision now.
fn check_revision(
    conn: &Connection,
    key: &str,
    if_revision: Option<u64>,
    now: i64,
) -> Result<(), ApplyError> {
    let Some(expected) = if_revision else {
        return Ok(());
    };
    let stored = row(conn, key, now)?.map(|e| e.revision);
    Ok(revision::check_matches(key, expected, stored)?)
}

pub(super) fn put(
    applying: &mut Applying<'_>,
    key: &str,
    value: &[u8],
    ttl_ms: Option<u64>,
    if_revision: Option<u64>,
    fence: &Option<Fence>,
) -> Result<Outcome, ApplyError> {
    locks::check_fence(applying.conn, fence, applying.now)?;
    check_revision(applying.conn, key, if_revision, applying.now)?;
    let revision = applying.count_write();
    applying.conn.prepare_cached(
        "INSERT OR REPLACE INTO _tandem_kv (key, value, revision, expires_at) VALUES (?1, ?2, ?3, ?4)",
    )?
    .execute(params![key, value, revision as i64, ttl::expires_at(applying.now, ttl_ms)])?;
    Ok(Outcome::KvWritten { revision })
}

pub(super) fn delete(
    applying: &mut Applying<'_>,
    key: &str,
    if_revision: Option<u64>,
    fence: &Option<Fence>,
) -> Result<Outcome, ApplyError> {
    locks::check_fence(applying.conn, fence, applying.now)?;
    check_revision(applying.conn, key, if_revision, applying.now)?;
    let existed = row(applying.conn, key, applying.now)?.is_some();
    applying
        .conn
        .prepare_cached("DELETE FROM _tandem_kv WHERE key = ?1")?
        .execute([key])?;
    applying.count_write();
    Ok(Outcome::Deleted { existed })
}

/// Removes every entry expired by `now`; answers how many.
pub(super) fn expire(conn: &Connection, now: i64) -> rusqlite::Result<u64> {
    Ok(conn
        .prepare_cached("DELETE FROM _tandem_kv WHERE expires_at <= ?1")?
        .execute([ttl::expired_through(now)])? as u64)
}
