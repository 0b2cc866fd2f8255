//! Key/value entries in Tandem's tables: loads, asks [`crate::rules`], stores.

use crate::command::{Fence, Outcome};
use crate::db::apply::{ApplyError, Applying};
use crate::db::locks;
use crate::error::StoreError;
use crate::rules::{revision, ttl};
use crate::tables::{params, Tables};

/// A key/value entry as a read returns it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KvEntry {
    pub value: Vec<u8>,
    pub revision: u64,
    pub expires_at_ms: Option<i64>,
}

/// The key's entry, unless it is absent or expired at `now`.
pub(super) fn row(conn: &dyn Tables, key: &str, now: i64) -> Result<Option<KvEntry>, StoreError> {
    let row = conn.query_row(
        "SELECT value, revision, expires_at FROM _tandem_kv WHERE key = ?1",
        params![key],
        |mut r| {
            Ok(KvEntry {
                value: r.get(0)?,
                revision: r.get(1)?,
                expires_at_ms: r.get(2)?,
            })
        },
    )?;
    Ok(row.filter(|e| !ttl::is_expired(e.expires_at_ms, now)))
}

/// Keys starting with `prefix` and sorting after `after` that have not expired at `now`, in
/// order, at most `limit`.
pub(super) fn list(
    conn: &dyn Tables,
    prefix: &str,
    after: Option<&str>,
    limit: u32,
    now: i64,
) -> Result<Vec<String>, StoreError> {
    let upper = format!("{prefix}\u{10FFFF}");
    // Expired keys are left out by the query itself, so the scan stops at the `limit`-th live
    // key: the condition is `ttl::is_expired`'s.
    conn.query_map(
        "SELECT key FROM _tandem_kv WHERE key >= ?1 AND key < ?2 AND key > ?3
         AND (expires_at IS NULL OR expires_at > ?4) ORDER BY key LIMIT ?5",
        params![
            prefix,
            &upper,
            after.unwrap_or(""),
            ttl::expired_through(now),
            i64::from(limit)
        ],
        |mut r| r.get(0),
    )
}

/// Refuses the write unless `if_revision`, if given, is the key's revision now.
fn check_revision(
    conn: &dyn Tables,
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
    applying.conn.execute(
        "INSERT INTO _tandem_kv (key, value, revision, expires_at) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (key) DO UPDATE
         SET value = excluded.value, revision = excluded.revision, expires_at = excluded.expires_at",
        params![
            key,
            value,
            revision as i64,
            ttl::expires_at(applying.now, ttl_ms)
        ],
    )?;
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
        .execute("DELETE FROM _tandem_kv WHERE key = ?1", params![key])?;
    applying.count_write();
    Ok(Outcome::Deleted { existed })
}

/// Removes every entry expired by `now`; answers how many.
pub(super) fn expire(conn: &dyn Tables, now: i64) -> Result<u64, StoreError> {
    conn.execute(
        "DELETE FROM _tandem_kv WHERE expires_at <= ?1",
        params![ttl::expired_through(now)],
    )
}
