//! Tandem's tables in PostgreSQL (`storage = postgres`): one schema per cluster, shared by every
//! server, that the servers create and migrate themselves. Commands are applied there by the
//! same code as on SQLite ([`crate::tables`]), each batch in one transaction that its caller
//! opened (and checked the active node's fencing token in), at the database's clock; reads run
//! the same queries as on SQLite.
//!
//! The statements run from a blocking thread (`tokio::task::spawn_blocking`): each waits for
//! its answer on the runtime that drives the connection.

use futures::TryStreamExt;
use tokio::runtime::Handle;
use tokio_postgres::types::{IsNull, ToSql, Type};
use tokio_postgres::Transaction;

use crate::command::{Applied, Command, Params, Rejection, SqlAnswer, Statement, StatementResult};
use crate::db::{apply_step, meta, ApplyError, Counters, Step, UserStatements};
use crate::db::{QueryRows, StateReads, TablesRead, MAX_QUERY_RESULT_BYTES};
use crate::db::{META_CLOCK, META_REGISTRY_INDEX, META_REVISION};
use crate::error::{postgres_message, StoreError};
use crate::sql::SqlValue;
use crate::tables::{params, Param, Row, Tables};

/// The migration that creates Tandem's tables in a cluster's schema (`{schema}`, quoted). Text
/// that Tandem compares or sorts is in the "C" collation, so that keys sort by their bytes as
/// on SQLite whatever the database's locale. Integers are `bigint`, flags 0 or 1. The counters
/// exist from the start: every write locks the revision counter's row, which puts the writes
/// in one order.
pub const STATE_TABLES: &str = r#"
CREATE TABLE {schema}._tandem_meta (key text COLLATE "C" PRIMARY KEY, value text NOT NULL);
INSERT INTO {schema}._tandem_meta (key, value)
    VALUES ('revision', '0'), ('registry_index', '0'), ('clock_ms', '0');
CREATE TABLE {schema}._tandem_kv (
    key text COLLATE "C" PRIMARY KEY, value bytea NOT NULL, revision bigint NOT NULL,
    expires_at bigint
);
CREATE INDEX _tandem_kv_expiry ON {schema}._tandem_kv (expires_at) WHERE expires_at IS NOT NULL;
CREATE TABLE {schema}._tandem_cache (
    namespace text COLLATE "C" NOT NULL, key text COLLATE "C" NOT NULL, value bytea NOT NULL,
    expires_at bigint, PRIMARY KEY (namespace, key)
);
CREATE INDEX _tandem_cache_expiry ON {schema}._tandem_cache (expires_at)
    WHERE expires_at IS NOT NULL;
CREATE TABLE {schema}._tandem_locks (
    name text COLLATE "C" PRIMARY KEY, holder text, token bigint NOT NULL, expires_at bigint
);
CREATE TABLE {schema}._tandem_keys (
    kid text COLLATE "C" PRIMARY KEY, node_id bigint NOT NULL, jwk text NOT NULL,
    published_at bigint NOT NULL, retired_at bigint, remove_at bigint,
    removed bigint NOT NULL DEFAULT 0
);
CREATE TABLE {schema}._tandem_join_tokens (
    id text COLLATE "C" PRIMARY KEY, pool text COLLATE "C" NOT NULL, secret_sha256 bytea NOT NULL,
    created_at bigint NOT NULL, expires_at bigint, uses_left bigint,
    revoked bigint NOT NULL DEFAULT 0
);
CREATE INDEX _tandem_join_tokens_expiry ON {schema}._tandem_join_tokens (expires_at)
    WHERE expires_at IS NOT NULL;
CREATE TABLE {schema}._tandem_agent_credentials (
    id text COLLATE "C" PRIMARY KEY, name text COLLATE "C" NOT NULL, pool text COLLATE "C" NOT NULL,
    public_jwk text NOT NULL, certificate_pem text NOT NULL, token_id text COLLATE "C" NOT NULL,
    issued_at bigint NOT NULL, revoked_at bigint
);
CREATE INDEX _tandem_agent_credentials_name ON {schema}._tandem_agent_credentials (name);
CREATE TABLE {schema}._tandem_agents (
    name text COLLATE "C" PRIMARY KEY, pool text COLLATE "C" NOT NULL,
    credential_id text COLLATE "C" NOT NULL, address text NOT NULL, labels text NOT NULL,
    version text NOT NULL, health text NOT NULL, checks text NOT NULL, down_since bigint,
    draining bigint NOT NULL, state_since bigint NOT NULL, registered_at bigint NOT NULL,
    modify_index bigint NOT NULL
);
CREATE INDEX _tandem_agents_pool ON {schema}._tandem_agents (pool);
CREATE TABLE {schema}._tandem_registry_pools (pool text COLLATE "C" PRIMARY KEY, idx bigint NOT NULL);
CREATE TABLE {schema}._tandem_mesh_members (
    name text COLLATE "C" PRIMARY KEY, mesh text NOT NULL, address text NOT NULL
);
CREATE TABLE {schema}._tandem_mesh_announce (name text COLLATE "C" PRIMARY KEY, allow text NOT NULL);
CREATE TABLE {schema}._tandem_join_token_announce (
    token_id text COLLATE "C" PRIMARY KEY, allow text NOT NULL
);
CREATE TABLE {schema}._tandem_credentials (
    id text COLLATE "C" PRIMARY KEY, name text COLLATE "C" NOT NULL, secret_sha256 bytea NOT NULL,
    grants text NOT NULL, created_at bigint NOT NULL, expires_at bigint, revoked_at bigint
);
CREATE INDEX _tandem_credentials_name ON {schema}._tandem_credentials (name);
CREATE TABLE {schema}._tandem_audit (
    seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, at bigint NOT NULL, who text NOT NULL,
    action text NOT NULL, detail text NOT NULL
);
"#;

/// The database's clock in milliseconds since the Unix epoch: what expiry goes by.
const DATABASE_CLOCK: &str = "SELECT (extract(epoch FROM clock_timestamp()) * 1000)::bigint";

/// Tandem's tables in a transaction on PostgreSQL. The connection's `search_path` must lead to
/// the cluster's schema.
pub struct PgTables<'a> {
    tx: &'a Transaction<'a>,
    runtime: Handle,
}

impl<'a> PgTables<'a> {
    /// Statements wait on `runtime`, which drives the connection; call from a blocking thread.
    pub fn new(tx: &'a Transaction<'a>, runtime: Handle) -> PgTables<'a> {
        PgTables { tx, runtime }
    }

    /// The database's clock now, in milliseconds.
    pub fn clock_ms(&self) -> Result<i64, StoreError> {
        let clock = (self as &dyn Tables).query_row(DATABASE_CLOCK, &[], |mut r| r.get(0))?;
        clock.ok_or_else(|| StoreError::Corrupt {
            what: "clock",
            detail: "PostgreSQL answered no time".into(),
        })
    }

    /// Runs a statement, keeping its rows when `keep_rows`.
    fn run(
        &self,
        sql: &str,
        params: &[Param<'_>],
        keep_rows: bool,
    ) -> Result<(Vec<Row>, u64), StoreError> {
        let sql = dollar_numbered(sql);
        let typed = params.iter().map(typed_param);
        self.runtime.block_on(async {
            let stream = self.tx.query_typed_raw(&sql, typed).await?;
            futures::pin_mut!(stream);
            let mut rows = Vec::new();
            while let Some(row) = stream.try_next().await? {
                if keep_rows {
                    rows.push(row_values(&row)?);
                }
            }
            Ok((rows, stream.rows_affected().unwrap_or(0)))
        })
    }
}

impl Tables for PgTables<'_> {
    fn execute(&self, sql: &str, params: &[Param<'_>]) -> Result<u64, StoreError> {
        Ok(self.run(sql, params, false)?.1)
    }

    fn query(&self, sql: &str, params: &[Param<'_>]) -> Result<Vec<Row>, StoreError> {
        Ok(self.run(sql, params, true)?.0)
    }
}

/// A parameter with the type PostgreSQL is to read it as, so that a statement runs in one round
/// trip without being prepared first.
fn typed_param<'p>(param: &'p Param<'_>) -> (&'p (dyn ToSql + Sync), Type) {
    match param {
        Param::Int(v) => (v, Type::INT8),
        Param::Text(v) => (v, Type::TEXT),
        Param::Bytes(v) => (v, Type::BYTEA),
    }
}

/// A row of Tandem's tables as the values both engines store.
fn row_values(row: &tokio_postgres::Row) -> Result<Row, StoreError> {
    let mut values = Vec::with_capacity(row.len());
    for (i, column) in row.columns().iter().enumerate() {
        let value = cell(row, i)?.ok_or_else(|| StoreError::Corrupt {
            what: "row",
            detail: format!(
                "column {} is of type {}, which Tandem's tables do not use",
                column.name(),
                column.type_()
            ),
        })?;
        values.push(value);
    }
    Ok(Row::from_values(values))
}

/// Column `i` of `row` as one of the values the API carries; `None` when its type is none of
/// those (a timestamp, a numeric, JSON...), which a query casts to text to read.
fn cell(row: &tokio_postgres::Row, i: usize) -> Result<Option<SqlValue>, tokio_postgres::Error> {
    let value = match *row.columns()[i].type_() {
        Type::INT8 => row.try_get::<_, Option<i64>>(i)?.map(SqlValue::Integer),
        Type::INT4 => row
            .try_get::<_, Option<i32>>(i)?
            .map(|v| SqlValue::Integer(v.into())),
        Type::INT2 => row
            .try_get::<_, Option<i16>>(i)?
            .map(|v| SqlValue::Integer(v.into())),
        Type::BOOL => row
            .try_get::<_, Option<bool>>(i)?
            .map(|v| SqlValue::Integer(v.into())),
        Type::FLOAT8 => row.try_get::<_, Option<f64>>(i)?.map(SqlValue::Real),
        Type::FLOAT4 => row
            .try_get::<_, Option<f32>>(i)?
            .map(|v| SqlValue::Real(v.into())),
        Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME | Type::UNKNOWN => {
            row.try_get::<_, Option<String>>(i)?.map(SqlValue::Text)
        }
        Type::BYTEA => row.try_get::<_, Option<Vec<u8>>>(i)?.map(SqlValue::Blob),
        _ => return Ok(None),
    };
    Ok(Some(value.unwrap_or(SqlValue::Null)))
}

/// `sql` with its parameters numbered as PostgreSQL numbers them: `?N` becomes `$N`. Tandem's
/// statements hold no `?` of their own outside parameters.
fn dollar_numbered(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        let numbered = c == '?' && chars.peek().is_some_and(char::is_ascii_digit);
        out.push(if numbered { '$' } else { c });
    }
    out
}

/// Applies a batch of commands in the transaction of `tables` at the database's clock, each in
/// a savepoint of its own so that a rejected one leaves no trace; answers one result per
/// command. The caller commits. Listeners on `<schema>_registry` learn the registry's new index
/// and those on `<schema>_keys` that the key set may have changed, once the transaction commits.
pub fn apply(
    tables: &PgTables<'_>,
    user: &dyn UserStatements,
    commands: &[Command],
) -> Result<Vec<Applied>, StoreError> {
    let conn: &dyn Tables = tables;
    // Every write takes the revision counter's row first, which puts the writes of every
    // server in one order and gives each its own revisions.
    conn.query(
        "SELECT value FROM _tandem_meta WHERE key = ?1 FOR UPDATE",
        params![META_REVISION],
    )?;
    let mut counters = Counters {
        revision: meta::read_i64(conn, META_REVISION)?.max(0) as u64,
        registry_index: meta::read_i64(conn, META_REGISTRY_INDEX)?.max(0) as u64,
    };
    let registry_index_before = counters.registry_index;
    // The database's clock, never behind a time an earlier write went by.
    let clock = tables.clock_ms()?.max(meta::read_i64(conn, META_CLOCK)?);
    let mut results = Vec::with_capacity(commands.len());
    let mut keys_changed = false;
    for command in commands {
        keys_changed |= command.changes_keys();
        match apply_step(conn, user, command, clock, &mut counters)? {
            Step::Done(applied) => results.push(applied),
            Step::Stopped(rejection) => {
                conn.execute("ROLLBACK TO SAVEPOINT tandem_command", params![])?;
                conn.execute("RELEASE SAVEPOINT tandem_command", params![])?;
                results.push(Err(rejection));
            }
        }
    }
    meta::write(conn, META_REVISION, &counters.revision.to_string())?;
    meta::write(conn, META_CLOCK, &clock.to_string())?;
    if counters.registry_index != registry_index_before {
        let index = counters.registry_index.to_string();
        meta::write(conn, META_REGISTRY_INDEX, &index)?;
        conn.execute(
            "SELECT pg_notify(current_schema() || '_registry', ?1)",
            params![&index],
        )?;
    }
    if keys_changed {
        conn.execute(
            "SELECT pg_notify(current_schema() || '_keys', '')",
            params![],
        )?;
    }
    Ok(results)
}

/// Reads on PostgreSQL, at the database's clock.
pub struct PgReads<'a> {
    pub tables: PgTables<'a>,
}

impl StateReads for PgReads<'_> {
    fn read_tables(&self, read: &mut TablesRead<'_>) -> Result<(), StoreError> {
        read(&self.tables, self.tables.clock_ms()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_are_renumbered_and_nothing_else_changes() {
        assert_eq!(
            dollar_numbered("UPDATE t SET a = ?2 WHERE b = ?1 AND c = '?' AND d = ?10"),
            "UPDATE t SET a = $2 WHERE b = $1 AND c = '?' AND d = $10"
        );
    }
}

/// Users' statements (`/v1/sql`) on PostgreSQL, in PostgreSQL's dialect, in a schema of their
/// own, in the transaction their command is applied in. Parameters are numbered (`$1`, `$2`,
/// ...) and take the types PostgreSQL infers for them.
pub struct PgUserStatements<'a> {
    tables: &'a PgTables<'a>,
    /// `SET LOCAL search_path` to the users' schema, and back to Tandem's.
    enter: String,
    leave: String,
}

impl<'a> PgUserStatements<'a> {
    /// `tandem_schema` holds Tandem's tables; users' tables live in `user_schema`. Both are
    /// schema names as SQL writes them (quoted).
    pub fn new(tables: &'a PgTables<'a>, tandem_schema: &str, user_schema: &str) -> Self {
        PgUserStatements {
            tables,
            enter: format!("SET LOCAL search_path TO {user_schema}"),
            leave: format!("SET LOCAL search_path TO {tandem_schema}"),
        }
    }

    /// Runs `statement` in the users' schema, answering its rows when it has columns, and how
    /// many rows it changed.
    fn run_one(&self, statement: &Statement) -> Result<(Option<QueryRows>, u64), ApplyError> {
        let values = match &statement.params {
            Params::Positional(values) => values,
            Params::Named(_) => {
                return Err(Rejection::invalid(
                    "PostgreSQL statements take numbered parameters ($1, $2, ...): send \"params\" as a list",
                )
                .into())
            }
        };
        let tx = self.tables.tx;
        self.tables.runtime.block_on(async {
            tx.batch_execute(&self.enter).await?;
            let answer = async {
                let prepared = tx.prepare(&statement.sql).await?;
                if prepared.params().len() != values.len() {
                    return Ok(Err(Rejection::invalid(format!(
                        "the statement has {} parameter(s) but {} were given",
                        prepared.params().len(),
                        values.len()
                    ))));
                }
                let params = values.iter().map(UserValue);
                let stream = tx.query_raw(&prepared, params).await?;
                futures::pin_mut!(stream);
                let columns = prepared.columns();
                let mut rows = Vec::new();
                let mut result_bytes = 0;
                while let Some(row) = stream.try_next().await? {
                    let mut values = Vec::with_capacity(columns.len());
                    for (i, column) in columns.iter().enumerate() {
                        let Some(value) = cell(&row, i)? else {
                            return Ok(Err(Rejection::invalid(format!(
                                "column {} is of type {}, which answers cannot carry: cast it (\"{}::text\")",
                                column.name(),
                                column.type_(),
                                column.name()
                            ))));
                        };
                        result_bytes += value.size_in_memory();
                        values.push(value);
                    }
                    if result_bytes > MAX_QUERY_RESULT_BYTES {
                        return Ok(Err(Rejection::invalid(format!(
                            "the result is larger than {} MiB; select fewer rows or columns (LIMIT, WHERE)",
                            MAX_QUERY_RESULT_BYTES >> 20
                        ))));
                    }
                    rows.push(values);
                }
                let changed = stream.rows_affected().unwrap_or(0);
                let rows = (!columns.is_empty()).then(|| QueryRows {
                    columns: columns.iter().map(|c| c.name().to_string()).collect(),
                    types: columns.iter().map(|c| c.type_().name().to_string()).collect(),
                    rows,
                });
                Ok(Ok((rows, changed)))
            }
            .await;
            if answer.is_ok() {
                tx.batch_execute(&self.leave).await?;
            }
            answer
        })
        .map_err(user_error)?
        .map_err(ApplyError::from)
    }
}

/// A failed user statement is the user's to fix, unless PostgreSQL itself is in trouble (the
/// connection, its resources, the operator stopping it): that stops the write instead.
fn user_error(e: tokio_postgres::Error) -> ApplyError {
    let Some(db) = e.as_db_error() else {
        return ApplyError::Store(e.into());
    };
    let class = &db.code().code()[..2];
    if matches!(class, "08" | "53" | "57" | "58" | "XX") {
        return ApplyError::Store(e.into());
    }
    ApplyError::Rejected(Rejection::invalid(postgres_message(&e)))
}

impl UserStatements for PgUserStatements<'_> {
    fn execute(&self, statement: &Statement) -> Result<StatementResult, ApplyError> {
        let (_, rows_affected) = self.run_one(statement)?;
        // PostgreSQL keeps no last inserted row id: `RETURNING` answers it.
        Ok(StatementResult {
            rows_affected,
            last_insert_id: 0,
        })
    }

    fn answer(&self, statement: &Statement) -> Result<SqlAnswer, ApplyError> {
        // After an error PostgreSQL accepts nothing more in a transaction until it is rolled
        // back to before the statement.
        let conn: &dyn Tables = self.tables;
        conn.execute("SAVEPOINT tandem_statement", params![])?;
        match self.run_one(statement) {
            Ok((rows, rows_affected)) => {
                conn.execute("RELEASE SAVEPOINT tandem_statement", params![])?;
                Ok(match rows {
                    Some(rows) => SqlAnswer::Rows(rows),
                    None => SqlAnswer::Changed(StatementResult {
                        rows_affected,
                        last_insert_id: 0,
                    }),
                })
            }
            // PostgreSQL itself failing ends the write whatever the transaction's state.
            Err(e @ ApplyError::Store(_)) => Err(e),
            Err(e) => {
                conn.execute("ROLLBACK TO SAVEPOINT tandem_statement", params![])?;
                conn.execute("RELEASE SAVEPOINT tandem_statement", params![])?;
                Err(e)
            }
        }
    }
}

/// A parameter of a user's statement, sent as the type PostgreSQL inferred for it where the
/// value converts without loss; otherwise the statement is refused with how to cast it.
#[derive(Debug)]
struct UserValue<'a>(&'a SqlValue);

impl ToSql for UserValue<'_> {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut bytes::BytesMut,
    ) -> Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        let mismatch = |what: &str| -> Box<dyn std::error::Error + Sync + Send> {
            format!("a {what} cannot be sent as {ty}: cast the parameter in the statement (for example $1::text::{ty})").into()
        };
        match (self.0, ty) {
            (SqlValue::Null, _) => Ok(IsNull::Yes),
            (SqlValue::Integer(v), &Type::INT8) => v.to_sql(ty, out),
            (SqlValue::Integer(v), &Type::INT4) => i32::try_from(*v)
                .map_err(|_| mismatch("number this large"))?
                .to_sql(ty, out),
            (SqlValue::Integer(v), &Type::INT2) => i16::try_from(*v)
                .map_err(|_| mismatch("number this large"))?
                .to_sql(ty, out),
            (SqlValue::Integer(v), &Type::FLOAT8) => (*v as f64).to_sql(ty, out),
            (SqlValue::Integer(v), &Type::BOOL) => (*v != 0).to_sql(ty, out),
            (SqlValue::Real(v), &Type::FLOAT8) => v.to_sql(ty, out),
            (SqlValue::Real(v), &Type::FLOAT4) => (*v as f32).to_sql(ty, out),
            (SqlValue::Text(v), _) if <&str as ToSql>::accepts(ty) => v.as_str().to_sql(ty, out),
            (SqlValue::Blob(v), &Type::BYTEA) => v.as_slice().to_sql(ty, out),
            (value, _) => Err(mismatch(match value {
                SqlValue::Integer(_) => "number",
                SqlValue::Real(_) => "decimal number",
                SqlValue::Text(_) => "string",
                _ => "blob",
            })),
        }
    }

    fn accepts(_: &Type) -> bool {
        true
    }

    tokio_postgres::types::to_sql_checked!();
}
