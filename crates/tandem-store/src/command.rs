//! Commands that change replicated state, and what applying them answers. A command is checked
//! in full by [`Command::validate`] before it is proposed; applying it never panics, and a
//! command that cannot be carried out is rejected the same way on every replica.

use serde::{Deserialize, Serialize};

use crate::sql;
// Kept at this path for callers that name it from here.
pub use crate::sql::Params;

mod auth;
mod registry;

pub use auth::{AuthCommand, MAX_GRANTS, ROOT};
pub use registry::{
    RegistryCommand, TokenSpec, MAX_CERTIFICATE_LEN, MAX_ID_LEN, MAX_NAMES_PER_COMMAND,
};

/// A write may name a lock and the fencing token its writer holds; the write is refused when
/// that token is no longer the lock's current one.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fence {
    pub lock: String,
    pub token: u64,
}

impl std::str::FromStr for Fence {
    type Err = String;

    /// Parses `<lock>:<token>`; the lock name may itself contain colons.
    fn from_str(s: &str) -> Result<Self, String> {
        let (lock, token) = s
            .rsplit_once(':')
            .ok_or_else(|| format!("fence {s:?} must look like <lock>:<token>"))?;
        let token = token
            .parse()
            .map_err(|_| format!("fence {s:?}: token {token:?} is not a whole number"))?;
        if lock.is_empty() {
            return Err(format!("fence {s:?} names no lock"));
        }
        Ok(Fence {
            lock: lock.to_string(),
            token,
        })
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Statement {
    pub sql: String,
    pub params: Params,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Command {
    /// Statements run in one transaction: all apply or none.
    Sql {
        statements: Vec<Statement>,
        fence: Option<Fence>,
    },
    KvPut {
        key: String,
        value: Vec<u8>,
        ttl_ms: Option<u64>,
        /// Compare-and-set: apply only when the key's revision is this (0: the key is absent).
        if_revision: Option<u64>,
        fence: Option<Fence>,
    },
    KvDelete {
        key: String,
        if_revision: Option<u64>,
        fence: Option<Fence>,
    },
    CachePut {
        namespace: String,
        key: String,
        value: Vec<u8>,
        ttl_ms: Option<u64>,
        fence: Option<Fence>,
    },
    CacheDelete {
        namespace: String,
        key: String,
        fence: Option<Fence>,
    },
    /// Returns the value and deletes it in one step: whoever takes it first gets it.
    CacheTake { namespace: String, key: String },
    LockAcquire {
        name: String,
        holder: String,
        ttl_ms: u64,
    },
    LockRenew {
        name: String,
        holder: String,
        token: u64,
        ttl_ms: u64,
    },
    LockRelease {
        name: String,
        holder: String,
        token: u64,
    },
    /// Proposed by the leader when entries are due to expire: removes every key, cache entry,
    /// lease and join token whose time has passed by the command's stamp, and every retired
    /// signing key whose last token has expired.
    Expire,
    /// A server publishes the public half of a new signing key (a JWK as JSON). Key ids are never
    /// reused: publishing one that was ever published is refused.
    KeyPublish {
        kid: String,
        node_id: u64,
        jwk: String,
    },
    /// A key stops signing; it stays in the key set for `keep_for_ms` more (the longest token
    /// it may have signed), then leaves it.
    KeyRetire { kid: String, keep_for_ms: u64 },
    /// Commands that reached the leader together, proposed as one Raft entry (group commit).
    /// Each is applied in turn, in its own savepoint, and answers on its own, exactly as if it
    /// had been an entry of its own.
    Batch(Vec<Command>),
    /// A change to the agent registry: join tokens, enrolment, and agents' rows. Declared last:
    /// a variant's place is its number in the encoded log, which entries already written keep.
    Registry(RegistryCommand),
    /// Statements that answer one by one, as rqlite's API runs them: a statement that fails is
    /// answered with its error and the others still run, unless `all_or_nothing`, where the
    /// first failure undoes the statements before it and ends the request. A statement that
    /// only reads answers its rows.
    SqlEach {
        statements: Vec<Statement>,
        all_or_nothing: bool,
    },
    /// A change to the client API's scoped credentials.
    Auth(AuthCommand),
    /// `command`, recorded in the audit log as done by `by` (a credential's name, "root", or a
    /// server) when it is applied; only commands with an [`Command::audit_record`] may be.
    Audited { by: String, command: Box<Command> },
    /// A change of the cluster's servers, made through Raft's own membership entries. This
    /// entry changes nothing: it is proposed, audited, once the change is done, so the audit
    /// log holds membership changes beside the other changes of rights and keys.
    MembershipChanged(MembershipChange),
}

/// Which server joined or left the cluster, as the audit log records it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum MembershipChange {
    Added {
        node_id: u64,
        raft_addr: String,
        api_addr: String,
    },
    Removed {
        node_id: u64,
    },
}

/// Longest key, namespace, lock or holder name accepted.
pub const MAX_NAME_LEN: usize = 1024;
/// Largest published public key accepted, in bytes of JSON.
pub const MAX_JWK_LEN: usize = 16 * 1024;
/// Longest TTL or lease accepted: ten years.
pub const MAX_TTL_MS: u64 = 10 * 365 * 24 * 3600 * 1000;

impl Command {
    pub fn encode(&self) -> Vec<u8> {
        // Serialising plain data into a Vec cannot fail.
        bincode::serialize(self).unwrap_or_default()
    }

    pub fn decode(bytes: &[u8]) -> Result<Command, String> {
        use bincode::Options;
        bincode::DefaultOptions::new()
            .with_fixint_encoding()
            .allow_trailing_bytes()
            .with_limit(bytes.len() as u64 + 1024)
            .deserialize(bytes)
            .map_err(|e| format!("undecodable command: {e}"))
    }

    /// Whether this command may make the stored state larger. When storage is full only the
    /// others are accepted: deletes, renewals, releases and expiry free space or keep leases and
    /// signing keys alive, as etcd still accepts deletes and lease keep-alives under NOSPACE.
    pub fn adds_data(&self) -> bool {
        match self {
            Command::Sql { .. }
            | Command::SqlEach { .. }
            | Command::KvPut { .. }
            | Command::CachePut { .. }
            | Command::LockAcquire { .. } => true,
            Command::KvDelete { .. }
            | Command::CacheDelete { .. }
            | Command::CacheTake { .. }
            | Command::LockRenew { .. }
            | Command::LockRelease { .. }
            | Command::Expire
            // One small row per key rotation: tokens must stay verifiable.
            | Command::KeyPublish { .. }
            | Command::KeyRetire { .. } => false,
            Command::Batch(commands) => commands.iter().any(Command::adds_data),
            Command::Registry(command) => command.adds_data(),
            // A revocation must get through a full disk: it takes rights away.
            Command::Auth(AuthCommand::Create { .. }) => true,
            Command::Auth(AuthCommand::Revoke { .. }) => false,
            Command::Audited { command, .. } => command.adds_data(),
            // A record of a change already made: refusing it would leave the change unrecorded.
            Command::MembershipChanged(_) => false,
        }
    }

    /// Whether applying this command may change the published key set.
    pub fn changes_keys(&self) -> bool {
        match self {
            Command::KeyPublish { .. } | Command::KeyRetire { .. } | Command::Expire => true,
            Command::Batch(commands) => commands.iter().any(Command::changes_keys),
            // Key publications and retirements are audited, so they come wrapped.
            Command::Audited { command, .. } => command.changes_keys(),
            _ => false,
        }
    }

    /// Checks everything that can be checked without the state: names, TTLs, and SQL whose
    /// result would differ between replicas. The same checks run again at apply time.
    pub fn validate(&self) -> Result<(), Rejection> {
        let name = |what: &str, value: &str| -> Result<(), Rejection> {
            if value.is_empty() {
                return Err(Rejection::invalid(format!("{what} must not be empty")));
            }
            if value.len() > MAX_NAME_LEN {
                return Err(Rejection::invalid(format!(
                    "{what} is {} bytes long; the limit is {MAX_NAME_LEN}",
                    value.len()
                )));
            }
            Ok(())
        };
        let fence = |fence: &Option<Fence>| match fence {
            Some(f) => name("fence lock", &f.lock),
            None => Ok(()),
        };
        match self {
            Command::Sql {
                statements,
                fence: f,
            } => {
                if statements.is_empty() {
                    return Err(Rejection::invalid("no statements to execute"));
                }
                for (i, statement) in statements.iter().enumerate() {
                    if let Some(reason) = sql::nondeterminism(&statement.sql, &statement.params) {
                        return Err(Rejection::invalid(format!("statement {}: {reason}", i + 1)));
                    }
                }
                fence(f)
            }
            // Each statement's own refusal (a nondeterministic one included) is its answer.
            Command::SqlEach { statements, .. } if statements.is_empty() => {
                Err(Rejection::invalid("no statements to execute"))
            }
            Command::SqlEach { .. } => Ok(()),
            Command::KvPut {
                key,
                ttl_ms,
                fence: f,
                ..
            } => {
                name("key", key)?;
                if let Some(t) = ttl_ms {
                    check_ttl("ttl", *t)?;
                }
                fence(f)
            }
            Command::KvDelete { key, fence: f, .. } => {
                name("key", key)?;
                fence(f)
            }
            Command::CachePut {
                namespace,
                key,
                ttl_ms,
                fence: f,
                ..
            } => {
                name("namespace", namespace)?;
                name("key", key)?;
                if let Some(t) = ttl_ms {
                    check_ttl("ttl", *t)?;
                }
                fence(f)
            }
            Command::CacheDelete {
                namespace,
                key,
                fence: f,
            } => {
                name("namespace", namespace)?;
                name("key", key)?;
                fence(f)
            }
            Command::CacheTake { namespace, key } => {
                name("namespace", namespace)?;
                name("key", key)
            }
            Command::LockAcquire {
                name: n,
                holder,
                ttl_ms,
            }
            | Command::LockRenew {
                name: n,
                holder,
                ttl_ms,
                ..
            } => {
                name("lock name", n)?;
                name("holder", holder)?;
                check_ttl("lease ttl", *ttl_ms)
            }
            Command::LockRelease {
                name: n, holder, ..
            } => {
                name("lock name", n)?;
                name("holder", holder)
            }
            Command::Expire => Ok(()),
            Command::KeyPublish { kid, jwk, .. } => {
                name("key id", kid)?;
                let parsed = check_public_key(jwk)?;
                if parsed.get("kid").and_then(|k| k.as_str()) != Some(kid.as_str()) {
                    return Err(Rejection::invalid(format!(
                        "the public key's \"kid\" must be {kid:?}"
                    )));
                }
                Ok(())
            }
            Command::KeyRetire { kid, keep_for_ms } => {
                name("key id", kid)?;
                if *keep_for_ms > MAX_TTL_MS {
                    return Err(Rejection::invalid("a retired key is kept at most 10 years"));
                }
                Ok(())
            }
            Command::Registry(command) => command.validate(),
            Command::Auth(command) => command.validate(),
            Command::Audited { by, command } => {
                name("who", by)?;
                if command.audit_record().is_none() {
                    return Err(Rejection::invalid(
                        "only changes to membership, credentials, signing keys, join tokens and agents' revocation are audited",
                    ));
                }
                command.validate()
            }
            Command::MembershipChanged(MembershipChange::Added {
                raft_addr,
                api_addr,
                ..
            }) => {
                name("raft address", raft_addr)?;
                name("API address", api_addr)
            }
            Command::MembershipChanged(MembershipChange::Removed { .. }) => Ok(()),
            Command::Batch(commands) => {
                if commands.is_empty() {
                    return Err(Rejection::invalid("an empty batch"));
                }
                commands.iter().try_for_each(|command| match command {
                    Command::Batch(_) => Err(Rejection::invalid("a batch inside a batch")),
                    command => command.validate(),
                })
            }
        }
    }

    /// This command, to be recorded in the audit log as done by `by`.
    pub fn audited(self, by: impl Into<String>) -> Command {
        Command::Audited {
            by: by.into(),
            command: Box::new(self),
        }
    }

    /// What the audit log says of this command: its action and details. `None` for commands
    /// that are not audited.
    pub fn audit_record(&self) -> Option<(&'static str, serde_json::Value)> {
        use serde_json::json;
        let record = match self {
            Command::Auth(AuthCommand::Create {
                id,
                name,
                grants,
                ttl_ms,
                ..
            }) => (
                "credential.create",
                json!({ "id": id, "name": name, "grants": grants, "ttl_ms": ttl_ms }),
            ),
            Command::Auth(AuthCommand::Revoke { credential }) => {
                ("credential.revoke", json!({ "credential": credential }))
            }
            Command::KeyPublish { kid, node_id, .. } => {
                ("key.publish", json!({ "kid": kid, "node_id": node_id }))
            }
            Command::KeyRetire { kid, keep_for_ms } => (
                "key.retire",
                json!({ "kid": kid, "keep_for_ms": keep_for_ms }),
            ),
            Command::Registry(RegistryCommand::Revoke { name }) => {
                ("agent.revoke", json!({ "name": name }))
            }
            Command::Registry(RegistryCommand::TokenCreate { id, pool, .. }) => {
                ("join_token.create", json!({ "id": id, "pool": pool }))
            }
            Command::Registry(RegistryCommand::TokenCreateRestricted { token, .. }) => (
                "join_token.create",
                json!({ "id": token.id, "pool": token.pool }),
            ),
            Command::Registry(RegistryCommand::TokenRevoke { id }) => {
                ("join_token.revoke", json!({ "id": id }))
            }
            Command::MembershipChanged(MembershipChange::Added {
                node_id,
                raft_addr,
                api_addr,
            }) => (
                "member.add",
                json!({ "node_id": node_id, "raft_addr": raft_addr, "api_addr": api_addr }),
            ),
            Command::MembershipChanged(MembershipChange::Removed { node_id }) => {
                ("member.remove", json!({ "node_id": node_id }))
            }
            _ => return None,
        };
        Some(record)
    }

    /// How many bytes [`Command::encode`] makes of it.
    pub fn encoded_len(&self) -> u64 {
        bincode::serialized_size(self).unwrap_or(u64::MAX)
    }
}

/// Refuses a TTL outside 1 ms to [`MAX_TTL_MS`].
fn check_ttl(what: &str, ttl_ms: u64) -> Result<(), Rejection> {
    if ttl_ms == 0 || ttl_ms > MAX_TTL_MS {
        return Err(Rejection::invalid(format!(
            "{what} must be between 1ms and 10 years, got {ttl_ms}ms"
        )));
    }
    Ok(())
}

/// Parses a public key sent as a JWK, refusing one longer than [`MAX_JWK_LEN`] or not JSON.
fn check_public_key(jwk: &str) -> Result<serde_json::Value, Rejection> {
    if jwk.len() > MAX_JWK_LEN {
        return Err(Rejection::invalid(format!(
            "the public key is {} bytes long; the limit is {MAX_JWK_LEN}",
            jwk.len()
        )));
    }
    serde_json::from_str(jwk)
        .map_err(|e| Rejection::invalid(format!("the public key is not JSON: {e}")))
}

/// Why a command was not carried out. Every replica reaches the same rejection.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{message}")]
pub struct Rejection {
    pub kind: RejectionKind,
    pub message: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum RejectionKind {
    /// The request itself is wrong (bad SQL, empty key, nondeterministic statement).
    Invalid,
    /// A compare-and-set or lock condition does not hold now.
    Conflict,
    /// A fencing token is no longer current.
    Fenced,
    /// The thing to act on does not exist.
    NotFound,
    /// A join token or an agent's credential does not allow this (unknown, wrong secret,
    /// revoked, expired, used up, or issued for another name).
    Unauthorized,
}

impl Rejection {
    pub fn invalid(message: impl Into<String>) -> Self {
        Rejection {
            kind: RejectionKind::Invalid,
            message: message.into(),
        }
    }
    pub fn conflict(message: impl Into<String>) -> Self {
        Rejection {
            kind: RejectionKind::Conflict,
            message: message.into(),
        }
    }
    pub fn fenced(message: impl Into<String>) -> Self {
        Rejection {
            kind: RejectionKind::Fenced,
            message: message.into(),
        }
    }
    pub fn not_found(message: impl Into<String>) -> Self {
        Rejection {
            kind: RejectionKind::NotFound,
            message: message.into(),
        }
    }
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Rejection {
            kind: RejectionKind::Unauthorized,
            message: message.into(),
        }
    }
}

/// Rows changed by one SQL statement.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatementResult {
    pub rows_affected: u64,
    pub last_insert_id: i64,
}

/// What one statement of a [`Command::SqlEach`] answered.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum SqlAnswer {
    Changed(StatementResult),
    Rows(crate::QueryRows),
    Failed(String),
}

/// What applying a command answers when it succeeds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Outcome {
    Sql {
        results: Vec<StatementResult>,
    },
    KvWritten {
        revision: u64,
    },
    Deleted {
        existed: bool,
    },
    CacheWritten,
    Taken {
        value: Option<Vec<u8>>,
    },
    Lease {
        token: u64,
        expires_at_ms: i64,
    },
    Released,
    Expired {
        removed: u64,
    },
    KeyPublished,
    KeyRetired {
        remove_at_ms: i64,
    },
    TokenCreated {
        expires_at_ms: Option<i64>,
    },
    TokenRevoked,
    /// An agent was enrolled in `pool` (its join token's) with credential `credential_id`: the
    /// one asked for, or the one an earlier attempt of the same enrolment already made.
    AgentEnrolled {
        pool: String,
        credential_id: String,
    },
    /// The agent's state once the registration, report or drain is applied.
    AgentState {
        state: tandem_registry::AgentState,
    },
    /// How many agents' rows a mark, removal or deregistration changed.
    AgentsChanged {
        count: u64,
    },
    /// How many credentials were revoked.
    AgentRevoked {
        credentials: u64,
    },
    /// Raft's own entries (blank, membership) answer nothing.
    Nothing,
    /// One answer per statement of a [`Command::SqlEach`], up to the one that ended it, each
    /// with the seconds it took on the active node.
    SqlAnswers {
        answers: Vec<(SqlAnswer, f64)>,
    },
    CredentialCreated {
        expires_at_ms: Option<i64>,
    },
    /// The credential that was revoked.
    CredentialRevoked {
        id: String,
        name: String,
    },
}

/// The result of applying one command, as the state machine hands it back through Raft.
pub type Applied = Result<Outcome, Rejection>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fence_parses_lock_with_colons() {
        let fence: Fence = "jobs:nightly:42".parse().unwrap();
        assert_eq!(fence.lock, "jobs:nightly");
        assert_eq!(fence.token, 42);
        assert!("nolock".parse::<Fence>().is_err());
        assert!(":3".parse::<Fence>().is_err());
        assert!("a:b".parse::<Fence>().is_err());
    }

    #[test]
    fn puts_add_data_and_deletes_do_not() {
        let put = Command::KvPut {
            key: "k".into(),
            value: vec![1],
            ttl_ms: None,
            if_revision: None,
            fence: None,
        };
        let delete = Command::KvDelete {
            key: "k".into(),
            if_revision: None,
            fence: None,
        };
        assert!(put.adds_data());
        assert!(!delete.adds_data());
        assert!(!Command::Expire.adds_data());
        assert!(!Command::Batch(vec![delete.clone(), Command::Expire]).adds_data());
        assert!(Command::Batch(vec![delete, put]).adds_data());
        assert!(!Command::Registry(RegistryCommand::Remove { names: vec![] }).adds_data());
    }

    #[test]
    fn commands_round_trip_and_garbage_is_an_error() {
        let command = Command::KvPut {
            key: "k".into(),
            value: vec![0, 1, 2],
            ttl_ms: Some(5),
            if_revision: None,
            fence: None,
        };
        assert_eq!(Command::decode(&command.encode()).unwrap(), command);
        assert!(Command::decode(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 1]).is_err());
        assert!(Command::decode(&[]).is_err());
    }

    #[test]
    fn written_log_entries_keep_their_variant_numbers() {
        // bincode writes a variant's place as a little-endian u32: a new command goes last.
        let variant = |command: &Command| command.encode()[..4].to_vec();
        assert_eq!(variant(&Command::Expire), 9u32.to_le_bytes());
        assert_eq!(variant(&Command::Batch(vec![])), 12u32.to_le_bytes());
        let revoke = Command::Registry(RegistryCommand::Revoke { name: "a".into() });
        assert_eq!(variant(&revoke), 13u32.to_le_bytes());
        let each = Command::SqlEach {
            statements: vec![],
            all_or_nothing: false,
        };
        assert_eq!(variant(&each), 14u32.to_le_bytes());
        let revoke = Command::Auth(AuthCommand::Revoke {
            credential: "a".into(),
        });
        assert_eq!(variant(&revoke), 15u32.to_le_bytes());
        let audited = Command::Audited {
            by: "root".into(),
            command: Box::new(revoke),
        };
        assert_eq!(variant(&audited), 16u32.to_le_bytes());
        let removed = Command::MembershipChanged(MembershipChange::Removed { node_id: 3 });
        assert_eq!(variant(&removed), 17u32.to_le_bytes());
        // Inside the registry's commands the same holds: the mesh's came last.
        let set = Command::Registry(RegistryCommand::SetAnnounce {
            name: "a".into(),
            allow: None,
        });
        assert_eq!(set.encode()[4..8], 11u32.to_le_bytes());
    }

    #[test]
    fn only_auditable_commands_are_audited() {
        let audited = |command: Command| Command::Audited {
            by: "ops".into(),
            command: Box::new(command),
        };
        let revoke = Command::Registry(RegistryCommand::Revoke { name: "a".into() });
        assert!(audited(revoke).validate().is_ok());
        assert!(audited(Command::Expire).validate().is_err());
        let create = |grants: Vec<String>| {
            audited(Command::Auth(AuthCommand::Create {
                id: "c1".into(),
                name: "billing".into(),
                secret_sha256: vec![0; 32],
                grants,
                ttl_ms: None,
            }))
        };
        assert!(create(vec!["kv:read:billing/".into()]).validate().is_ok());
        let bad = create(vec!["kv:rw".into()])
            .validate()
            .expect_err("a bad grant");
        assert!(bad.message.contains("\"kv:rw\""), "{}", bad.message);
    }

    #[test]
    fn validate_rejects_empty_names_and_zero_ttl() {
        let put = |key: &str, ttl_ms| Command::KvPut {
            key: key.into(),
            value: vec![],
            ttl_ms,
            if_revision: None,
            fence: None,
        };
        assert!(put("", None).validate().is_err());
        assert!(put("a", Some(0)).validate().is_err());
        assert!(put("a", Some(1000)).validate().is_ok());
    }
}
