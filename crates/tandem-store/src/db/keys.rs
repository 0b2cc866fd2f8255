//! Signing keys in Tandem's tables: published once per key id, retired, then removed from the key set.

use crate::command::{Outcome, Rejection};
use crate::db::apply::{ApplyError, Applying};
use crate::error::StoreError;
use crate::rules::ttl;
use crate::tables::{params, Tables};

pub(super) fn publish(
    applying: &mut Applying<'_>,
    kid: &str,
    node_id: u64,
    jwk: &str,
) -> Result<Outcome, ApplyError> {
    let exists = applying
        .conn
        .exists("SELECT 1 FROM _tandem_keys WHERE kid = ?1", params![kid])?;
    if exists {
        return Err(Rejection::conflict(format!(
            "key id {kid:?} was published before; key ids are never reused"
        ))
        .into());
    }
    applying.conn.execute(
        "INSERT INTO _tandem_keys (kid, node_id, jwk, published_at) VALUES (?1, ?2, ?3, ?4)",
        params![kid, node_id as i64, jwk, applying.now],
    )?;
    applying.count_write();
    Ok(Outcome::KeyPublished)
}

pub(super) fn retire(
    applying: &mut Applying<'_>,
    kid: &str,
    keep_for_ms: u64,
) -> Result<Outcome, ApplyError> {
    let row: Option<Option<i64>> = applying.conn.query_row(
        "SELECT remove_at FROM _tandem_keys WHERE kid = ?1",
        params![kid],
        |mut r| r.get(0),
    )?;
    match row {
        None => Err(Rejection::not_found(format!("no key {kid:?} was published")).into()),
        // Retiring twice keeps the first retirement.
        Some(Some(remove_at_ms)) => Ok(Outcome::KeyRetired { remove_at_ms }),
        Some(None) => {
            let remove_at_ms = ttl::deadline(applying.now, keep_for_ms);
            applying.conn.execute(
                "UPDATE _tandem_keys SET retired_at = ?2, remove_at = ?3 WHERE kid = ?1",
                params![kid, applying.now, remove_at_ms],
            )?;
            applying.count_write();
            Ok(Outcome::KeyRetired { remove_at_ms })
        }
    }
}

/// Takes every retired key whose last token has expired by `now` out of the key set; answers
/// how many. The rows stay, so that their key ids are never published again.
pub(super) fn expire(conn: &dyn Tables, now: i64) -> Result<u64, StoreError> {
    conn.execute(
        "UPDATE _tandem_keys SET removed = 1 WHERE removed = 0 AND remove_at <= ?1",
        params![ttl::expired_through(now)],
    )
}

/// Signing keys in the key set (published, and not yet removed after retirement), oldest first.
pub(super) fn published(conn: &dyn Tables) -> Result<Vec<super::PublishedKey>, StoreError> {
    conn.query_map(
        "SELECT kid, node_id, jwk, published_at, retired_at, remove_at FROM _tandem_keys
         WHERE removed = 0 ORDER BY published_at, kid",
        params![],
        |mut r| {
            Ok(super::PublishedKey {
                kid: r.get(0)?,
                node_id: r.get(1)?,
                jwk: r.get(2)?,
                published_at_ms: r.get(3)?,
                retired_at_ms: r.get(4)?,
                remove_at_ms: r.get(5)?,
            })
        },
    )
}
