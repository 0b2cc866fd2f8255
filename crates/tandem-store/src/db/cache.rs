//! The TTL cache in Tandem's tables: loads, asks [`crate::rules::ttl`], stores.

use crate::command::{Fence, Outcome};
use crate::db::apply::{ApplyError, Applying};
use crate::db::locks;
use crate::error::StoreError;
use crate::rules::ttl;
use crate::tables::{params, Tables};

/// The entry's value, unless it is absent or expired at `now`.
pub(super) fn row(
    conn: &dyn Tables,
    namespace: &str,
    key: &str,
    now: i64,
) -> Result<Option<Vec<u8>>, StoreError> {
    let row: Option<(Vec<u8>, Option<i64>)> = conn.query_row(
        "SELECT value, expires_at FROM _tandem_cache WHERE namespace = ?1 AND key = ?2",
        params![namespace, key],
        |mut r| Ok((r.get(0)?, r.get(1)?)),
    )?;
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
    applying.conn.execute(
        "INSERT INTO _tandem_cache (namespace, key, value, expires_at) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (namespace, key) DO UPDATE
         SET value = excluded.value, expires_at = excluded.expires_at",
        params![namespace, key, value, ttl::expires_at(applying.now, ttl_ms)],
    )?;
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
    applying.conn.execute(
        "DELETE FROM _tandem_cache WHERE namespace = ?1 AND key = ?2",
        params![namespace, key],
    )?;
    applying.count_write();
    Ok(value)
}

/// Removes every entry expired by `now`; answers how many.
pub(super) fn expire(conn: &dyn Tables, now: i64) -> Result<u64, StoreError> {
    conn.execute(
        "DELETE FROM _tandem_cache WHERE expires_at <= ?1",
        params![ttl::expired_through(now)],
    )
}
