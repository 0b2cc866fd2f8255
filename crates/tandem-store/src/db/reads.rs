//! Reads of Tandem's tables, written once for every engine that holds them: an engine says only
//! how a read reaches its tables and which clock decides what has expired.

use std::collections::BTreeMap;

use tandem_registry::{JoinTokenInfo, MeshMember};

use crate::db::{auth, cache, keys, kv, locks, meta, registry, META_REGISTRY_INDEX};
use crate::db::{AgentCredentialRecord, AuditEntry, CredentialRecord, KvEntry, PublishedKey};
use crate::error::StoreError;
use crate::rules::lease::LockState;
use crate::rules::registry::{AgentRow, CredentialRow};
use crate::tables::{params, Tables};

/// One read of the tables, given the clock ("now", in milliseconds) it goes by.
pub type TablesRead<'a> = dyn FnMut(&dyn Tables, i64) -> Result<(), StoreError> + 'a;

/// The replicated state as reads see it.
pub trait StateReads: Send + Sync {
    /// Runs `read` once on the tables, with the clock that decides what has expired.
    fn read_tables(&self, read: &mut TablesRead<'_>) -> Result<(), StoreError>;

    fn kv_get(&self, key: &str) -> Result<Option<KvEntry>, StoreError> {
        reading(self, |conn, now| kv::row(conn, key, now))
    }

    /// Keys starting with `prefix` and sorting after `after`, in order, at most `limit`.
    fn kv_list(
        &self,
        prefix: &str,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<String>, StoreError> {
        reading(self, |conn, now| kv::list(conn, prefix, after, limit, now))
    }

    fn cache_get(&self, namespace: &str, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        reading(self, |conn, now| cache::row(conn, namespace, key, now))
    }

    /// The lock as this replica sees it; an expired lease shows as not held.
    fn lock_get(&self, name: &str) -> Result<Option<LockState>, StoreError> {
        reading(self, |conn, now| {
            Ok(locks::row(conn, name)?.map(|lock| lock.seen_at(now)))
        })
    }

    /// Signing keys in the key set (published, and not yet removed after retirement), oldest
    /// first.
    fn keys_published(&self) -> Result<Vec<PublishedKey>, StoreError> {
        reading(self, |conn, _| keys::published(conn))
    }

    /// The registry's agents, or those of `pool`, by name.
    fn registry_agents(&self, pool: Option<&str>) -> Result<Vec<AgentRow>, StoreError> {
        reading(self, |conn, _| registry::agents(conn, pool))
    }

    fn registry_agent(&self, name: &str) -> Result<Option<AgentRow>, StoreError> {
        reading(self, |conn, _| registry::agent(conn, name))
    }

    /// An agent's credential, revoked or not.
    fn registry_credential(&self, id: &str) -> Result<Option<CredentialRow>, StoreError> {
        reading(self, |conn, _| registry::credential(conn, id))
    }

    /// Every agent's credential, revoked ones too, oldest first.
    fn registry_credentials(&self) -> Result<Vec<AgentCredentialRecord>, StoreError> {
        reading(self, |conn, _| registry::credentials(conn))
    }

    /// The names of agents whose credentials are revoked and that hold no unrevoked one.
    fn revoked_agent_names(&self) -> Result<Vec<String>, StoreError> {
        reading(self, |conn, _| registry::revoked_names(conn))
    }

    /// Where every registered agent with a mesh listens, and which mesh it is in, by name.
    fn mesh_members(&self) -> Result<Vec<MeshMember>, StoreError> {
        reading(self, |conn, _| registry::mesh_members(conn))
    }

    /// The agents whose announcements are restricted, each with what it may announce.
    fn announce_limits(&self) -> Result<BTreeMap<String, Vec<String>>, StoreError> {
        reading(self, |conn, _| registry::announce_limits(conn))
    }

    /// A scoped credential by its id, whatever its state.
    fn credential(&self, id: &str) -> Result<Option<CredentialRecord>, StoreError> {
        reading(self, |conn, _| auth::credential(conn, id))
    }

    /// Every scoped credential, revoked and expired ones too, oldest first.
    fn credentials(&self) -> Result<Vec<CredentialRecord>, StoreError> {
        reading(self, |conn, _| auth::credentials(conn))
    }

    /// Audit entries after `since`, oldest first, at most `limit`.
    fn audit(&self, since: u64, limit: u32) -> Result<Vec<AuditEntry>, StoreError> {
        reading(self, |conn, _| auth::audit(conn, since, limit))
    }

    /// Join tokens that are neither revoked nor expired at this replica's clock, oldest first.
    fn join_tokens(&self) -> Result<Vec<JoinTokenInfo>, StoreError> {
        reading(self, registry::tokens)
    }

    /// The pool of join token `id`, whatever its state (expired, used up, revoked): enrolment
    /// needs it before the replicated step decides whether the token may still be used.
    fn join_token_pool(&self, id: &str) -> Result<Option<String>, StoreError> {
        reading(self, |conn, _| {
            Ok(registry::token(conn, id)?.map(|token| token.pool))
        })
    }

    /// The registry index of the last change to `pool`'s agents (0 if none), or with `None`
    /// of the last change to any agent.
    fn registry_index(&self, pool: Option<&str>) -> Result<u64, StoreError> {
        reading(self, |conn, _| match pool {
            Some(pool) => registry::pool_index(conn, pool),
            None => Ok(meta::read_i64(conn, META_REGISTRY_INDEX)?.max(0) as u64),
        })
    }

    /// The earliest time at which a key, cache entry, lease, join token or retired signing key
    /// expires.
    fn next_expiry(&self) -> Result<Option<i64>, StoreError> {
        reading(self, |conn, _| {
            let at = conn.query_row(
                "SELECT min(at) FROM (
                    SELECT min(expires_at) AS at FROM _tandem_kv WHERE expires_at IS NOT NULL
                    UNION ALL SELECT min(expires_at) FROM _tandem_cache WHERE expires_at IS NOT NULL
                    UNION ALL SELECT min(expires_at) FROM _tandem_locks WHERE expires_at IS NOT NULL
                    UNION ALL SELECT min(remove_at) FROM _tandem_keys WHERE removed = 0 AND remove_at IS NOT NULL
                    UNION ALL SELECT min(expires_at) + ?1 FROM _tandem_join_tokens WHERE expires_at IS NOT NULL
                ) AS expiries",
                params![crate::rules::registry::EXPIRED_TOKEN_KEPT_MS],
                |mut r| r.get(0),
            )?;
            Ok(at.flatten())
        })
    }
}

/// Runs `read` through [`StateReads::read_tables`], answering what it answers.
fn reading<T, R: StateReads + ?Sized>(
    reads: &R,
    read: impl FnOnce(&dyn Tables, i64) -> Result<T, StoreError>,
) -> Result<T, StoreError> {
    let mut read = Some(read);
    let mut answer = None;
    reads.read_tables(&mut |conn, now| {
        if let Some(read) = read.take() {
            answer = Some(read(conn, now)?);
        }
        Ok(())
    })?;
    answer.ok_or_else(|| StoreError::Corrupt {
        what: "read",
        detail: "the engine did not run the read".into(),
    })
}
