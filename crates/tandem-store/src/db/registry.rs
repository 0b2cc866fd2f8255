//! The agent registry in Tandem's tables: join tokens, credentials and agents' rows. Loads rows, asks
//! [`crate::rules::registry`], and stores what it answers under a new registry index.

use std::collections::{BTreeMap, BTreeSet};

use tandem_registry::{CheckReport, CheckStatus, JoinTokenInfo, MeshMember, MeshMembership};

use crate::command::{Outcome, RegistryCommand, Rejection};
use crate::db::apply::{ApplyError, Applying};
use crate::error::StoreError;
use crate::rules::registry::{self as rules, AgentRow, CredentialRow, JoinToken, Registering};
use crate::rules::ttl;
use crate::tables::{params, saturating_i64, Row, Tables};

const AGENT_COLUMNS: &str = "name, pool, credential_id, address, labels, version, health, checks, \
     down_since, draining, state_since, registered_at, modify_index";

pub(super) fn apply(
    applying: &mut Applying<'_>,
    command: &RegistryCommand,
) -> Result<Outcome, ApplyError> {
    match command {
        RegistryCommand::TokenCreate {
            id,
            pool,
            secret_sha256,
            ttl_ms,
            uses,
        } => create_token(applying, id, pool, secret_sha256, *ttl_ms, *uses),
        RegistryCommand::TokenCreateRestricted {
            token,
            mesh_announce,
        } => {
            let t = token;
            let created =
                create_token(applying, &t.id, &t.pool, &t.secret_sha256, t.ttl_ms, t.uses)?;
            applying.conn.execute(
                "INSERT INTO _tandem_join_token_announce (token_id, allow) VALUES (?1, ?2)
                 ON CONFLICT (token_id) DO UPDATE SET allow = excluded.allow",
                params![&t.id, &json_text(mesh_announce)],
            )?;
            Ok(created)
        }
        RegistryCommand::MeshJoin {
            credential_id,
            name,
            membership,
        } => mesh_join(applying, credential_id, name, membership.as_ref()),
        RegistryCommand::SetAnnounce { name, allow } => {
            set_announce(applying, name, allow.as_deref())
        }
        RegistryCommand::TokenRevoke { id } => revoke_token(applying, id),
        RegistryCommand::Enroll {
            token_id,
            secret_sha256,
            name,
            credential_id,
            public_jwk,
            certificate_pem,
        } => {
            let enrolling = Enrolling {
                name,
                credential_id,
                public_jwk,
                certificate_pem,
            };
            enroll(applying, token_id, secret_sha256, enrolling)
        }
        RegistryCommand::Register {
            credential_id,
            name,
            address,
            labels,
            version,
            checks,
        } => {
            let registering = Registering {
                address,
                labels,
                version,
                checks,
            };
            register(applying, credential_id, name, registering)
        }
        RegistryCommand::Report {
            credential_id,
            name,
            checks,
        } => report(applying, credential_id, name, checks),
        RegistryCommand::MarkDown { names } => {
            let names = unique(names);
            let changed = load_each(applying.conn, &names, |row| {
                rules::marked_down(row, applying.now)
            })?;
            let count = record(applying, changed, Vec::new())?;
            Ok(Outcome::AgentsChanged { count })
        }
        RegistryCommand::Drain { name } => {
            let row = agent(applying.conn, name)?.ok_or_else(|| rules::not_registered(name))?;
            let after = rules::drained(&row, applying.now);
            answer_state(applying, &row, after)
        }
        RegistryCommand::Deregister {
            name,
            credential_id,
        } => {
            let removed = agent(applying.conn, name)?
                .filter(|row| rules::deregisters(row, credential_id.as_deref()));
            let count = record(applying, Vec::new(), removed.into_iter().collect())?;
            Ok(Outcome::AgentsChanged { count })
        }
        RegistryCommand::Revoke { name } => revoke_agent(applying, name),
        RegistryCommand::Remove { names } => {
            let names = unique(names);
            let removed = load_each(applying.conn, &names, |row| {
                rules::removable(row).then(|| row.clone())
            })?;
            let count = record(applying, Vec::new(), removed)?;
            Ok(Outcome::AgentsChanged { count })
        }
    }
}

fn unique(names: &[String]) -> BTreeSet<&str> {
    names.iter().map(String::as_str).collect()
}

/// The rows `change` answers for the agents named that have rows.
fn load_each(
    conn: &dyn Tables,
    names: &BTreeSet<&str>,
    change: impl Fn(&AgentRow) -> Option<AgentRow>,
) -> Result<Vec<AgentRow>, ApplyError> {
    let mut changed = Vec::new();
    for name in names {
        if let Some(after) = agent(conn, name)?.as_ref().and_then(&change) {
            changed.push(after);
        }
    }
    Ok(changed)
}

/// Removes the `removed` rows, then stores the `stored` ones, all under one new registry index
/// that becomes their pools' index too. Answers how many rows changed; no change takes no index.
fn record(
    applying: &mut Applying<'_>,
    mut stored: Vec<AgentRow>,
    removed: Vec<AgentRow>,
) -> Result<u64, ApplyError> {
    let count = (stored.len() + removed.len()) as u64;
    if count == 0 {
        return Ok(0);
    }
    let index = applying.count_registry_change();
    let conn = applying.conn;
    let mut pools = BTreeSet::new();
    for row in &removed {
        conn.execute(
            "DELETE FROM _tandem_agents WHERE name = ?1",
            params![&row.name],
        )?;
        conn.execute(
            "DELETE FROM _tandem_mesh_members WHERE name = ?1",
            params![&row.name],
        )?;
        pools.insert(row.pool.as_str());
    }
    for row in &mut stored {
        row.modify_index = index;
        store_agent(conn, row)?;
        pools.insert(row.pool.as_str());
    }
    for pool in pools {
        conn.execute(
            "INSERT INTO _tandem_registry_pools (pool, idx) VALUES (?1, ?2)
             ON CONFLICT (pool) DO UPDATE SET idx = excluded.idx",
            params![pool, saturating_i64(index)],
        )?;
    }
    Ok(count)
}

fn create_token(
    applying: &mut Applying<'_>,
    id: &str,
    pool: &str,
    secret_sha256: &[u8],
    ttl_ms: Option<u64>,
    uses: Option<u64>,
) -> Result<Outcome, ApplyError> {
    if token(applying.conn, id)?.is_some() {
        return Err(Rejection::conflict(format!(
            "join token id {id} exists already; create the token again for a new id"
        ))
        .into());
    }
    let expires_at_ms = ttl::expires_at(applying.now, ttl_ms);
    applying.conn.execute(
        "INSERT INTO _tandem_join_tokens (id, pool, secret_sha256, created_at, expires_at, uses_left)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![
            id,
            pool,
            secret_sha256,
            applying.now,
            expires_at_ms,
            uses.map(saturating_i64)
        ],
    )?;
    Ok(Outcome::TokenCreated { expires_at_ms })
}

fn revoke_token(applying: &mut Applying<'_>, id: &str) -> Result<Outcome, ApplyError> {
    let changed = applying.conn.execute(
        "UPDATE _tandem_join_tokens SET revoked = 1 WHERE id = ?1",
        params![id],
    )?;
    if changed == 0 {
        return Err(Rejection::not_found(format!(
            "join token {id} does not exist (`tandem agents token ls` shows those that do)"
        ))
        .into());
    }
    Ok(Outcome::TokenRevoked)
}

/// The credential an enrolment asks for; its pool is the join token's.
struct Enrolling<'a> {
    name: &'a str,
    credential_id: &'a str,
    public_jwk: &'a str,
    certificate_pem: &'a str,
}

/// Trades the join token for the credential asked for.
fn enroll(
    applying: &mut Applying<'_>,
    token_id: &str,
    secret_sha256: &[u8],
    credential: Enrolling<'_>,
) -> Result<Outcome, ApplyError> {
    let conn = applying.conn;
    let stored = token(conn, token_id)?;
    let holder = conn.query_row(
        "SELECT id, pool, token_id, public_jwk FROM _tandem_agent_credentials
         WHERE name = ?1 AND revoked_at IS NULL ORDER BY issued_at, id LIMIT 1",
        params![credential.name],
        |mut r| {
            Ok(rules::NameHolder {
                credential_id: r.get(0)?,
                pool: r.get(1)?,
                token_id: r.get(2)?,
                public_jwk: r.get(3)?,
            })
        },
    )?;
    if let Some(holder) = &holder {
        let secret_matches = stored
            .as_ref()
            .is_some_and(|t| rules::same_hash(&t.secret_sha256, secret_sha256));
        if secret_matches && rules::repeats_enrolment(holder, token_id, credential.public_jwk) {
            return Ok(Outcome::AgentEnrolled {
                pool: holder.pool.clone(),
                credential_id: holder.credential_id.clone(),
            });
        }
    }
    let redeemed = rules::redeem(stored.as_ref(), secret_sha256, applying.now)?;
    if self::credential(conn, credential.credential_id)?.is_some() {
        return Err(Rejection::conflict(format!(
            "credential id {} exists already; enrol again for a new id",
            credential.credential_id
        ))
        .into());
    }
    rules::check_name_free(
        credential.name,
        holder.as_ref().map(|h| h.credential_id.as_str()),
    )?;
    conn.execute(
        "INSERT INTO _tandem_agent_credentials
         (id, name, pool, public_jwk, certificate_pem, token_id, issued_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        params![
            credential.credential_id,
            credential.name,
            redeemed.pool,
            credential.public_jwk,
            credential.certificate_pem,
            token_id,
            applying.now
        ],
    )?;
    conn.execute(
        "UPDATE _tandem_join_tokens SET uses_left = ?2 WHERE id = ?1",
        params![token_id, redeemed.uses_left.map(saturating_i64)],
    )?;
    // The new credential announces what its token allows: a restricted token's list, or,
    // from an unrestricted token, anything (a restriction of an earlier holder of the name
    // does not carry over).
    let token_allow: Option<String> = conn.query_row(
        "SELECT allow FROM _tandem_join_token_announce WHERE token_id = ?1",
        params![token_id],
        |mut r| r.get(0),
    )?;
    store_announce(conn, credential.name, token_allow.as_deref())?;
    Ok(Outcome::AgentEnrolled {
        pool: redeemed.pool.to_string(),
        credential_id: credential.credential_id.to_string(),
    })
}

fn register(
    applying: &mut Applying<'_>,
    credential_id: &str,
    name: &str,
    registering: Registering<'_>,
) -> Result<Outcome, ApplyError> {
    let stored = credential(applying.conn, credential_id)?;
    let credential = rules::authorize(stored.as_ref(), credential_id, name)?;
    let before = agent(applying.conn, name)?;
    let after = rules::registered(before.as_ref(), credential, registering, applying.now);
    let state = after.state();
    // A row that moves to another pool leaves its old one, whose index then changes too.
    let left = before.filter(|row| row.pool != after.pool);
    record(applying, vec![after], left.into_iter().collect())?;
    Ok(Outcome::AgentState { state })
}

fn report(
    applying: &mut Applying<'_>,
    credential_id: &str,
    name: &str,
    checks: &[CheckReport],
) -> Result<Outcome, ApplyError> {
    let row = own_row(applying.conn, credential_id, name)?;
    let after = rules::reported(&row, checks, applying.now);
    answer_state(applying, &row, after)
}

/// The row of agent `name`, registered with its unrevoked credential `credential_id`.
fn own_row(conn: &dyn Tables, credential_id: &str, name: &str) -> Result<AgentRow, ApplyError> {
    let stored = credential(conn, credential_id)?;
    rules::authorize(stored.as_ref(), credential_id, name)?;
    // A row another credential registered is not this agent's until it registers again.
    Ok(agent(conn, name)?
        .filter(|row| row.credential_id == credential_id)
        .ok_or_else(|| rules::not_registered(name))?)
}

/// Records `after`, the row's change if it has one, and answers the agent's state.
fn answer_state(
    applying: &mut Applying<'_>,
    row: &AgentRow,
    after: Option<AgentRow>,
) -> Result<Outcome, ApplyError> {
    let state = after.as_ref().unwrap_or(row).state();
    record(applying, after.into_iter().collect(), Vec::new())?;
    Ok(Outcome::AgentState { state })
}

fn revoke_agent(applying: &mut Applying<'_>, name: &str) -> Result<Outcome, ApplyError> {
    let conn = applying.conn;
    let enrolled = conn.exists(
        "SELECT 1 FROM _tandem_agent_credentials WHERE name = ?1",
        params![name],
    )?;
    let row = agent(conn, name)?;
    if !enrolled && row.is_none() {
        return Err(Rejection::not_found(format!(
            "agent {name} was never enrolled; there is nothing to revoke"
        ))
        .into());
    }
    let credentials = conn.execute(
        "UPDATE _tandem_agent_credentials SET revoked_at = ?2
         WHERE name = ?1 AND revoked_at IS NULL",
        params![name, applying.now],
    )?;
    record(applying, Vec::new(), row.into_iter().collect())?;
    store_announce(conn, name, None)?;
    Ok(Outcome::AgentRevoked { credentials })
}

fn json_text(list: &[String]) -> String {
    // Plain data always serialises.
    serde_json::to_string(list).unwrap_or_default()
}

/// Stores what agent `name` may announce, as JSON text; `None` lifts the restriction.
fn store_announce(conn: &dyn Tables, name: &str, allow: Option<&str>) -> Result<(), StoreError> {
    match allow {
        Some(allow) => conn.execute(
            "INSERT INTO _tandem_mesh_announce (name, allow) VALUES (?1, ?2)
             ON CONFLICT (name) DO UPDATE SET allow = excluded.allow",
            params![name, allow],
        )?,
        None => conn.execute(
            "DELETE FROM _tandem_mesh_announce WHERE name = ?1",
            params![name],
        )?,
    };
    Ok(())
}

/// A registered agent's mesh membership, from its own credential; answers the agent's state.
fn mesh_join(
    applying: &mut Applying<'_>,
    credential_id: &str,
    name: &str,
    membership: Option<&MeshMembership>,
) -> Result<Outcome, ApplyError> {
    let row = own_row(applying.conn, credential_id, name)?;
    match membership {
        Some(m) => applying.conn.execute(
            "INSERT INTO _tandem_mesh_members (name, mesh, address) VALUES (?1, ?2, ?3)
             ON CONFLICT (name) DO UPDATE SET mesh = excluded.mesh, address = excluded.address",
            params![name, &m.mesh, &m.address],
        )?,
        None => applying.conn.execute(
            "DELETE FROM _tandem_mesh_members WHERE name = ?1",
            params![name],
        )?,
    };
    Ok(Outcome::AgentState { state: row.state() })
}

/// Restricts (or frees) what an enrolled agent may announce.
fn set_announce(
    applying: &mut Applying<'_>,
    name: &str,
    allow: Option<&[String]>,
) -> Result<Outcome, ApplyError> {
    let conn = applying.conn;
    let enrolled = conn.exists(
        "SELECT 1 FROM _tandem_agent_credentials WHERE name = ?1 AND revoked_at IS NULL",
        params![name],
    )?;
    if !enrolled {
        return Err(Rejection::not_found(format!(
            "agent {name} is not enrolled (`tandem agents ls` lists the registered agents)"
        ))
        .into());
    }
    store_announce(conn, name, allow.map(json_text).as_deref())?;
    Ok(Outcome::AgentsChanged { count: 1 })
}

/// Every agent's mesh membership, by name.
pub(super) fn mesh_members(conn: &dyn Tables) -> Result<Vec<MeshMember>, StoreError> {
    conn.query_map(
        "SELECT name, mesh, address FROM _tandem_mesh_members ORDER BY name",
        params![],
        |mut r| {
            Ok(MeshMember {
                name: r.get(0)?,
                mesh: r.get(1)?,
                address: r.get(2)?,
            })
        },
    )
}

/// Every restricted agent's list, by name.
pub(super) fn announce_limits(
    conn: &dyn Tables,
) -> Result<BTreeMap<String, Vec<String>>, StoreError> {
    let limits = conn.query_map(
        "SELECT name, allow FROM _tandem_mesh_announce ORDER BY name",
        params![],
        |mut r| Ok((r.get(0)?, r.json(1)?)),
    )?;
    Ok(limits.into_iter().collect())
}

/// Removes every join token expired for longer than [`crate::rules::registry::EXPIRED_TOKEN_KEPT_MS`] by `now`;
/// answers how many.
pub(super) fn expire(conn: &dyn Tables, now: i64) -> Result<u64, StoreError> {
    let removed = conn.execute(
        "DELETE FROM _tandem_join_tokens WHERE expires_at <= ?1",
        params![ttl::expired_through(
            now.saturating_sub(crate::rules::registry::EXPIRED_TOKEN_KEPT_MS),
        )],
    )?;
    if removed > 0 {
        conn.execute(
            "DELETE FROM _tandem_join_token_announce
             WHERE token_id NOT IN (SELECT id FROM _tandem_join_tokens)",
            params![],
        )?;
    }
    Ok(removed)
}

pub(super) fn token(conn: &dyn Tables, id: &str) -> Result<Option<JoinToken>, StoreError> {
    conn.query_row(
        "SELECT pool, secret_sha256, created_at, expires_at, uses_left, revoked
         FROM _tandem_join_tokens WHERE id = ?1",
        params![id],
        |mut r| {
            Ok(JoinToken {
                id: id.to_string(),
                pool: r.get(0)?,
                secret_sha256: r.get(1)?,
                created_at_ms: r.get(2)?,
                expires_at_ms: r.get(3)?,
                uses_left: r.get(4)?,
                revoked: r.get(5)?,
            })
        },
    )
}

/// Join tokens that may still enrol at `now` (not revoked, not expired), oldest first. Used-up
/// tokens are listed with no uses left.
pub(super) fn tokens(conn: &dyn Tables, now: i64) -> Result<Vec<JoinTokenInfo>, StoreError> {
    let tokens = conn.query_map(
        "SELECT id, pool, created_at, expires_at, uses_left FROM _tandem_join_tokens
         WHERE revoked = 0 ORDER BY created_at, id",
        params![],
        |mut r| {
            Ok(JoinTokenInfo {
                id: r.get(0)?,
                pool: r.get(1)?,
                created_at_ms: r.get(2)?,
                expires_at_ms: r.get(3)?,
                uses_left: r.get(4)?,
            })
        },
    )?;
    Ok(tokens
        .into_iter()
        .filter(|token| !ttl::is_expired(token.expires_at_ms, now))
        .collect())
}

pub(super) fn credential(conn: &dyn Tables, id: &str) -> Result<Option<CredentialRow>, StoreError> {
    conn.query_row(
        "SELECT name, pool, public_jwk, revoked_at FROM _tandem_agent_credentials WHERE id = ?1",
        params![id],
        |mut r| {
            Ok(CredentialRow {
                id: id.to_string(),
                name: r.get(0)?,
                pool: r.get(1)?,
                public_jwk: r.get(2)?,
                revoked: r.get::<Option<i64>>(3)?.is_some(),
            })
        },
    )
}

/// An enrolled agent's credential as the credential listing shows it: it holds the one grant
/// `agent:<name>`, and never expires by itself (revocation ends it).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct AgentCredentialRecord {
    pub id: String,
    pub name: String,
    pub pool: String,
    pub created_at_ms: i64,
    pub revoked_at_ms: Option<i64>,
}

/// Every agent's credential, revoked ones too, oldest first.
pub(super) fn credentials(conn: &dyn Tables) -> Result<Vec<AgentCredentialRecord>, StoreError> {
    conn.query_map(
        "SELECT id, name, pool, issued_at, revoked_at FROM _tandem_agent_credentials
         ORDER BY issued_at, id",
        params![],
        |mut r| {
            Ok(AgentCredentialRecord {
                id: r.get(0)?,
                name: r.get(1)?,
                pool: r.get(2)?,
                created_at_ms: r.get(3)?,
                revoked_at_ms: r.get(4)?,
            })
        },
    )
}

/// The names of agents with a revoked credential and no unrevoked one, by name.
pub(super) fn revoked_names(conn: &dyn Tables) -> Result<Vec<String>, StoreError> {
    conn.query_map(
        "SELECT DISTINCT name FROM _tandem_agent_credentials AS c
         WHERE revoked_at IS NOT NULL AND NOT EXISTS (
             SELECT 1 FROM _tandem_agent_credentials
             WHERE name = c.name AND revoked_at IS NULL)
         ORDER BY name",
        params![],
        |mut r| r.get(0),
    )
}

fn agent_from(mut r: Row) -> Result<AgentRow, StoreError> {
    let health: String = r.get(6)?;
    Ok(AgentRow {
        name: r.get(0)?,
        pool: r.get(1)?,
        credential_id: r.get(2)?,
        address: r.get(3)?,
        labels: r.json::<BTreeMap<String, String>>(4)?,
        version: r.get(5)?,
        health: health
            .parse::<CheckStatus>()
            .map_err(|e| StoreError::Corrupt {
                what: "agent health",
                detail: e.to_string(),
            })?,
        checks: r.json(7)?,
        down_since_ms: r.get(8)?,
        draining: r.get(9)?,
        state_since_ms: r.get(10)?,
        registered_at_ms: r.get(11)?,
        modify_index: r.get(12)?,
    })
}

pub(super) fn agent(conn: &dyn Tables, name: &str) -> Result<Option<AgentRow>, StoreError> {
    conn.query_row(
        &format!("SELECT {AGENT_COLUMNS} FROM _tandem_agents WHERE name = ?1"),
        params![name],
        agent_from,
    )
}

/// Every agent, or those of `pool`, by name.
pub(super) fn agents(conn: &dyn Tables, pool: Option<&str>) -> Result<Vec<AgentRow>, StoreError> {
    match pool {
        None => conn.query_map(
            &format!("SELECT {AGENT_COLUMNS} FROM _tandem_agents ORDER BY name"),
            params![],
            agent_from,
        ),
        Some(pool) => conn.query_map(
            &format!("SELECT {AGENT_COLUMNS} FROM _tandem_agents WHERE pool = ?1 ORDER BY name"),
            params![pool],
            agent_from,
        ),
    }
}

/// Stores an agent's row, whether it has one or not.
static STORE_AGENT: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    let assignments = AGENT_COLUMNS
        .split(", ")
        .skip(1)
        .map(|column| format!("{column} = excluded.{column}"))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "INSERT INTO _tandem_agents ({AGENT_COLUMNS})
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)
         ON CONFLICT (name) DO UPDATE SET {assignments}"
    )
});

fn store_agent(conn: &dyn Tables, row: &AgentRow) -> Result<(), StoreError> {
    // Plain data always serialises.
    let labels = serde_json::to_string(&row.labels).unwrap_or_default();
    let checks = serde_json::to_string(&row.checks).unwrap_or_default();
    conn.execute(
        &STORE_AGENT,
        params![
            &row.name,
            &row.pool,
            &row.credential_id,
            &row.address,
            &labels,
            &row.version,
            row.health.as_str(),
            &checks,
            row.down_since_ms,
            row.draining,
            row.state_since_ms,
            row.registered_at_ms,
            saturating_i64(row.modify_index)
        ],
    )?;
    Ok(())
}

/// The index of `pool`'s last change, 0 if it never changed.
pub(super) fn pool_index(conn: &dyn Tables, pool: &str) -> Result<u64, StoreError> {
    let idx: Option<u64> = conn.query_row(
        "SELECT idx FROM _tandem_registry_pools WHERE pool = ?1",
        params![pool],
        |mut r| r.get(0),
    )?;
    Ok(idx.unwrap_or(0))
}
