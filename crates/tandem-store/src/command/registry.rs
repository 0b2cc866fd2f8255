//! Commands that change the agent registry: join tokens, enrolment, and the agents' rows.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use tandem_registry::{
    check_announce_list, check_name, CheckReport, MeshMembership, Registration, Report,
};

use super::{check_public_key, check_ttl, Rejection};

/// Longest token or credential id accepted.
pub const MAX_ID_LEN: usize = 128;
/// Largest agent certificate accepted, in bytes of PEM.
pub const MAX_CERTIFICATE_LEN: usize = 16 * 1024;
/// The most agents one mark-down or removal may name.
pub const MAX_NAMES_PER_COMMAND: usize = 10_000;
/// Join tokens' and scoped credentials' secrets are kept only as their SHA-256.
const SHA256_LEN: usize = 32;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum RegistryCommand {
    /// A join token that enrols agents into `pool`, `uses` times (`None`: unlimited) until
    /// `ttl_ms` past the stamp (`None`: until revoked).
    TokenCreate {
        id: String,
        pool: String,
        secret_sha256: Vec<u8>,
        ttl_ms: Option<u64>,
        uses: Option<u64>,
    },
    TokenRevoke {
        id: String,
    },
    /// Trades a join token for a credential, atomically: the token must exist, match the hash,
    /// be unrevoked, unexpired at the stamp and have uses left (one is used); the name must not
    /// belong to another unrevoked credential.
    Enroll {
        token_id: String,
        secret_sha256: Vec<u8>,
        name: String,
        credential_id: String,
        public_jwk: String,
        certificate_pem: String,
    },
    /// An agent (re)starts: upserts its row from its unrevoked credential (the pool comes from
    /// the credential; the name must match the credential's), healthy as its checks say, not
    /// down, not draining.
    Register {
        credential_id: String,
        name: String,
        address: String,
        labels: BTreeMap<String, String>,
        version: String,
        checks: Vec<CheckReport>,
    },
    /// A report whose health or check statuses differ from the row, or from an agent marked
    /// down: sets health and checks, clears down. Any other report changes nothing.
    Report {
        credential_id: String,
        name: String,
        checks: Vec<CheckReport>,
    },
    /// Marks agents down; absent or already-down agents are skipped.
    MarkDown {
        names: Vec<String>,
    },
    Drain {
        name: String,
    },
    /// Removes the agent's row; with a credential, only if the row was registered with it.
    Deregister {
        name: String,
        credential_id: Option<String>,
    },
    /// Revokes every credential of that name and removes the agent's row.
    Revoke {
        name: String,
    },
    /// The `deregister_after` reaper: removes those of the agents that are still down.
    Remove {
        names: Vec<String>,
    },
    // New variants go below: a variant's place is its number in the encoded log.
    /// A registered agent says which mesh it is in and where its peers reach it (`None`: it
    /// has no mesh now). Kept beside the agent's row, and removed with it.
    MeshJoin {
        credential_id: String,
        name: String,
        membership: Option<MeshMembership>,
    },
    /// What an enrolled agent may announce in the mesh (`None`: anything).
    SetAnnounce {
        name: String,
        allow: Option<Vec<String>>,
    },
    /// A join token as [`RegistryCommand::TokenCreate`] makes it, whose agents may announce
    /// only `mesh_announce`.
    TokenCreateRestricted {
        token: TokenSpec,
        mesh_announce: Vec<String>,
    },
}

/// A join token to create: enrols agents into `pool`, `uses` times (`None`: unlimited) until
/// `ttl_ms` past the stamp (`None`: until revoked).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TokenSpec {
    pub id: String,
    pub pool: String,
    pub secret_sha256: Vec<u8>,
    pub ttl_ms: Option<u64>,
    pub uses: Option<u64>,
}

impl TokenSpec {
    /// The plain [`RegistryCommand::TokenCreate`] of this token, which every server knows.
    pub fn into_command(self) -> RegistryCommand {
        RegistryCommand::TokenCreate {
            id: self.id,
            pool: self.pool,
            secret_sha256: self.secret_sha256,
            ttl_ms: self.ttl_ms,
            uses: self.uses,
        }
    }

    fn validate(&self) -> Result<(), Rejection> {
        check_new_token(
            &self.id,
            &self.pool,
            &self.secret_sha256,
            self.ttl_ms,
            self.uses,
        )
    }
}

fn check_new_token(
    id: &str,
    pool: &str,
    secret_sha256: &[u8],
    ttl_ms: Option<u64>,
    uses: Option<u64>,
) -> Result<(), Rejection> {
    check_id("a join token's id", id)?;
    check_name("pool", pool).map_err(Rejection::invalid)?;
    check_sha256("a join token's secret", secret_sha256)?;
    if let Some(ttl_ms) = ttl_ms {
        check_ttl("a join token's ttl", ttl_ms)?;
    }
    if uses == Some(0) {
        return Err(Rejection::invalid(
            "a join token needs at least 1 use; leave the number of uses out for unlimited",
        ));
    }
    Ok(())
}

pub(super) fn check_id(what: &str, id: &str) -> Result<(), Rejection> {
    if id.is_empty() || id.len() > MAX_ID_LEN {
        return Err(Rejection::invalid(format!(
            "{what} must be 1 to {MAX_ID_LEN} bytes long, got {}",
            id.len()
        )));
    }
    Ok(())
}

pub(super) fn check_sha256(what: &str, hash: &[u8]) -> Result<(), Rejection> {
    if hash.len() != SHA256_LEN {
        return Err(Rejection::invalid(format!(
            "{what} is sent as its SHA-256 ({SHA256_LEN} bytes), got {} bytes",
            hash.len()
        )));
    }
    Ok(())
}

fn check_agent_name(name: &str) -> Result<(), Rejection> {
    check_name("agent name", name).map_err(Rejection::invalid)
}

fn check_names(names: &[String]) -> Result<(), Rejection> {
    if names.len() > MAX_NAMES_PER_COMMAND {
        return Err(Rejection::invalid(format!(
            "{} agents named in one command; the limit is {MAX_NAMES_PER_COMMAND}",
            names.len()
        )));
    }
    names.iter().try_for_each(|name| check_agent_name(name))
}

fn check_announce(allow: &[String]) -> Result<(), Rejection> {
    check_announce_list(allow).map_err(|e| Rejection::invalid(format!("mesh announce: {e}")))
}

impl RegistryCommand {
    /// Whether this command may make the registry larger: new join tokens and enrolments do;
    /// what keeps enrolled agents running (registering, reporting, joining the mesh) or removes
    /// them does not.
    pub fn adds_data(&self) -> bool {
        match self {
            RegistryCommand::TokenCreate { .. }
            | RegistryCommand::TokenCreateRestricted { .. }
            | RegistryCommand::Enroll { .. } => true,
            RegistryCommand::TokenRevoke { .. }
            | RegistryCommand::Register { .. }
            | RegistryCommand::Report { .. }
            | RegistryCommand::MarkDown { .. }
            | RegistryCommand::Drain { .. }
            | RegistryCommand::Deregister { .. }
            | RegistryCommand::Revoke { .. }
            | RegistryCommand::Remove { .. }
            | RegistryCommand::MeshJoin { .. }
            | RegistryCommand::SetAnnounce { .. } => false,
        }
    }

    /// Checks everything that can be checked without the state; runs again at apply time.
    pub fn validate(&self) -> Result<(), Rejection> {
        match self {
            RegistryCommand::TokenCreateRestricted {
                token,
                mesh_announce,
            } => {
                check_announce(mesh_announce)?;
                token.validate()
            }
            RegistryCommand::MeshJoin {
                credential_id,
                name,
                membership,
            } => {
                check_id("a credential's id", credential_id)?;
                check_agent_name(name)?;
                match membership {
                    Some(membership) => membership.check().map_err(Rejection::invalid),
                    None => Ok(()),
                }
            }
            RegistryCommand::SetAnnounce { name, allow } => {
                check_agent_name(name)?;
                allow.as_deref().map_or(Ok(()), check_announce)
            }
            RegistryCommand::TokenCreate {
                id,
                pool,
                secret_sha256,
                ttl_ms,
                uses,
            } => check_new_token(id, pool, secret_sha256, *ttl_ms, *uses),
            RegistryCommand::TokenRevoke { id } => check_id("a join token's id", id),
            RegistryCommand::Enroll {
                token_id,
                secret_sha256,
                name,
                credential_id,
                public_jwk,
                certificate_pem,
            } => {
                check_id("a join token's id", token_id)?;
                check_sha256("a join token's secret", secret_sha256)?;
                check_agent_name(name)?;
                check_id("a credential's id", credential_id)?;
                if !check_public_key(public_jwk)?.is_object() {
                    return Err(Rejection::invalid(
                        "the agent's public key must be a JWK: a JSON object",
                    ));
                }
                if certificate_pem.len() > MAX_CERTIFICATE_LEN {
                    return Err(Rejection::invalid(format!(
                        "the agent's certificate is {} bytes long; the limit is {MAX_CERTIFICATE_LEN}",
                        certificate_pem.len()
                    )));
                }
                Ok(())
            }
            RegistryCommand::Register {
                credential_id,
                name,
                address,
                labels,
                version,
                checks,
            } => {
                check_id("a credential's id", credential_id)?;
                check_agent_name(name)?;
                let registration = Registration {
                    address: address.clone(),
                    labels: labels.clone(),
                    version: version.clone(),
                    mesh: None,
                    report: Report {
                        checks: checks.clone(),
                        load: None,
                    },
                };
                registration.check().map_err(Rejection::invalid)
            }
            RegistryCommand::Report {
                credential_id,
                name,
                checks,
            } => {
                check_id("a credential's id", credential_id)?;
                check_agent_name(name)?;
                let report = Report {
                    checks: checks.clone(),
                    load: None,
                };
                report.check().map_err(Rejection::invalid)
            }
            RegistryCommand::MarkDown { names } | RegistryCommand::Remove { names } => {
                check_names(names)
            }
            RegistryCommand::Drain { name } | RegistryCommand::Revoke { name } => {
                check_agent_name(name)
            }
            RegistryCommand::Deregister {
                name,
                credential_id,
            } => {
                check_agent_name(name)?;
                match credential_id {
                    Some(id) => check_id("a credential's id", id),
                    None => Ok(()),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::Command;
    use tandem_registry::{CheckKind, CheckStatus};

    fn enroll() -> RegistryCommand {
        RegistryCommand::Enroll {
            token_id: "tok-1".into(),
            secret_sha256: vec![1; 32],
            name: "gw-1".into(),
            credential_id: "cred-1".into(),
            public_jwk: r#"{"kty":"EC","crv":"P-256","x":"AA","y":"AA"}"#.into(),
            certificate_pem: "-----BEGIN CERTIFICATE-----".into(),
        }
    }

    fn register(checks: Vec<CheckReport>) -> RegistryCommand {
        RegistryCommand::Register {
            credential_id: "cred-1".into(),
            name: "gw-1".into(),
            address: "10.0.0.7:80".into(),
            labels: BTreeMap::from([("zone".into(), "a".into())]),
            version: "1.0".into(),
            checks,
        }
    }

    fn check(name: &str) -> CheckReport {
        CheckReport {
            name: name.into(),
            kind: CheckKind::Http,
            status: CheckStatus::Warning,
            output: "slow".into(),
        }
    }

    #[test]
    fn registry_commands_round_trip() {
        let commands = [
            RegistryCommand::TokenCreate {
                id: "tok-1".into(),
                pool: "edge".into(),
                secret_sha256: vec![1; 32],
                ttl_ms: Some(60_000),
                uses: None,
            },
            enroll(),
            register(vec![check("a"), check("b")]),
            RegistryCommand::Deregister {
                name: "gw-1".into(),
                credential_id: Some("cred-1".into()),
            },
            RegistryCommand::MarkDown {
                names: vec!["gw-1".into(), "gw-2".into()],
            },
        ];
        for command in commands {
            let command = Command::Registry(command);
            assert_eq!(command.validate(), Ok(()), "{command:?}");
            assert_eq!(Command::decode(&command.encode()).unwrap(), command);
        }
    }

    #[test]
    fn enrolments_need_a_hash_a_name_and_a_json_key() {
        let with = |change: fn(&mut RegistryCommand)| {
            let mut command = enroll();
            change(&mut command);
            command.validate().unwrap_err().message
        };
        let short_hash = with(|c| {
            if let RegistryCommand::Enroll { secret_sha256, .. } = c {
                secret_sha256.pop();
            }
        });
        assert!(short_hash.contains("SHA-256"), "{short_hash}");
        let bad_name = with(|c| {
            if let RegistryCommand::Enroll { name, .. } = c {
                *name = "gw/1".into();
            }
        });
        assert!(bad_name.contains("agent name"), "{bad_name}");
        let not_json = with(|c| {
            if let RegistryCommand::Enroll { public_jwk, .. } = c {
                *public_jwk = "nope".into();
            }
        });
        assert!(not_json.contains("not JSON"), "{not_json}");
        let long_id = with(|c| {
            if let RegistryCommand::Enroll { credential_id, .. } = c {
                *credential_id = "c".repeat(MAX_ID_LEN + 1);
            }
        });
        assert!(long_id.contains("128"), "{long_id}");
    }

    #[test]
    fn registrations_are_checked_as_the_api_checks_them() {
        let twice = register(vec![check("a"), check("a")])
            .validate()
            .unwrap_err();
        assert!(twice.message.contains("twice"), "{}", twice.message);
        let no_address = RegistryCommand::Register {
            credential_id: "cred-1".into(),
            name: "gw-1".into(),
            address: String::new(),
            labels: BTreeMap::new(),
            version: String::new(),
            checks: vec![],
        };
        assert!(no_address.validate().is_err());
    }

    #[test]
    fn tokens_need_a_use_and_a_ttl_within_limits() {
        let token = |ttl_ms, uses| RegistryCommand::TokenCreate {
            id: "tok-1".into(),
            pool: "edge".into(),
            secret_sha256: vec![1; 32],
            ttl_ms,
            uses,
        };
        assert!(token(None, Some(1)).validate().is_ok());
        assert!(token(None, Some(0)).validate().is_err());
        assert!(token(Some(0), None).validate().is_err());
        assert!(token(Some(crate::command::MAX_TTL_MS + 1), None)
            .validate()
            .is_err());
    }

    #[test]
    fn mesh_commands_check_their_lists_and_addresses() {
        let restricted = |allow: &[&str]| RegistryCommand::TokenCreateRestricted {
            token: TokenSpec {
                id: "tok-1".into(),
                pool: "exits".into(),
                secret_sha256: vec![1; 32],
                ttl_ms: None,
                uses: None,
            },
            mesh_announce: allow.iter().map(|a| a.to_string()).collect(),
        };
        assert!(restricted(&["10.20.0.0/16", "*.internal.example"])
            .validate()
            .is_ok());
        let bad = restricted(&["notacidr"]).validate().unwrap_err();
        assert!(bad.message.contains("notacidr"), "{}", bad.message);
        let set = |allow: Option<Vec<String>>| RegistryCommand::SetAnnounce {
            name: "exit-a".into(),
            allow,
        };
        assert!(set(None).validate().is_ok());
        assert!(set(Some(vec![])).validate().is_ok());
        assert!(set(Some(vec!["10.0.0.0/99".into()])).validate().is_err());
        let join = |address: &str| RegistryCommand::MeshJoin {
            credential_id: "cred-1".into(),
            name: "exit-a".into(),
            membership: Some(MeshMembership {
                mesh: "default".into(),
                address: address.into(),
            }),
        };
        assert!(join("10.0.0.7:4433").validate().is_ok());
        assert!(join("").validate().is_err());
        for command in [restricted(&["10.20.0.0/16"]), set(None), join("a:1")] {
            let command = Command::Registry(command);
            assert_eq!(Command::decode(&command.encode()).unwrap(), command);
        }
    }

    #[test]
    fn lists_of_names_are_bounded_and_checked() {
        let many = RegistryCommand::Remove {
            names: vec!["gw".into(); MAX_NAMES_PER_COMMAND + 1],
        };
        assert!(many.validate().is_err());
        let bad = RegistryCommand::MarkDown {
            names: vec!["gw-1".into(), String::new()],
        };
        assert!(bad.validate().is_err());
    }
}
