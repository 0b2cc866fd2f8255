//! `storage = postgres`: the replicated state is Tandem's tables in PostgreSQL, shared by every
//! server. The active node applies each batch of commands in one transaction that first checks
//! its fencing token against who holds the active role now (the lock row, or with
//! `ha_storage = etcd` the fencing floor), holding that row `FOR SHARE` until it commits: the
//! database itself refuses a deposed holder's write, and no newer holder can take over while a
//! write of an older one is under way. Reads run on any server, at the database's clock.

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use tandem_store::postgres::{self, PgReads, PgTables, PgUserStatements};
use tandem_store::{Applied, Command, Rejection, StateReads, StoreError};
use tokio::runtime::Handle;
use tokio_postgres::NoTls;

use super::schema::{migrate, quoted};
use super::{check_fence, raise_fence_floor, PostgresError};
use crate::ReplicateError;

/// What the active node's token is checked against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FencedBy {
    /// `ha_storage = postgres`: the lock row whose holder is the active node.
    LockRow,
    /// `ha_storage = etcd`: the floor each active node raises to its token with its writes.
    Floor,
}

/// Where the state lives in PostgreSQL.
#[derive(Clone, Debug)]
pub struct PostgresStorageSettings {
    pub config: tokio_postgres::Config,
    /// The cluster's schema: Tandem's tables and the lock. Users' tables live in
    /// `<schema>_sql`.
    pub schema: String,
    pub pool_size: usize,
    pub fenced_by: FencedBy,
}

/// Tandem's tables in PostgreSQL, on a pool of connections that are made again after
/// PostgreSQL restarts.
pub struct PostgresStorage {
    pool: Pool,
    schema: String,
    user_schema: String,
    fenced_by: FencedBy,
}

/// The schema users' tables live in, beside the cluster's.
pub fn user_schema(schema: &str) -> String {
    format!("{schema}_sql")
}

impl PostgresStorage {
    /// Creates or migrates the cluster's schema and the users' one, then opens the pool.
    pub async fn open(settings: PostgresStorageSettings) -> Result<PostgresStorage, PostgresError> {
        let mut client = super::connect(&settings.config).await?;
        migrate(&mut client, &settings.schema).await?;
        let user_schema = user_schema(&settings.schema);
        client
            .batch_execute(&format!(
                "CREATE SCHEMA IF NOT EXISTS {}",
                quoted(&user_schema)
            ))
            .await?;
        let mut config = settings.config.clone();
        // Tandem's statements name its tables without a schema: each connection starts in the
        // cluster's.
        let options = format!(
            "{} -c search_path={}",
            config.get_options().unwrap_or_default(),
            quoted(&settings.schema)
        );
        config.options(options.trim_start());
        let manager = Manager::from_config(
            config,
            NoTls,
            ManagerConfig {
                // A connection PostgreSQL closed (a restart) is found out before it is used.
                recycling_method: RecyclingMethod::Verified,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(settings.pool_size.max(1))
            .build()
            .map_err(|e| PostgresError::Refused(format!("the connection pool: {e}")))?;
        Ok(PostgresStorage {
            pool,
            schema: settings.schema,
            user_schema,
            fenced_by: settings.fenced_by,
        })
    }

    /// Applies `commands` in one transaction as the active node holding `token`; answers one
    /// result per command. Refused as a whole, with nothing applied, when a newer active node
    /// exists.
    pub async fn apply(
        &self,
        token: u64,
        commands: Vec<Command>,
    ) -> Result<Vec<Applied>, ReplicateError> {
        let mut client = self.pool.get().await.map_err(|e| {
            ReplicateError::Unavailable(format!("no connection to PostgreSQL: {e}"))
        })?;
        let runtime = Handle::current();
        let (schema, user_schema, fenced_by) = (
            self.schema.clone(),
            quoted(&self.user_schema),
            self.fenced_by,
        );
        tokio::task::spawn_blocking(move || {
            let unavailable =
                |e: tokio_postgres::Error| ReplicateError::Unavailable(postgres_error(&e));
            let tx = runtime
                .block_on(client.transaction())
                .map_err(unavailable)?;
            let fence = runtime.block_on(async {
                match fenced_by {
                    FencedBy::LockRow => check_fence(&*tx, &schema, token).await,
                    // The newest holder's first write raises the floor to its token; from then
                    // on an older holder's write finds the floor above its own.
                    FencedBy::Floor => raise_fence_floor(&*tx, &schema, token).await,
                }
            });
            match fence {
                Ok(Ok(())) => {}
                Ok(Err(rejection)) => return Err(deposed(rejection)),
                Err(e) => return Err(ReplicateError::Unavailable(e.to_string())),
            }
            let answers = {
                let tables = PgTables::new(&tx, runtime.clone());
                let user = PgUserStatements::new(&tables, &quoted(&schema), &user_schema);
                postgres::apply(&tables, &user, &commands)
            };
            let answers = answers.map_err(|e| ReplicateError::Unavailable(e.to_string()))?;
            // Only the commit's own failure leaves the outcome open: PostgreSQL may have
            // committed before the connection broke.
            runtime.block_on(tx.commit()).map_err(|e| {
                ReplicateError::OutcomeUnknown(format!(
                    "PostgreSQL did not confirm the commit: {}",
                    postgres_error(&e)
                ))
            })?;
            Ok(answers)
        })
        .await
        .map_err(|e| ReplicateError::Internal(format!("the write's thread: {e}")))?
    }

    /// Runs `read` on Tandem's tables at the database's clock, all of it on one snapshot.
    pub async fn read<T: Send + 'static>(
        &self,
        read: impl FnOnce(&dyn StateReads) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, ReplicateError> {
        let mut client = self.pool.get().await.map_err(|e| {
            ReplicateError::Unavailable(format!("no connection to PostgreSQL: {e}"))
        })?;
        let runtime = Handle::current();
        tokio::task::spawn_blocking(move || {
            let unavailable =
                |e: tokio_postgres::Error| ReplicateError::Unavailable(postgres_error(&e));
            let tx = runtime
                .block_on(
                    client
                        .build_transaction()
                        .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
                        .read_only(true)
                        .start(),
                )
                .map_err(unavailable)?;
            let answer = read(&PgReads {
                tables: PgTables::new(&tx, runtime.clone()),
            })
            .map_err(|e| ReplicateError::Unavailable(e.to_string()))?;
            runtime.block_on(tx.commit()).map_err(unavailable)?;
            Ok(answer)
        })
        .await
        .map_err(|e| ReplicateError::Internal(format!("the read's thread: {e}")))?
    }
}

/// A write refused by the fencing check: this node is no longer the active one.
fn deposed(rejection: Rejection) -> ReplicateError {
    ReplicateError::Unavailable(format!(
        "{}; PostgreSQL refused the write and nothing was applied: retry on the active node",
        rejection.message
    ))
}

fn postgres_error(e: &tokio_postgres::Error) -> String {
    format!("PostgreSQL: {}", tandem_store::postgres_message(e))
}
