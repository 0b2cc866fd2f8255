//! What a credential may do. A scoped credential holds a list of [`Grant`]s, and an enrolled
//! agent's credential holds one, [`Grant::Agent`] with its name; a request is described as one
//! [`Access`]; [`allows`] decides for both. Plain data and functions: the server looks the
//! credential up and describes the request, this decides, with no I/O in between.

use std::fmt;
use std::str::FromStr;

/// The grants a credential may hold, by API area, as users write them.
pub const GRANT_FORMS: &str = "sql:read, sql:write, kv:read[:<prefix>], kv:write[:<prefix>], \
cache:<namespace> (cache:* for every namespace), locks[:<prefix>], tokens:issue, tokens:verify, \
keys:admin, agents:read, agents:admin, cluster:read, cluster:admin";

/// The grant form only agents' own credentials hold, as refusals name it.
const AGENT_GRANT_FORM: &str = "agent:<name>";

/// One right of a credential. Key and lock grants cover every name that starts with their
/// prefix (an empty prefix covers all); a cache grant covers one namespace, or all with `*`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Grant {
    SqlRead,
    /// Also reads: a write can return rows (`INSERT ... RETURNING`, rqlite's `/db/execute`).
    SqlWrite,
    KvRead(String),
    KvWrite(String),
    Cache(CacheScope),
    Locks(String),
    TokensIssue,
    TokensVerify,
    KeysAdmin,
    AgentsRead,
    /// Also `agents:read`.
    AgentsAdmin,
    ClusterRead,
    /// Also `cluster:read`; manages credentials and reads backups, so it is as strong as root.
    ClusterAdmin,
    /// Acts as the agent of this name (registers, reports, drains and deregisters it, reads the
    /// mesh directory): held by that agent's own credential, made at enrolment, and by nothing
    /// else.
    Agent(String),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CacheScope {
    Every,
    Namespace(String),
}

impl FromStr for Grant {
    type Err = String;

    fn from_str(text: &str) -> Result<Grant, String> {
        let bad = || format!("grant {text:?} is not one of: {GRANT_FORMS}");
        let (area, rest) = text.split_once(':').unwrap_or((text, ""));
        let prefix = |rest: &str| rest.to_string();
        let grant = match (area, rest) {
            ("sql", "read") => Grant::SqlRead,
            ("sql", "write") => Grant::SqlWrite,
            ("kv", rest) => match rest.split_once(':').unwrap_or((rest, "")) {
                ("read", p) => Grant::KvRead(prefix(p)),
                ("write", p) => Grant::KvWrite(prefix(p)),
                _ => return Err(bad()),
            },
            ("cache", "") => return Err(bad()),
            ("cache", "*") => Grant::Cache(CacheScope::Every),
            ("cache", namespace) => Grant::Cache(CacheScope::Namespace(namespace.to_string())),
            ("locks", p) => Grant::Locks(prefix(p)),
            ("tokens", "issue") => Grant::TokensIssue,
            ("tokens", "verify") => Grant::TokensVerify,
            ("keys", "admin") => Grant::KeysAdmin,
            ("agents", "read") => Grant::AgentsRead,
            ("agents", "admin") => Grant::AgentsAdmin,
            ("cluster", "read") => Grant::ClusterRead,
            ("cluster", "admin") => Grant::ClusterAdmin,
            ("agent", name) if !name.is_empty() => Grant::Agent(name.to_string()),
            _ => return Err(bad()),
        };
        Ok(grant)
    }
}

impl fmt::Display for Grant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scoped = |f: &mut fmt::Formatter<'_>, area: &str, prefix: &str| {
            if prefix.is_empty() {
                write!(f, "{area}")
            } else {
                write!(f, "{area}:{prefix}")
            }
        };
        match self {
            Grant::SqlRead => write!(f, "sql:read"),
            Grant::SqlWrite => write!(f, "sql:write"),
            Grant::KvRead(p) => scoped(f, "kv:read", p),
            Grant::KvWrite(p) => scoped(f, "kv:write", p),
            Grant::Cache(CacheScope::Every) => write!(f, "cache:*"),
            Grant::Cache(CacheScope::Namespace(n)) => write!(f, "cache:{n}"),
            Grant::Locks(p) => scoped(f, "locks", p),
            Grant::TokensIssue => write!(f, "tokens:issue"),
            Grant::TokensVerify => write!(f, "tokens:verify"),
            Grant::KeysAdmin => write!(f, "keys:admin"),
            Grant::AgentsRead => write!(f, "agents:read"),
            Grant::AgentsAdmin => write!(f, "agents:admin"),
            Grant::ClusterRead => write!(f, "cluster:read"),
            Grant::ClusterAdmin => write!(f, "cluster:admin"),
            Grant::Agent(name) => write!(f, "agent:{name}"),
        }
    }
}

/// Parses every grant of a scoped credential's list, naming the first that is malformed or
/// that only an agent's credential may hold.
pub fn parse_grants(texts: &[String]) -> Result<Vec<Grant>, String> {
    if texts.is_empty() {
        return Err(format!(
            "a credential needs at least one grant: {GRANT_FORMS}"
        ));
    }
    texts
        .iter()
        .map(|text| match text.parse()? {
            Grant::Agent(_) => Err(format!(
                "grant {text:?}: {AGENT_GRANT_FORM} is held only by an agent's own credential, made when it enrols with a join token; a scoped credential may hold: {GRANT_FORMS}"
            )),
            grant => Ok(grant),
        })
        .collect()
}

/// What a request does, described for the decision.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Access {
    SqlRead,
    SqlWrite,
    /// Reads a key, or lists the keys under a prefix: either way, every name it can see starts
    /// with this.
    KvRead(String),
    KvWrite(String),
    Cache(String),
    Lock(String),
    TokensIssue,
    TokensVerify,
    KeysAdmin,
    AgentsRead,
    AgentsAdmin,
    ClusterRead,
    ClusterAdmin,
    /// Acts as the agent of this name.
    Agent(String),
}

impl Access {
    /// The narrowest grant that allows it, as a refusal names it.
    pub fn grant_needed(&self) -> Grant {
        match self {
            Access::SqlRead => Grant::SqlRead,
            Access::SqlWrite => Grant::SqlWrite,
            Access::KvRead(key) => Grant::KvRead(key.clone()),
            Access::KvWrite(key) => Grant::KvWrite(key.clone()),
            Access::Cache(namespace) => Grant::Cache(CacheScope::Namespace(namespace.clone())),
            Access::Lock(name) => Grant::Locks(name.clone()),
            Access::TokensIssue => Grant::TokensIssue,
            Access::TokensVerify => Grant::TokensVerify,
            Access::KeysAdmin => Grant::KeysAdmin,
            Access::AgentsRead => Grant::AgentsRead,
            Access::AgentsAdmin => Grant::AgentsAdmin,
            Access::ClusterRead => Grant::ClusterRead,
            Access::ClusterAdmin => Grant::ClusterAdmin,
            Access::Agent(name) => Grant::Agent(name.clone()),
        }
    }
}

/// Whether one grant allows the access.
fn covers(grant: &Grant, access: &Access) -> bool {
    match (grant, access) {
        (Grant::SqlRead | Grant::SqlWrite, Access::SqlRead) => true,
        (Grant::SqlWrite, Access::SqlWrite) => true,
        (Grant::KvRead(prefix), Access::KvRead(name)) => name.starts_with(prefix.as_str()),
        (Grant::KvWrite(prefix), Access::KvWrite(name)) => name.starts_with(prefix.as_str()),
        (Grant::Cache(CacheScope::Every), Access::Cache(_)) => true,
        (Grant::Cache(CacheScope::Namespace(granted)), Access::Cache(namespace)) => {
            granted == namespace
        }
        (Grant::Locks(prefix), Access::Lock(name)) => name.starts_with(prefix.as_str()),
        (Grant::TokensIssue, Access::TokensIssue) => true,
        (Grant::TokensVerify, Access::TokensVerify) => true,
        (Grant::KeysAdmin, Access::KeysAdmin) => true,
        (Grant::AgentsRead | Grant::AgentsAdmin, Access::AgentsRead) => true,
        (Grant::AgentsAdmin, Access::AgentsAdmin) => true,
        (Grant::ClusterRead | Grant::ClusterAdmin, Access::ClusterRead) => true,
        (Grant::ClusterAdmin, Access::ClusterAdmin) => true,
        (Grant::Agent(granted), Access::Agent(name)) => granted == name,
        _ => false,
    }
}

/// The decision: allowed, or the grant that is missing.
pub fn allows(grants: &[Grant], access: &Access) -> Result<(), Grant> {
    if grants.iter().any(|grant| covers(grant, access)) {
        Ok(())
    } else {
        Err(access.grant_needed())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grants(texts: &[&str]) -> Vec<Grant> {
        let texts: Vec<String> = texts.iter().map(|t| t.to_string()).collect();
        parse_grants(&texts).expect("valid grants")
    }

    #[test]
    fn every_form_parses_and_prints_back() {
        for text in [
            "sql:read",
            "sql:write",
            "kv:read",
            "kv:read:billing/",
            "kv:write:a:b",
            "cache:*",
            "cache:sessions",
            "locks",
            "locks:jobs/",
            "tokens:issue",
            "tokens:verify",
            "keys:admin",
            "agents:read",
            "agents:admin",
            "cluster:read",
            "cluster:admin",
            "agent:edge-1",
        ] {
            let grant: Grant = text.parse().expect(text);
            assert_eq!(grant.to_string(), text);
        }
        assert_eq!(
            "kv:read:".parse::<Grant>(),
            Ok(Grant::KvRead(String::new()))
        );
    }

    #[test]
    fn malformed_grants_are_named_with_the_valid_forms() {
        for bad in [
            "",
            "sql",
            "sql:drop",
            "kv",
            "kv:delete:x",
            "cache",
            "cache:",
            "root",
            "keys",
            "agent",
            "agent:",
        ] {
            let e = bad.parse::<Grant>().expect_err(bad);
            assert!(e.contains(&format!("{bad:?}")), "{e}");
            assert!(e.contains("kv:read[:<prefix>]"), "{e}");
        }
        let e = parse_grants(&["sql:read".into(), "kv:rw:x".into()]).expect_err("bad");
        assert!(e.contains("\"kv:rw:x\""), "{e}");
        assert!(parse_grants(&[]).is_err());
    }

    #[test]
    fn key_grants_cover_their_prefix_only() {
        let billing = grants(&["kv:read:billing/", "kv:write:billing/"]);
        assert_eq!(
            allows(&billing, &Access::KvRead("billing/a".into())),
            Ok(())
        );
        assert_eq!(
            allows(&billing, &Access::KvWrite("billing/a".into())),
            Ok(())
        );
        assert_eq!(
            allows(&billing, &Access::KvRead("other/a".into())),
            Err(Grant::KvRead("other/a".into()))
        );
        // Listing a shorter prefix could show keys outside the grant.
        assert!(allows(&billing, &Access::KvRead("bill".into())).is_err());
        assert!(allows(&billing, &Access::KvRead("billing/".into())).is_ok());
        let reader = grants(&["kv:read"]);
        assert!(allows(&reader, &Access::KvRead(String::new())).is_ok());
        assert_eq!(
            allows(&reader, &Access::KvWrite("a".into())),
            Err(Grant::KvWrite("a".into())),
            "reading is not writing"
        );
    }

    #[test]
    fn cache_and_lock_grants() {
        let g = grants(&["cache:sessions", "locks:jobs/"]);
        assert!(allows(&g, &Access::Cache("sessions".into())).is_ok());
        assert!(allows(&g, &Access::Cache("sessions2".into())).is_err());
        assert!(allows(&g, &Access::Lock("jobs/nightly".into())).is_ok());
        assert!(allows(&g, &Access::Lock("other".into())).is_err());
        assert!(allows(&grants(&["cache:*"]), &Access::Cache("any".into())).is_ok());
    }

    #[test]
    fn admin_grants_include_reading_and_nothing_else() {
        let sql_write = grants(&["sql:write"]);
        assert!(allows(&sql_write, &Access::SqlRead).is_ok());
        assert_eq!(
            allows(&grants(&["sql:read"]), &Access::SqlWrite),
            Err(Grant::SqlWrite)
        );
        let agents = grants(&["agents:admin"]);
        assert!(allows(&agents, &Access::AgentsRead).is_ok());
        assert!(allows(&grants(&["agents:read"]), &Access::AgentsAdmin).is_err());
        let cluster = grants(&["cluster:admin"]);
        assert!(allows(&cluster, &Access::ClusterRead).is_ok());
        assert_eq!(
            allows(&grants(&["cluster:read"]), &Access::ClusterAdmin),
            Err(Grant::ClusterAdmin)
        );
        // No grant reaches another area.
        for access in [
            Access::SqlRead,
            Access::KvRead("a".into()),
            Access::Cache("c".into()),
            Access::Lock("l".into()),
            Access::TokensIssue,
            Access::TokensVerify,
            Access::KeysAdmin,
            Access::AgentsAdmin,
        ] {
            assert!(allows(&cluster, &access).is_err(), "{access:?}");
        }
        let tokens = grants(&["tokens:issue"]);
        assert!(allows(&tokens, &Access::TokensIssue).is_ok());
        assert_eq!(
            allows(&tokens, &Access::TokensVerify),
            Err(Grant::TokensVerify)
        );
        assert_eq!(allows(&[], &Access::KeysAdmin), Err(Grant::KeysAdmin));
    }

    #[test]
    fn an_agent_grant_acts_as_that_agent_only_and_no_scoped_credential_holds_one() {
        let edge = [Grant::Agent("edge-1".into())];
        assert!(allows(&edge, &Access::Agent("edge-1".into())).is_ok());
        assert_eq!(
            allows(&edge, &Access::Agent("edge-2".into())),
            Err(Grant::Agent("edge-2".into()))
        );
        assert_eq!(
            allows(&edge, &Access::AgentsRead),
            Err(Grant::AgentsRead),
            "an agent reads no other area"
        );
        assert!(allows(&grants(&["agents:admin"]), &Access::Agent("edge-1".into())).is_err());
        let e = parse_grants(&["kv:read".into(), "agent:edge-1".into()]).expect_err("refused");
        assert!(e.contains("only by an agent's own credential"), "{e}");
    }
}
