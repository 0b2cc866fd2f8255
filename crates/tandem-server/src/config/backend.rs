//! Which backends hold the state and decide the active node, as the operator chose them
//! (`[backend]` in the config file), and the rule that tells a possible combination from an
//! impossible one. The rule is a plain function of the settings, so it is tested without a
//! server.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use tandem_settings::Span;

/// Where the replicated state lives. (The variants carry plain comments: clap would list doc
/// comments one value a line in `--help`.)
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum StorageKind {
    // The servers' own Raft cluster, each holding a copy in its data folder.
    Raft,
    // Tables in a PostgreSQL database that every server reaches.
    Postgres,
}

/// What decides which server is the active node.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum HaStorageKind {
    // The Raft leader is the active node.
    Raft,
    // A lock row in PostgreSQL.
    Postgres,
    // An election on an etcd cluster.
    Etcd,
}

/// How a server's connections to PostgreSQL are encrypted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum PostgresTls {
    // Plain TCP.
    Disable,
    // TLS, with the server's certificate checked against the system's roots and its name.
    VerifyFull,
}

value_enum_text!(StorageKind, HaStorageKind, PostgresTls);

/// One etcd member's client URL. A bare `host:port` means `http://host:port`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EtcdEndpoint(pub String);

impl FromStr for EtcdEndpoint {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let text = text.trim();
        let url = if text.contains("://") {
            text.to_string()
        } else {
            format!("http://{text}")
        };
        match reqwest::Url::parse(&url) {
            Ok(parsed)
                if matches!(parsed.scheme(), "http" | "https")
                    && parsed.has_host()
                    && parsed.port_or_known_default().is_some()
                    && parsed.path() == "/" =>
            {
                Ok(EtcdEndpoint(url.trim_end_matches('/').to_string()))
            }
            _ => Err(format!(
                "etcd endpoint {text:?} is not host:port or an http:// or https:// URL of an etcd member's client port (like http://10.0.0.1:2379)"
            )),
        }
    }
}

impl<'de> serde::Deserialize<'de> for EtcdEndpoint {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

/// The longest name PostgreSQL keeps for an identifier, in bytes.
const MAX_POSTGRES_NAME: usize = 63;

/// A PostgreSQL schema name that needs no quoting: a lower-case letter or `_`, then letters,
/// digits and `_`.
pub fn check_schema_name(name: &str) -> Result<(), String> {
    let mut chars = name.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == '_');
    let rest_ok = chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if !first_ok || !rest_ok || name.len() > MAX_POSTGRES_NAME || name.starts_with("pg_") {
        return Err(format!(
            "postgres_schema {name:?} must be 1 to {MAX_POSTGRES_NAME} lower-case letters, digits and _, start with a letter or _, and not start with pg_"
        ));
    }
    Ok(())
}

/// The external services a server reaches, once the combination is known to be possible.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Backends {
    // Raft holds the state and chooses the active node.
    Raft,
    /// PostgreSQL holds the state; `ha` chooses the active node.
    Postgres {
        postgres: PostgresBackend,
        ha: ExternalHa,
    },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PostgresBackend {
    /// The connection string as given (a URL or `key=value` pairs); it may hold a password.
    pub url: String,
    pub pool_size: usize,
    pub tls: PostgresTls,
    pub schema: String,
}

/// The lock that names the active node when the state is not in Raft.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ExternalHa {
    Postgres {
        lock_ttl: Duration,
    },
    Etcd {
        endpoints: Vec<EtcdEndpoint>,
        prefix: String,
        lock_ttl: Duration,
    },
}

impl Backends {
    /// `(storage, ha_storage)` as the start-up log and status name them.
    pub fn names(&self) -> (&'static str, &'static str) {
        match self {
            Backends::Raft => ("raft", "raft"),
            Backends::Postgres {
                ha: ExternalHa::Postgres { .. },
                ..
            } => ("postgres", "postgres"),
            Backends::Postgres {
                ha: ExternalHa::Etcd { .. },
                ..
            } => ("postgres", "etcd"),
        }
    }
}

/// The backend settings as given, before they are checked.
pub struct BackendSettings<'a> {
    pub storage: StorageKind,
    pub ha_storage: Option<HaStorageKind>,
    pub postgres_url: Option<&'a str>,
    pub postgres_pool_size: usize,
    pub postgres_tls: PostgresTls,
    pub postgres_schema: &'a str,
    pub etcd_endpoints: &'a [EtcdEndpoint],
    pub etcd_prefix: &'a str,
    pub lock_ttl: Span,
}

/// The shortest lock TTL: renewed every third of it, a shorter lock is lost to one slow round
/// trip to the database.
const MIN_LOCK_TTL: Duration = Duration::from_secs(1);

impl BackendSettings<'_> {
    /// Decides which backends a server uses, or why the combination cannot work.
    pub fn choose(&self) -> Result<Backends, String> {
        let ha_storage = self.ha_storage.unwrap_or(match self.storage {
            StorageKind::Raft => HaStorageKind::Raft,
            StorageKind::Postgres => HaStorageKind::Postgres,
        });
        if self.storage == StorageKind::Raft {
            if ha_storage != HaStorageKind::Raft {
                return Err(format!(
                    "ha_storage = {ha_storage} needs storage = postgres: with storage = raft the Raft leader is the active node (ha_storage = raft)"
                ));
            }
            for (name, given) in [
                ("postgres_url", self.postgres_url.is_some()),
                ("etcd_endpoints", !self.etcd_endpoints.is_empty()),
            ] {
                if given {
                    return Err(format!(
                        "{name} is set but storage and ha_storage are raft, which use neither PostgreSQL nor etcd; set storage = postgres or remove {name}"
                    ));
                }
            }
            return Ok(Backends::Raft);
        }
        let url = self.postgres_url.ok_or(
            "storage = postgres needs postgres_url (--postgres-url or TANDEM_POSTGRES_URL), like postgres://tandem:secret@db.example:5432/tandem",
        )?;
        url.parse::<tokio_postgres::Config>()
            .map_err(|e| format!("postgres_url is not a PostgreSQL connection string: {e}"))?;
        if self.postgres_pool_size == 0 {
            return Err("postgres_pool_size must be at least 1".into());
        }
        check_schema_name(self.postgres_schema)?;
        if self.lock_ttl.0 < MIN_LOCK_TTL {
            return Err(format!(
                "lock_ttl ({}) must be at least 1s: the active node renews its lock every third of it",
                self.lock_ttl
            ));
        }
        let lock_ttl = self.lock_ttl.0;
        let ha = match ha_storage {
            HaStorageKind::Raft => {
                return Err(
                    "ha_storage = raft needs storage = raft; with storage = postgres choose ha_storage = postgres (the default) or etcd".into(),
                )
            }
            HaStorageKind::Postgres => {
                if !self.etcd_endpoints.is_empty() {
                    return Err("etcd_endpoints is set but ha_storage is postgres; set ha_storage = etcd or remove etcd_endpoints".into());
                }
                ExternalHa::Postgres { lock_ttl }
            }
            HaStorageKind::Etcd => {
                if self.etcd_endpoints.is_empty() {
                    return Err("ha_storage = etcd needs etcd_endpoints (--etcd-endpoints or TANDEM_ETCD_ENDPOINTS), every member of the etcd cluster, like http://10.0.0.1:2379,http://10.0.0.2:2379,http://10.0.0.3:2379".into());
                }
                // etcd grants leases in whole seconds.
                if lock_ttl.subsec_nanos() != 0 {
                    return Err(format!(
                        "lock_ttl ({}) must be whole seconds with ha_storage = etcd: etcd leases count in seconds",
                        self.lock_ttl
                    ));
                }
                if self.etcd_prefix.is_empty() {
                    return Err("etcd_prefix must not be empty: it keeps this cluster's keys apart from others in etcd".into());
                }
                ExternalHa::Etcd {
                    endpoints: self.etcd_endpoints.to_vec(),
                    prefix: self.etcd_prefix.to_string(),
                    lock_ttl,
                }
            }
        };
        Ok(Backends::Postgres {
            postgres: PostgresBackend {
                url: url.to_string(),
                pool_size: self.postgres_pool_size,
                tls: self.postgres_tls,
                schema: self.postgres_schema.to_string(),
            },
            ha,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const URL: &str = "postgres://tandem:secret@127.0.0.1:5432/tandem";

    fn given(storage: StorageKind, ha_storage: Option<HaStorageKind>) -> BackendSettings<'static> {
        BackendSettings {
            storage,
            ha_storage,
            postgres_url: None,
            postgres_pool_size: 16,
            postgres_tls: PostgresTls::Disable,
            postgres_schema: "tandem",
            etcd_endpoints: &[],
            etcd_prefix: "/tandem/",
            lock_ttl: Span::secs(3),
        }
    }

    #[test]
    fn raft_is_the_default_and_takes_no_external_settings() {
        assert_eq!(given(StorageKind::Raft, None).choose(), Ok(Backends::Raft));
        let mut s = given(StorageKind::Raft, None);
        s.postgres_url = Some(URL);
        assert!(s.choose().unwrap_err().starts_with("postgres_url is set"));
        for ha in [HaStorageKind::Postgres, HaStorageKind::Etcd] {
            let err = given(StorageKind::Raft, Some(ha)).choose().unwrap_err();
            assert!(err.contains("needs storage = postgres"), "{err}");
        }
    }

    #[test]
    fn postgres_storage_defaults_to_the_postgres_lock() {
        let mut s = given(StorageKind::Postgres, None);
        assert!(s.choose().unwrap_err().contains("needs postgres_url"));
        s.postgres_url = Some(URL);
        let chosen = s.choose().unwrap();
        assert_eq!(chosen.names(), ("postgres", "postgres"));
        assert_eq!(
            chosen,
            Backends::Postgres {
                postgres: PostgresBackend {
                    url: URL.into(),
                    pool_size: 16,
                    tls: PostgresTls::Disable,
                    schema: "tandem".into(),
                },
                ha: ExternalHa::Postgres {
                    lock_ttl: Duration::from_secs(3)
                },
            }
        );
        let mut s = given(StorageKind::Postgres, Some(HaStorageKind::Raft));
        s.postgres_url = Some(URL);
        assert!(s
            .choose()
            .unwrap_err()
            .starts_with("ha_storage = raft needs storage = raft"));
    }

    #[test]
    fn etcd_needs_its_members_and_whole_seconds() {
        let endpoints: Vec<EtcdEndpoint> = vec!["127.0.0.1:2379".parse().unwrap()];
        let mut s = given(StorageKind::Postgres, Some(HaStorageKind::Etcd));
        s.postgres_url = Some(URL);
        assert!(s.choose().unwrap_err().contains("needs etcd_endpoints"));
        s.etcd_endpoints = &endpoints;
        assert_eq!(s.choose().unwrap().names(), ("postgres", "etcd"));
        s.lock_ttl = Span::millis(2500);
        assert!(s.choose().unwrap_err().contains("whole seconds"));
        s.lock_ttl = Span::millis(500);
        assert!(s.choose().unwrap_err().contains("at least 1s"));
    }

    #[test]
    fn bad_values_are_named() {
        let mut s = given(StorageKind::Postgres, None);
        s.postgres_url = Some("mysql://nope");
        assert!(s.choose().unwrap_err().starts_with("postgres_url is not"));
        s.postgres_url = Some(URL);
        s.postgres_schema = "Tandem-1";
        assert!(s
            .choose()
            .unwrap_err()
            .starts_with("postgres_schema \"Tandem-1\""));
        s.postgres_schema = "pg_catalog";
        assert!(s.choose().is_err());
        s.postgres_schema = "tandem_2";
        s.postgres_pool_size = 0;
        assert!(s.choose().unwrap_err().contains("postgres_pool_size"));
    }

    #[test]
    fn etcd_endpoints_are_urls_of_members() {
        let bare: EtcdEndpoint = "10.0.0.1:2379".parse().unwrap();
        assert_eq!(bare.0, "http://10.0.0.1:2379");
        let url: EtcdEndpoint = "https://etcd-1.example:2379/".parse().unwrap();
        assert_eq!(url.0, "https://etcd-1.example:2379");
        for bad in ["", "ftp://a:1", "http://a:1/v3", "a b"] {
            assert!(bad.parse::<EtcdEndpoint>().is_err(), "{bad}");
        }
    }

    #[test]
    fn kinds_read_as_written() {
        assert_eq!("Postgres".parse(), Ok(StorageKind::Postgres));
        assert_eq!("etcd".parse(), Ok(HaStorageKind::Etcd));
        assert_eq!("verify-full".parse(), Ok(PostgresTls::VerifyFull));
        assert!("mysql".parse::<StorageKind>().is_err());
        assert_eq!(HaStorageKind::Etcd.to_string(), "etcd");
    }
}
