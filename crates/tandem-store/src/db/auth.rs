//! Scoped credentials and the audit log in Tandem's tables.

use crate::command::{AuthCommand, Outcome, Rejection};
use crate::db::apply::{ApplyError, Applying};
use crate::error::StoreError;
use crate::rules::ttl;
use crate::tables::{params, saturating_i64, Row, Tables};

/// A scoped credential as the replicated state holds it (its secret only as a hash).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct CredentialRecord {
    pub id: String,
    pub name: String,
    #[serde(skip)]
    pub secret_sha256: Vec<u8>,
    pub grants: Vec<String>,
    pub created_at_ms: i64,
    pub expires_at_ms: Option<i64>,
    pub revoked_at_ms: Option<i64>,
}

impl CredentialRecord {
    /// Whether it may be used at `now_ms`.
    pub fn usable_at(&self, now_ms: i64) -> bool {
        self.revoked_at_ms.is_none() && !ttl::is_expired(self.expires_at_ms, now_ms)
    }
}

/// One change the audit log recorded.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct AuditEntry {
    pub seq: u64,
    pub at_ms: i64,
    pub who: String,
    pub action: String,
    pub detail: serde_json::Value,
}

const CREDENTIAL_COLUMNS: &str =
    "id, name, secret_sha256, grants, created_at, expires_at, revoked_at";

pub(super) fn apply(
    applying: &mut Applying<'_>,
    command: &AuthCommand,
) -> Result<Outcome, ApplyError> {
    match command {
        AuthCommand::Create {
            id,
            name,
            secret_sha256,
            grants,
            ttl_ms,
        } => {
            let conn = applying.conn;
            let taken = conn.exists(
                "SELECT 1 FROM _tandem_credentials WHERE (name = ?1 AND revoked_at IS NULL) OR id = ?2",
                params![name, id],
            )?;
            if taken {
                return Err(Rejection::conflict(format!(
                    "a credential named {name:?} already exists; revoke it first or choose another name"
                ))
                .into());
            }
            let expires_at_ms = ttl::expires_at(applying.now, *ttl_ms);
            // Plain strings always serialise.
            let grants = serde_json::to_string(grants).unwrap_or_default();
            conn.execute(
                "INSERT INTO _tandem_credentials (id, name, secret_sha256, grants, created_at, expires_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![id, name, secret_sha256, &grants, applying.now, expires_at_ms],
            )?;
            applying.count_write();
            Ok(Outcome::CredentialCreated { expires_at_ms })
        }
        AuthCommand::Revoke { credential } => {
            let conn = applying.conn;
            let found: Option<(String, String)> = conn.query_row(
                "SELECT id, name FROM _tandem_credentials
                 WHERE (id = ?1 OR name = ?1) AND revoked_at IS NULL",
                params![credential],
                |mut r| Ok((r.get(0)?, r.get(1)?)),
            )?;
            let Some((id, name)) = found else {
                return Err(Rejection::not_found(format!(
                    "no unrevoked credential has the id or name {credential:?} (`tandem auth ls` lists them)"
                ))
                .into());
            };
            conn.execute(
                "UPDATE _tandem_credentials SET revoked_at = ?2 WHERE id = ?1",
                params![&id, applying.now],
            )?;
            applying.count_write();
            Ok(Outcome::CredentialRevoked { id, name })
        }
    }
}

pub(super) fn record_audit(
    conn: &dyn Tables,
    now: i64,
    who: &str,
    action: &str,
    detail: &serde_json::Value,
) -> Result<(), StoreError> {
    conn.execute(
        "INSERT INTO _tandem_audit (at, who, action, detail) VALUES (?1, ?2, ?3, ?4)",
        params![now, who, action, &detail.to_string()],
    )?;
    Ok(())
}

fn credential_row(mut r: Row) -> Result<CredentialRecord, StoreError> {
    let grants: String = r.get(3)?;
    Ok(CredentialRecord {
        id: r.get(0)?,
        name: r.get(1)?,
        secret_sha256: r.get(2)?,
        // Written by `apply` from a list of strings; an unreadable list grants nothing.
        grants: serde_json::from_str(&grants).unwrap_or_default(),
        created_at_ms: r.get(4)?,
        expires_at_ms: r.get(5)?,
        revoked_at_ms: r.get(6)?,
    })
}

pub(super) fn credential(
    conn: &dyn Tables,
    id: &str,
) -> Result<Option<CredentialRecord>, StoreError> {
    conn.query_row(
        &format!("SELECT {CREDENTIAL_COLUMNS} FROM _tandem_credentials WHERE id = ?1"),
        params![id],
        credential_row,
    )
}

pub(super) fn credentials(conn: &dyn Tables) -> Result<Vec<CredentialRecord>, StoreError> {
    conn.query_map(
        &format!("SELECT {CREDENTIAL_COLUMNS} FROM _tandem_credentials ORDER BY created_at, id"),
        params![],
        credential_row,
    )
}

pub(super) fn audit(
    conn: &dyn Tables,
    since: u64,
    limit: u32,
) -> Result<Vec<AuditEntry>, StoreError> {
    conn.query_map(
        "SELECT seq, at, who, action, detail FROM _tandem_audit WHERE seq > ?1 ORDER BY seq LIMIT ?2",
        params![saturating_i64(since), i64::from(limit)],
        |mut r| {
            let detail: String = r.get(4)?;
            Ok(AuditEntry {
                seq: r.get(0)?,
                at_ms: r.get(1)?,
                who: r.get(2)?,
                action: r.get(3)?,
                detail: serde_json::from_str(&detail).unwrap_or(serde_json::Value::Null),
            })
        },
    )
}
