//! Tandem's own tables (key/value, cache, locks, signing keys, the agent registry, credentials
//! and the audit log) as the code that applies commands and serves reads sees them, whichever
//! database engine holds them. Each statement is written once, in SQL that SQLite and
//! PostgreSQL both speak, with numbered parameters (`?1`, `?2`, ...); an engine that numbers
//! them otherwise rewrites them. Values travel as the four types both engines store alike.

use rusqlite::types::ToSqlOutput;

use crate::error::StoreError;
use crate::sql::SqlValue;

/// A value bound to a statement on Tandem's tables. A null keeps its type, which PostgreSQL
/// needs to know.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Param<'a> {
    Int(Option<i64>),
    Text(Option<&'a str>),
    Bytes(Option<&'a [u8]>),
}

impl From<i64> for Param<'_> {
    fn from(v: i64) -> Self {
        Param::Int(Some(v))
    }
}

impl From<Option<i64>> for Param<'_> {
    fn from(v: Option<i64>) -> Self {
        Param::Int(v)
    }
}

/// Flags are stored as 0 or 1.
impl From<bool> for Param<'_> {
    fn from(v: bool) -> Self {
        Param::Int(Some(v.into()))
    }
}

impl<'a> From<&'a str> for Param<'a> {
    fn from(v: &'a str) -> Self {
        Param::Text(Some(v))
    }
}

impl<'a> From<&'a String> for Param<'a> {
    fn from(v: &'a String) -> Self {
        Param::Text(Some(v))
    }
}

impl<'a> From<Option<&'a str>> for Param<'a> {
    fn from(v: Option<&'a str>) -> Self {
        Param::Text(v)
    }
}

impl<'a> From<&'a [u8]> for Param<'a> {
    fn from(v: &'a [u8]) -> Self {
        Param::Bytes(Some(v))
    }
}

impl<'a> From<&'a Vec<u8>> for Param<'a> {
    fn from(v: &'a Vec<u8>) -> Self {
        Param::Bytes(Some(v))
    }
}

/// The parameters of one statement, each converted into a [`Param`].
macro_rules! params {
    ($($value:expr),* $(,)?) => {
        &[$($crate::tables::Param::from($value)),*] as &[$crate::tables::Param<'_>]
    };
}
pub(crate) use params;

/// Counts above `i64::MAX` are stored as `i64::MAX`: both engines hold signed integers.
pub fn saturating_i64(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// One row a query answered. Each column is read once: reading it hands its value over.
#[derive(Debug)]
pub struct Row(Vec<SqlValue>);

impl Row {
    pub(crate) fn from_values(values: Vec<SqlValue>) -> Row {
        Row(values)
    }

    /// Column `column` (from 0) as a `T`; a value of another type means the table holds
    /// something Tandem did not write there.
    pub fn get<T: FromCell>(&mut self, column: usize) -> Result<T, StoreError> {
        let value =
            self.0
                .get_mut(column)
                .map(std::mem::take)
                .ok_or_else(|| StoreError::Corrupt {
                    what: "row",
                    detail: format!("the query answered no column {column}"),
                })?;
        T::from_cell(value).map_err(|found| StoreError::Corrupt {
            what: "row",
            detail: format!(
                "column {column} holds {found}, not {}",
                std::any::type_name::<T>()
            ),
        })
    }

    /// Column `column` as text holding JSON, decoded.
    pub fn json<T: serde::de::DeserializeOwned>(&mut self, column: usize) -> Result<T, StoreError> {
        let text: String = self.get(column)?;
        serde_json::from_str(&text).map_err(|e| StoreError::Corrupt {
            what: "row",
            detail: format!("column {column} is not the JSON expected: {e}"),
        })
    }
}

/// A Rust type a column of Tandem's tables is read as.
pub trait FromCell: Sized {
    /// The value as `Self`, or what it was instead.
    fn from_cell(value: SqlValue) -> Result<Self, &'static str>;
}

impl FromCell for i64 {
    fn from_cell(value: SqlValue) -> Result<Self, &'static str> {
        match value {
            SqlValue::Integer(v) => Ok(v),
            other => Err(other.storage_class()),
        }
    }
}

/// Counters and indexes: stored signed, never negative.
impl FromCell for u64 {
    fn from_cell(value: SqlValue) -> Result<Self, &'static str> {
        i64::from_cell(value).map(|v| v.max(0) as u64)
    }
}

impl FromCell for bool {
    fn from_cell(value: SqlValue) -> Result<Self, &'static str> {
        i64::from_cell(value).map(|v| v != 0)
    }
}

impl FromCell for String {
    fn from_cell(value: SqlValue) -> Result<Self, &'static str> {
        match value {
            SqlValue::Text(v) => Ok(v),
            other => Err(other.storage_class()),
        }
    }
}

impl FromCell for Vec<u8> {
    fn from_cell(value: SqlValue) -> Result<Self, &'static str> {
        match value {
            SqlValue::Blob(v) => Ok(v),
            other => Err(other.storage_class()),
        }
    }
}

impl<T: FromCell> FromCell for Option<T> {
    fn from_cell(value: SqlValue) -> Result<Self, &'static str> {
        match value {
            SqlValue::Null => Ok(None),
            other => T::from_cell(other).map(Some),
        }
    }
}

/// Where Tandem's tables are: a connection, or a transaction on one, of the engine that holds
/// them.
pub trait Tables {
    /// Runs a statement that changes rows; answers how many it changed.
    fn execute(&self, sql: &str, params: &[Param<'_>]) -> Result<u64, StoreError>;

    /// Runs a query; answers its rows.
    fn query(&self, sql: &str, params: &[Param<'_>]) -> Result<Vec<Row>, StoreError>;
}

impl dyn Tables + '_ {
    /// Each row of a query, read by `read`.
    pub fn query_map<T>(
        &self,
        sql: &str,
        params: &[Param<'_>],
        read: impl FnMut(Row) -> Result<T, StoreError>,
    ) -> Result<Vec<T>, StoreError> {
        self.query(sql, params)?.into_iter().map(read).collect()
    }

    /// The first row of a query, read by `read`, if it answered one.
    pub fn query_row<T>(
        &self,
        sql: &str,
        params: &[Param<'_>],
        read: impl FnOnce(Row) -> Result<T, StoreError>,
    ) -> Result<Option<T>, StoreError> {
        self.query(sql, params)?
            .into_iter()
            .next()
            .map(read)
            .transpose()
    }

    /// Whether a query answers any row.
    pub fn exists(&self, sql: &str, params: &[Param<'_>]) -> Result<bool, StoreError> {
        Ok(!self.query(sql, params)?.is_empty())
    }
}

impl rusqlite::ToSql for Param<'_> {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        use rusqlite::types::ValueRef;
        Ok(ToSqlOutput::Borrowed(match *self {
            Param::Int(Some(v)) => ValueRef::Integer(v),
            Param::Text(Some(v)) => ValueRef::Text(v.as_bytes()),
            Param::Bytes(Some(v)) => ValueRef::Blob(v),
            Param::Int(None) | Param::Text(None) | Param::Bytes(None) => ValueRef::Null,
        }))
    }
}

/// SQLite: statements are prepared once per connection and kept.
impl Tables for rusqlite::Connection {
    fn execute(&self, sql: &str, params: &[Param<'_>]) -> Result<u64, StoreError> {
        let changed = self
            .prepare_cached(sql)?
            .execute(rusqlite::params_from_iter(params))?;
        Ok(changed as u64)
    }

    fn query(&self, sql: &str, params: &[Param<'_>]) -> Result<Vec<Row>, StoreError> {
        let mut stmt = self.prepare_cached(sql)?;
        let width = stmt.column_count();
        let mut rows = stmt.query(rusqlite::params_from_iter(params))?;
        let mut out = Vec::new();
        while let Some(row) = rows.next()? {
            let values = (0..width)
                .map(|i| row.get_ref(i).map(SqlValue::from))
                .collect::<rusqlite::Result<_>>()?;
            out.push(Row(values));
        }
        Ok(out)
    }
}
