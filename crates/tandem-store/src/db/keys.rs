//! Signing keys in SQLite: published once per key id, retired, then removed from the key set.

use rusqlite::{params, Connection, OptionalExtension};

use crate::command::{Outcome, Rejection};
use crate::db::apply::{ApplyError, Applying};
use crate::rules::ttl;

pub(super) fn publish(
    applying: &mut Applying<'_>,
    kid: &str,
    node_id: u64,
    jwk: &str,
) -> Result<Outcome, ApplyError> {
    let exists = applying
        .conn
        .prepare_cached("SELECT 1 FROM _tandem_keys WHERE kid = ?1")?
        .exists([kid])?;
    if exists {
        return Err(Rejection::conflict(format!(
            "key id {kid:?} was published before; key ids are never reused"
        ))
        .into());
    }
    applying
        .conn
        .prepare_cached(
            "INSERT INTO _tandem_keys (kid, node_id, jwk, published_at) VALUES (?1, ?2, ?3, ?4)",
        )?
        .execute(params![kid, node_id as i64, jwk, applying.now])?;
    applying.count_write();
    Ok(Outcome::KeyPublished)
}

pub(super) fn retire(
    applying: &mut Applying<'_>,
    kid: &str,
    keep_for_ms: u64,
) -> Result<Outcome, ApplyError> {
    let row: Option<Option<i64>> = applying
        .conn
        .prepare_cached("SELECT remove_at FROM _tandem_keys WHERE kid = ?1")?
        .query_row([kid], |r| r.get(0))
        .optional()?;
    match row {
        None => Err(Rejection::not_found(format!("no key {kid:?} was published")).into()),
        // Retiring twice keeps the first retirement.
        Some(Some(remove_at_ms)) => Ok(Outcome::KeyRetired { remove_at_ms }),
        Some(None) => {
            let remove_at_ms = ttl::deadline(applying.now, keep_for_ms);
            applying
                .conn
                .prepare_cached(
                    "UPDATE _tandem_keys SET retired_at = ?2, remove_at = ?3 WHERE kid = ?1",
                )?
                .execute(params![kid, applying.now, remove_at_ms])?;
            applying.count_write();
            Ok(Outcome::KeyRetired { remove_at_ms })
        }
    }
}

/// Takes every retired key whose last token has expired by `now` out of the key set; answers
/// how many. The rows stay, so that their key ids are never published again.
pub(super) fn expire(conn: &Connection, now: i64) -> rusqlite::Result<u64> {
    Ok(conn
        .prepare_cached(
            "UPDATE _tandem_keys SET removed = 1 WHERE removed = 0 AND remove_at <= ?1",
        )?
        .execute([ttl::expired_through(now)])? as u64)
}
