//! The tables Tandem keeps in PostgreSQL, created and migrated by the servers themselves: one
//! schema per cluster, a version table, and the migrations in order. Servers that start at the
//! same time migrate one after the other (a transaction-scoped advisory lock on the schema's
//! name), and a server never runs on a schema newer than it knows.

use tokio_postgres::Client;

use super::PostgresError;

/// Each migration brings the schema from the version before it to its own; `{schema}` is the
/// quoted schema name. Never edit one that has shipped: add the next.
const MIGRATIONS: &[&str] = &[
    // 1: the lock row whose holder is the active node. `token` grows each time the lock changes
    // hands; a write of the active node is accepted only with the current one.
    "CREATE TABLE {schema}.active_lock (
        id smallint PRIMARY KEY CHECK (id = 1),
        holder text NOT NULL,
        node_id bigint NOT NULL,
        api_addr text NOT NULL,
        cluster_addr text NOT NULL,
        token bigint NOT NULL,
        expires_at timestamptz NOT NULL
    )",
    // 2: the lowest fencing token a write may carry when the active node is chosen elsewhere
    // (etcd): each new holder raises it before it acts.
    "CREATE TABLE {schema}.fence_floor (
        id smallint PRIMARY KEY CHECK (id = 1),
        token bigint NOT NULL
    );
    INSERT INTO {schema}.fence_floor (id, token) VALUES (1, 0)",
    // 3: Tandem's tables, for storage = postgres (empty while the state is elsewhere).
    tandem_store::postgres::STATE_TABLES,
];

/// The version this server brings a schema to.
pub const SCHEMA_VERSION: i32 = MIGRATIONS.len() as i32;

/// A schema name as SQL writes it. The settings allow only names that need no quoting; the
/// quotes keep a name from ever being read as anything else.
pub fn quoted(schema: &str) -> String {
    format!("\"{}\"", schema.replace('"', "\"\""))
}

/// Creates the schema if needed and applies the migrations it lacks; answers the version it
/// was at before.
pub async fn migrate(client: &mut Client, schema: &str) -> Result<i32, PostgresError> {
    let name = quoted(schema);
    let tx = client.transaction().await?;
    tx.execute("SELECT pg_advisory_xact_lock(hashtext($1))", &[&schema])
        .await?;
    tx.batch_execute(&format!(
        "CREATE SCHEMA IF NOT EXISTS {name};
         CREATE TABLE IF NOT EXISTS {name}.schema_version (version integer NOT NULL)"
    ))
    .await?;
    let found: i32 = tx
        .query_one(
            &format!("SELECT coalesce(max(version), 0) FROM {name}.schema_version"),
            &[],
        )
        .await?
        .try_get(0)?;
    if found > SCHEMA_VERSION {
        return Err(PostgresError::Refused(format!(
            "PostgreSQL schema {schema} is at version {found}, newer than this server's {SCHEMA_VERSION}: a newer Tandem migrated it; upgrade this server"
        )));
    }
    for (index, migration) in MIGRATIONS.iter().enumerate().skip(found as usize) {
        let version = index as i32 + 1;
        tx.batch_execute(&migration.replace("{schema}", &name))
            .await?;
        tx.execute(
            &format!("INSERT INTO {name}.schema_version (version) VALUES ($1)"),
            &[&version],
        )
        .await?;
        tracing::info!(schema, version, "migrated the PostgreSQL schema");
    }
    tx.commit().await?;
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_quoted_whole() {
        assert_eq!(quoted("tandem"), "\"tandem\"");
        assert_eq!(quoted("a\"b"), "\"a\"\"b\"");
    }
}
