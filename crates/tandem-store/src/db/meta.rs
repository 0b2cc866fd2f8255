//! The state's bookkeeping beside Tandem's tables: counters, the clock, what was applied last,
//! one text value per key.

use crate::error::StoreError;
use crate::tables::{params, Tables};

pub(crate) fn read_text(conn: &dyn Tables, key: &str) -> Result<Option<String>, StoreError> {
    conn.query_row(
        "SELECT value FROM _tandem_meta WHERE key = ?1",
        params![key],
        |mut r| r.get(0),
    )
}

/// A counter; 0 until it is first written.
pub(crate) fn read_i64(conn: &dyn Tables, key: &str) -> Result<i64, StoreError> {
    match read_text(conn, key)? {
        None => Ok(0),
        Some(v) => v.parse().map_err(|_| StoreError::Corrupt {
            what: "counter",
            detail: format!("{key} = {v:?}"),
        }),
    }
}

pub(crate) fn read_json<T: serde::de::DeserializeOwned>(
    conn: &dyn Tables,
    key: &'static str,
) -> Result<Option<T>, StoreError> {
    read_text(conn, key)?
        .map(|v| serde_json::from_str(&v))
        .transpose()
        .map_err(|e| StoreError::Corrupt {
            what: key,
            detail: e.to_string(),
        })
}

pub(crate) fn write(conn: &dyn Tables, key: &str, value: &str) -> Result<(), StoreError> {
    conn.execute(
        "INSERT INTO _tandem_meta (key, value) VALUES (?1, ?2)
         ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        params![key, value],
    )?;
    Ok(())
}
