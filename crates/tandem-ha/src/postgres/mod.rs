//! `ha_storage = postgres`: the active node is the holder of one lock row in PostgreSQL. Every
//! server runs for it on a connection of its own (so renewals never queue behind other work),
//! renews it every third of the lock's TTL, and reads it to learn which node is active. A
//! database that restarts is reconnected to at the next attempt. When the active node is
//! chosen by etcd instead, the same schema keeps a fencing floor that its writes raise to their
//! token ([`raise_fence_floor`]).
//!
//! `storage = postgres`: the state is Tandem's tables in the same schema ([`PostgresStorage`]),
//! written through [`PostgresReplicator`].

mod fence_floor;
mod lock_row;
mod replicator;
mod schema;
mod storage;

use std::sync::Arc;
use std::time::Duration;

use tokio_postgres::{Client, NoTls};

pub use fence_floor::raise_fence_floor;
pub use lock_row::{check_fence, Claimant, ACTIVE_LOCK};
pub use replicator::PostgresReplicator;
pub use schema::{migrate, quoted, SCHEMA_VERSION};
pub use storage::{user_schema, FencedBy, PostgresStorage, PostgresStorageSettings};

use crate::leased_ha::{LeasedHa, LockService};
use crate::lock_lease::Attempt;
use crate::ActiveNode;

#[derive(Debug, thiserror::Error)]
pub enum PostgresError {
    #[error("PostgreSQL: {0}")]
    Database(#[from] tokio_postgres::Error),
    #[error("{0}")]
    Refused(String),
}

/// Where the lock lives and how long it is held without renewal.
#[derive(Clone, Debug)]
pub struct PostgresLockSettings {
    pub config: tokio_postgres::Config,
    pub schema: String,
    pub ttl: Duration,
}

/// Connects on `config` (without TLS), driving the connection on its own task.
pub async fn connect(config: &tokio_postgres::Config) -> Result<Client, PostgresError> {
    let (client, connection) = config.connect(NoTls).await?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!(error = %e, "PostgreSQL connection closed");
        }
    });
    Ok(client)
}

/// Creates or migrates the schema, then starts running for the lock row as `me`.
pub async fn start(
    me: ActiveNode,
    settings: PostgresLockSettings,
) -> Result<Arc<LeasedHa>, PostgresError> {
    let mut client = connect(&settings.config).await?;
    migrate(&mut client, &settings.schema).await?;
    let claimant = Claimant {
        // A restarted server is a new holder: its lease and token are new too.
        holder: format!("node-{}-{}-{}", me.id, std::process::id(), crate::now_ms()),
        node: me.clone(),
    };
    let ttl = settings.ttl;
    let service = PostgresLock {
        claimant,
        settings,
        client: Some(client),
    };
    Ok(LeasedHa::start("postgres", service, me, ttl))
}

struct PostgresLock {
    claimant: Claimant,
    settings: PostgresLockSettings,
    client: Option<Client>,
}

impl PostgresLock {
    async fn client(&mut self) -> Result<&Client, PostgresError> {
        if self.client.as_ref().is_none_or(|c| c.is_closed()) {
            self.client = Some(connect(&self.settings.config).await?);
        }
        match &self.client {
            Some(client) => Ok(client),
            None => Err(PostgresError::Refused("no connection".into())),
        }
    }
}

#[async_trait::async_trait]
impl LockService for PostgresLock {
    async fn attempt(&mut self, take: bool) -> Result<Attempt, String> {
        let (claimant, schema, ttl) = (
            self.claimant.clone(),
            self.settings.schema.clone(),
            self.settings.ttl,
        );
        let client = self.client().await.map_err(|e| e.to_string())?;
        if take {
            let taken = lock_row::take_or_renew(client, &schema, &claimant, ttl)
                .await
                .map_err(|e| e.to_string())?;
            if let Some(token) = taken {
                return Ok(Attempt::Holding { token });
            }
        }
        lock_row::current(client, &schema)
            .await
            .map_err(|e| e.to_string())
    }

    async fn release(&mut self, token: u64) -> Result<(), String> {
        let (claimant, schema) = (self.claimant.clone(), self.settings.schema.clone());
        let client = self.client().await.map_err(|e| e.to_string())?;
        lock_row::release(client, &schema, &claimant, token)
            .await
            .map(|_| ())
            .map_err(|e| e.to_string())
    }

    fn reset(&mut self) {
        self.client = None;
    }
}
