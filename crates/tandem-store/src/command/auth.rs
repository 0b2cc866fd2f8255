//! Commands that change the scoped credentials of the client API.

use serde::{Deserialize, Serialize};

use super::registry::{check_id, check_sha256};
use super::{check_ttl, Rejection};
use crate::rules::grants::parse_grants;

/// Who the API secret is, in the audit log.
pub const ROOT: &str = "root";
/// The most grants one credential may hold.
pub const MAX_GRANTS: usize = 256;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum AuthCommand {
    /// A credential named `name` (no other unrevoked credential may have that name), holding
    /// `grants`, valid until `ttl_ms` past the stamp (`None`: until revoked). Only the SHA-256
    /// of its secret is kept.
    Create {
        id: String,
        name: String,
        secret_sha256: Vec<u8>,
        grants: Vec<String>,
        ttl_ms: Option<u64>,
    },
    /// Revokes the unrevoked credential with this id or name.
    Revoke { credential: String },
}

impl AuthCommand {
    /// Checks everything that can be checked without the state; runs again at apply time.
    pub fn validate(&self) -> Result<(), Rejection> {
        match self {
            AuthCommand::Create {
                id,
                name,
                secret_sha256,
                grants,
                ttl_ms,
            } => {
                check_id("a credential's id", id)?;
                tandem_registry::check_name("credential name", name).map_err(Rejection::invalid)?;
                if name == ROOT {
                    return Err(Rejection::invalid(format!(
                        "{ROOT:?} names the API secret in the audit log; choose another name"
                    )));
                }
                check_sha256("a credential's secret", secret_sha256)?;
                if grants.len() > MAX_GRANTS {
                    return Err(Rejection::invalid(format!(
                        "{} grants; a credential holds at most {MAX_GRANTS}",
                        grants.len()
                    )));
                }
                parse_grants(grants).map_err(Rejection::invalid)?;
                match ttl_ms {
                    Some(ttl_ms) => check_ttl("a credential's ttl", *ttl_ms),
                    None => Ok(()),
                }
            }
            AuthCommand::Revoke { credential } => check_id("a credential's id or name", credential),
        }
    }
}
