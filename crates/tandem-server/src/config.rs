//! Server settings. Each setting is declared once below — type, default, help line, env var,
//! key in the config file — and from that one declaration come the command-line flag, the
//! `TANDEM_*` variable, the TOML key (in its section, such as `[cluster]`) and the top-level key
//! that files written before the sections still use. A renamed setting keeps its old flag, env
//! var and key as aliases. A flag or variable beats the file, the file beats the default.

use std::collections::BTreeSet;
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use tandem_settings::settings;
pub use tandem_settings::{
    AsWritten, ByteSize, ConfigError, FormerSpelling, MillisIfBare, ReadSetting, Setting, Span,
};
use tandem_tls::ClusterPemFiles;

use tandem_keys::SigningAlgorithm;
use tandem_raft::NodeId;

/// `FromStr` (case-insensitive, trimmed) and `Display` of a setting's value enum, as clap
/// spells its values.
macro_rules! value_enum_text {
    ($($ty:ty),*) => {$(
        impl FromStr for $ty {
            type Err = String;

            fn from_str(text: &str) -> Result<Self, String> {
                <$ty as clap::ValueEnum>::from_str(text.trim(), true)
            }
        }

        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                let value = clap::ValueEnum::to_possible_value(self)
                    .map(|v| v.get_name().to_string())
                    .unwrap_or_default();
                f.write_str(&value)
            }
        }
    )*};
}

mod api_tls;
mod backend;

pub use api_tls::{ApiTls, ApiTlsMode};
pub use backend::{
    BackendSettings, Backends, EtcdEndpoint, ExternalHa, HaStorageKind, PostgresBackend,
    PostgresTls, StorageKind,
};

/// A line of the node list: `id addr_cluster addr_api`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeEntry {
    pub id: NodeId,
    /// `host:port` of the node's cluster port (node-to-node traffic).
    pub cluster_addr: String,
    pub api_addr: String,
}

/// The cluster's members, one a line (`;` also separates lines, for one-line environments).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeList(pub Vec<NodeEntry>);

impl NodeList {
    pub fn ids(&self) -> Vec<NodeId> {
        self.0.iter().map(|n| n.id).collect()
    }

    pub fn get(&self, id: NodeId) -> Option<&NodeEntry> {
        self.0.iter().find(|n| n.id == id)
    }

    fn ids_text(&self) -> String {
        self.ids()
            .iter()
            .map(|id| id.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// `addr` is `host:port` (a socket address, or a name and a port).
pub(crate) fn is_host_port(addr: &str) -> bool {
    addr.parse::<std::net::SocketAddr>().is_ok()
        || addr
            .rsplit_once(':')
            .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok())
}

fn check_addr(addr: &str, line: usize, what: &str) -> Result<(), String> {
    if is_host_port(addr) {
        Ok(())
    } else {
        Err(format!(
            "node list line {line}: {what} {addr:?} is not host:port"
        ))
    }
}

impl FromStr for NodeList {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let mut nodes = Vec::new();
        let mut seen = BTreeSet::new();
        for (i, line) in text.split(['\n', ';']).enumerate() {
            let line_no = i + 1;
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let fields: Vec<&str> = line.split_whitespace().collect();
            let [id, cluster_addr, api_addr] = fields[..] else {
                return Err(format!(
                    "node list line {line_no} {line:?} has {} field(s); each line is `id addr_cluster addr_api`, e.g. `1 10.0.0.1:8100 10.0.0.1:8200`",
                    fields.len()
                ));
            };
            let id: NodeId = id.parse().ok().filter(|id| *id > 0).ok_or_else(|| {
                format!("node list line {line_no}: node id {id:?} is not a whole number above 0")
            })?;
            if !seen.insert(id) {
                return Err(format!("node list line {line_no}: node id {id} appears twice; every node needs its own id"));
            }
            check_addr(cluster_addr, line_no, "cluster port address")?;
            check_addr(api_addr, line_no, "API address")?;
            nodes.push(NodeEntry {
                id,
                cluster_addr: cluster_addr.to_string(),
                api_addr: api_addr.to_string(),
            });
        }
        if nodes.is_empty() {
            return Err(
                "the node list is empty; give one line `id addr_cluster addr_api` per node".into(),
            );
        }
        Ok(NodeList(nodes))
    }
}

impl fmt::Display for NodeList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, n) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{} {} {}", n.id, n.cluster_addr, n.api_addr)?;
        }
        Ok(())
    }
}

impl<'de> serde::Deserialize<'de> for NodeList {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// JWKS URLs of key peers outside the cluster, separated by whitespace, commas or lines (a TOML
/// file may also give an array).
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct PeerList(pub Vec<String>);

impl FromStr for PeerList {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let urls: Vec<String> = text
            .split(|c: char| c.is_whitespace() || c == ',')
            .filter(|u| !u.is_empty())
            .map(str::to_string)
            .collect();
        for url in &urls {
            match reqwest::Url::parse(url) {
                Ok(parsed) if matches!(parsed.scheme(), "http" | "https") && parsed.has_host() => {}
                _ => {
                    return Err(format!(
                        "key peer {url:?} is not an http:// or https:// URL of a JWKS document"
                    ))
                }
            }
        }
        Ok(PeerList(urls))
    }
}

impl<'de> serde::Deserialize<'de> for PeerList {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(serde::Deserialize)]
        #[serde(untagged)]
        enum Given {
            Text(String),
            List(Vec<String>),
        }
        let text = match Given::deserialize(d)? {
            Given::Text(text) => text,
            Given::List(urls) => urls.join(" "),
        };
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// Output format of the log.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

impl FromStr for LogFormat {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        <LogFormat as clap::ValueEnum>::from_str(text, false)
    }
}

settings! {
    /// `tandem server` flags. Every flag is also an environment variable and a key of the
    /// TOML file given with `--config`.
    args ServerArgs, file FileSettings, settings Settings,
    config_env "TANDEM_CONFIG",
    config_help "TOML file with settings, in the tables [cluster], [api], [keys], [agents], [backend] and [log] (see docs/configuration.md)";
    /// This node's id; must be one of the ids in the node list
    node_id: NodeId = 1, file "cluster.node_id", shown "1", env "TANDEM_NODE_ID";
    /// Take the node id from elsewhere: `k8s` reads a StatefulSet hostname (`tandem-0` is node 1)
    node_id_from: String, file "cluster.node_id_from", shown "unset", env "TANDEM_NODE_ID_FROM";
    /// The cluster, one node a line (or `;`-separated): `id addr_cluster addr_api`
    nodes: NodeList = NodeList(vec![NodeEntry { id: 1, cluster_addr: "127.0.0.1:8100".into(), api_addr: "127.0.0.1:8200".into() }]),
        file "cluster.nodes", shown "1 127.0.0.1:8100 127.0.0.1:8200", env "TANDEM_NODES";
    /// Address clients use to reach this node's API when it differs from the API address in its node-list line (NAT, a load balancer); redirects point here
    api_addr: String, file "cluster.api_addr", shown "the API address of this node's line", env "TANDEM_API_ADDR";
    /// Address peers use to reach this node's cluster port when it differs from the cluster port address in its node-list line
    cluster_addr: String, file "cluster.cluster_addr", shown "the cluster port address of this node's line", env "TANDEM_CLUSTER_ADDR";
    /// API address (host:port) of any member of a running cluster: on its first start this server forms no cluster of its own but asks to be added (then `tandem cluster add` finds it already added)
    join: String, file "cluster.join", shown "unset", env "TANDEM_JOIN";
    /// Folder for the Raft log, the state database, snapshots and generated secrets
    data_dir: PathBuf = PathBuf::from("./tandem-data"), file "data_dir", shown "./tandem-data", env "TANDEM_DATA_DIR";
    /// Most the data folder may hold (Raft log, state database, snapshots) before writes are refused with 507, like etcd's space quota (`512MiB`, `8GiB`; 0: no quota)
    storage_quota: ByteSize = ByteSize::gib(8), file "storage_quota", shown "8GiB", env "TANDEM_STORAGE_QUOTA";
    /// Free space kept on the data folder's file system: below it writes are refused with 507, leaving room for deletes, snapshots and compaction (0: refuse only when the disk is full)
    storage_reserve: ByteSize = ByteSize::mib(256), file "storage_reserve", shown "256MiB", env "TANDEM_STORAGE_RESERVE";
    /// The cluster secret: authenticates traffic on the cluster port (16+ characters, the same on every node); generated on a single node when unset
    secret_cluster: String, file "cluster.secret", shown "generated", env "TANDEM_SECRET_CLUSTER",
        formerly "secret_raft" "secret-raft" "TANDEM_SECRET_RAFT";
    /// A second cluster secret also accepted while every node moves to a new secret_cluster (see docs/operations.md)
    secret_cluster_previous: String, file "cluster.secret_previous", shown "unset", env "TANDEM_SECRET_CLUSTER_PREVIOUS",
        formerly "secret_raft_previous" "secret-raft-previous" "TANDEM_SECRET_RAFT_PREVIOUS";
    /// PEM file of the CA(s) that sign cluster certificates, to bring your own instead of the CA derived from the cluster secret
    cluster_ca_file: PathBuf, file "cluster.ca_file", shown "unset: CA derived from the cluster secret", env "TANDEM_CLUSTER_CA_FILE";
    /// PEM file of this node's cluster certificate chain (with cluster_ca_file and cluster_key_file)
    cluster_cert_file: PathBuf, file "cluster.cert_file", shown "unset", env "TANDEM_CLUSTER_CERT_FILE";
    /// PEM file of this node's cluster private key (with cluster_ca_file and cluster_cert_file)
    cluster_key_file: PathBuf, file "cluster.key_file", shown "unset", env "TANDEM_CLUSTER_KEY_FILE";
    /// Interval between leader heartbeats (a bare number is milliseconds); also how long the leader waits for a follower to answer one append
    heartbeat: Span = Span::millis(100), file "cluster.heartbeat", shown "100ms", env "TANDEM_HEARTBEAT",
        formerly "heartbeat_ms" "heartbeat-ms" "TANDEM_HEARTBEAT_MS", read MillisIfBare;
    /// Shortest election timeout (a bare number is milliseconds); a follower that has a leader also waits out the leader's lease (the longest election timeout) before it calls an election
    election_timeout_min: Span = Span::millis(200), file "cluster.election_timeout_min", shown "200ms", env "TANDEM_ELECTION_TIMEOUT_MIN",
        formerly "election_timeout_min_ms" "election-timeout-min-ms" "TANDEM_ELECTION_TIMEOUT_MIN_MS", read MillisIfBare;
    /// Longest such time (each follower picks at random in between; a bare number is milliseconds)
    election_timeout_max: Span = Span::millis(400), file "cluster.election_timeout_max", shown "400ms", env "TANDEM_ELECTION_TIMEOUT_MAX",
        formerly "election_timeout_max_ms" "election-timeout-max-ms" "TANDEM_ELECTION_TIMEOUT_MAX_MS", read MillisIfBare;
    /// Build a snapshot after this many log entries since the last one
    snapshot_every: u64 = 10_000, file "cluster.snapshot_every", shown "10000", env "TANDEM_SNAPSHOT_EVERY";
    /// Log entries kept behind a snapshot (a follower further behind is sent the snapshot)
    snapshot_logs_to_keep: u64 = 1_000, file "cluster.snapshot_logs_to_keep", shown "1000", env "TANDEM_SNAPSHOT_LOGS_TO_KEEP";
    /// Largest piece of a snapshot sent to a follower in one message; the snapshot is read from and written to disk a piece at a time (`3MiB`, `256KiB`)
    snapshot_chunk_size: ByteSize = ByteSize::mib(3), file "cluster.snapshot_chunk_size", shown "3MiB", env "TANDEM_SNAPSHOT_CHUNK_SIZE";
    /// Secret clients send as `Authorization: Bearer <secret>` (16+ characters); generated on a single node when unset
    secret_api: String, file "api.secret", shown "generated", env "TANDEM_SECRET_API";
    /// How long a request waits for Raft (a write to commit, a read to be confirmed; a bare number is milliseconds)
    request_timeout: Span = Span::secs(5), file "api.request_timeout", shown "5s", env "TANDEM_REQUEST_TIMEOUT",
        formerly "request_timeout_ms" "request-timeout-ms" "TANDEM_REQUEST_TIMEOUT_MS", read MillisIfBare;
    /// Largest request body the API accepts, in bytes
    max_body_bytes: usize = 8 * 1024 * 1024, file "api.max_body_bytes", shown "8388608", env "TANDEM_MAX_BODY_BYTES";
    /// TLS on the API: auto (a certificate from a CA derived from the cluster secret) or off (plain HTTP, which an API beyond 127.0.0.1 needs said explicitly)
    api_tls: ApiTlsMode, file "api.tls", shown "unset: plain HTTP on a loopback address, else required", env "TANDEM_API_TLS";
    /// PEM file of the API's certificate chain, with api_tls_key_file; read again when it changes
    api_tls_cert_file: PathBuf, file "api.tls_cert_file", shown "unset", env "TANDEM_API_TLS_CERT_FILE";
    /// PEM file of the API's private key, with api_tls_cert_file; read again when it changes
    api_tls_key_file: PathBuf, file "api.tls_key_file", shown "unset", env "TANDEM_API_TLS_KEY_FILE";
    /// This server's name in its signing key ids (`{instance_id}-{unique}`): letters, digits, `.`, `_` and `-`
    instance_id: String, file "keys.instance_id", shown "tandem-{node_id}", env "TANDEM_INSTANCE_ID";
    /// Signature algorithm of this server's token signing keys: es256 or eddsa
    key_algorithm: SigningAlgorithm = SigningAlgorithm::Es256, file "keys.algorithm", shown "es256", env "TANDEM_KEY_ALGORITHM";
    /// How long a signing key signs before the server rotates to a new one; must be more than twice token_duration
    key_duration: Span = Span::secs(24 * 3600), file "keys.key_duration", shown "24h", env "TANDEM_KEY_DURATION";
    /// Longest life of a token, and the life of one whose request names no ttl; a retired key stays published this long
    token_duration: Span = Span::secs(3600), file "keys.token_duration", shown "1h", env "TANDEM_TOKEN_DURATION";
    /// The `iss` claim of every token this cluster issues
    token_issuer: String = "tandem".into(), file "keys.token_issuer", shown "tandem", env "TANDEM_TOKEN_ISSUER";
    /// Secret (16+ characters) that encrypts the private key files in data_dir/keys
    key_encryption_secret: String, file "keys.encryption_secret", shown "unset: key files are plain, mode 0600", env "TANDEM_KEY_ENCRYPTION_SECRET";
    /// JWKS URLs of peers outside the cluster whose keys join this cluster's key set (separated by spaces, commas or lines)
    key_peers: PeerList = PeerList::default(), file "keys.peers", shown "none", env "TANDEM_KEY_PEERS";
    /// How often each key peer's JWKS is fetched again
    key_peers_refresh: Span = Span::secs(30), file "keys.peers_refresh", shown "30s", env "TANDEM_KEY_PEERS_REFRESH";
    /// How long one fetch from a key peer may take before it counts as failed
    key_peers_timeout: Span = Span::secs(2), file "keys.peers_timeout", shown "2s", env "TANDEM_KEY_PEERS_TIMEOUT";
    /// An agent that misses its heartbeats this long is marked down
    agent_down_after: Span = Span::secs(3), file "agents.down_after", shown "3s", env "TANDEM_AGENT_DOWN_AFTER";
    /// An agent down this long is removed from the registry
    agent_deregister_after: Span = Span::secs(72 * 3600), file "agents.deregister_after", shown "72h", env "TANDEM_AGENT_DEREGISTER_AFTER";
    /// Where the replicated state lives: raft (the servers' own Raft cluster) or postgres (tables in the PostgreSQL database at postgres_url)
    storage: StorageKind = StorageKind::Raft, file "backend.storage", shown "raft", env "TANDEM_STORAGE";
    /// What decides the active node: raft (only with storage = raft), postgres (a lock row in PostgreSQL) or etcd (an election on etcd_endpoints)
    ha_storage: HaStorageKind, file "backend.ha_storage", shown "raft with storage = raft, postgres with storage = postgres", env "TANDEM_HA_STORAGE";
    /// PostgreSQL connection string (postgres://user:password@host:5432/database, or key=value pairs)
    postgres_url: String, file "backend.postgres_url", shown "unset", env "TANDEM_POSTGRES_URL";
    /// Connections each server keeps open to PostgreSQL
    postgres_pool_size: usize = 16, file "backend.postgres_pool_size", shown "16", env "TANDEM_POSTGRES_POOL_SIZE";
    /// TLS to PostgreSQL: disable, or verify-full (the server's certificate checked against the system's roots and its host name)
    postgres_tls: PostgresTls = PostgresTls::Disable, file "backend.postgres_tls", shown "disable", env "TANDEM_POSTGRES_TLS";
    /// The PostgreSQL schema that holds this cluster's tables, one schema per cluster
    postgres_schema: String = "tandem".into(), file "backend.postgres_schema", shown "tandem", env "TANDEM_POSTGRES_SCHEMA";
    /// Client URLs of every member of the etcd cluster, separated by commas (host:port means http://host:port)
    etcd_endpoints: Vec<EtcdEndpoint> = Vec::new(), file "backend.etcd_endpoints", shown "none", env "TANDEM_ETCD_ENDPOINTS", split ',';
    /// Prefix of this cluster's keys in etcd
    etcd_prefix: String = "/tandem/".into(), file "backend.etcd_prefix", shown "/tandem/", env "TANDEM_ETCD_PREFIX";
    /// How long the active node's lock in PostgreSQL or etcd lasts unless renewed (every third of it): a standby takes over within this long after the active node dies
    lock_ttl: Span = Span::secs(3), file "backend.lock_ttl", shown "3s", env "TANDEM_LOCK_TTL";
    /// Log filter, as RUST_LOG spells it (`info`, `tandem=debug,openraft=warn`)
    log_level: String = "info,openraft=warn".into(), file "log.level", shown "info,openraft=warn", env "TANDEM_LOG_LEVEL";
    /// Log format: text or json
    log_format: LogFormat = LogFormat::Text, file "log.format", shown "text", env "TANDEM_LOG_FORMAT";
}

/// The shortest secret accepted.
pub const MIN_SECRET_LEN: usize = 16;
/// The smallest snapshot chunk: below it a snapshot takes a round trip per few pages.
const MIN_SNAPSHOT_CHUNK: u64 = 4096;

impl Settings {
    /// Merges flags and environment (already in `args`) with the config file and defaults, and
    /// checks the result.
    pub fn load(args: &ServerArgs) -> Result<Settings, ConfigError> {
        let file = FileSettings::read(args.config.as_deref())?;
        Settings::settle(
            args.clone(),
            file,
            &|name| std::env::var(name).ok(),
            &hostname,
        )
    }

    /// The settings a config file's text gives over the defaults, checked as [`Settings::load`]
    /// checks them; `hostname` stands in for the machine's name (`node_id_from = "k8s"`). Apart
    /// from `load` so that the parser can be driven without a file, as the fuzz target does.
    pub fn from_config_text(
        text: &str,
        hostname: &dyn Fn() -> Option<String>,
    ) -> Result<Settings, ConfigError> {
        let file =
            FileSettings::parse(text).map_err(|e| ConfigError(format!("config file: {e}")))?;
        Settings::settle(ServerArgs::default(), file, &|_| None, hostname)
    }

    /// `env` reads an environment variable: the process's in [`Settings::load`], a stand-in in
    /// tests.
    fn settle(
        args: ServerArgs,
        file: FileSettings,
        env: &dyn Fn(&str) -> Option<String>,
        hostname: &dyn Fn() -> Option<String>,
    ) -> Result<Settings, ConfigError> {
        let mut settings = Settings::merge(args, file, env)?;
        settings.unset_blanks();
        settings.resolve_node_id(hostname)?;
        settings.validate()?;
        Ok(settings)
    }

    /// An empty value counts as not given, as it always has (`TANDEM_SECRET_API=` in an
    /// environment file); values read from files and environments often end in a newline.
    fn unset_blanks(&mut self) {
        tandem_settings::unset_blanks([
            &mut self.secret_api,
            &mut self.secret_cluster,
            &mut self.secret_cluster_previous,
            &mut self.key_encryption_secret,
            &mut self.node_id_from,
            &mut self.api_addr,
            &mut self.cluster_addr,
            &mut self.join,
            &mut self.instance_id,
            &mut self.postgres_url,
        ]);
        for path in [
            &mut self.cluster_ca_file,
            &mut self.cluster_cert_file,
            &mut self.cluster_key_file,
            &mut self.api_tls_cert_file,
            &mut self.api_tls_key_file,
        ] {
            *path = path.take().filter(|p| !p.as_os_str().is_empty());
        }
    }

    fn resolve_node_id(
        &mut self,
        hostname: &dyn Fn() -> Option<String>,
    ) -> Result<(), ConfigError> {
        match self.node_id_from.as_deref() {
            None => Ok(()),
            Some("k8s") => {
                let host = hostname().ok_or_else(|| {
                    ConfigError(
                        "TANDEM_NODE_ID_FROM=k8s but the hostname cannot be read (set HOSTNAME)"
                            .into(),
                    )
                })?;
                let ordinal = host
                    .rsplit_once('-')
                    .and_then(|(_, n)| n.parse::<u64>().ok())
                    .ok_or_else(|| {
                        ConfigError(format!(
                            "TANDEM_NODE_ID_FROM=k8s needs a StatefulSet hostname ending in -<ordinal> (like tandem-0), got {host:?}"
                        ))
                    })?;
                self.node_id = ordinal.checked_add(1).ok_or_else(|| {
                    ConfigError(format!(
                        "TANDEM_NODE_ID_FROM=k8s: the ordinal of hostname {host:?} is too large for a node id"
                    ))
                })?;
                Ok(())
            }
            Some(other) => Err(ConfigError(format!(
                "node_id_from {other:?} is not known; the only source is `k8s`"
            ))),
        }
    }

    fn validate(&self) -> Result<(), ConfigError> {
        if self.nodes.get(self.node_id).is_none() {
            return Err(ConfigError(format!(
                "node id {} is not in TANDEM_NODES (ids: {})",
                self.node_id,
                self.nodes.ids_text()
            )));
        }
        let clustered = self.nodes.0.len() > 1 || self.join.is_some();
        for (name, secret) in [
            ("secret_cluster", &self.secret_cluster),
            ("secret_api", &self.secret_api),
        ] {
            if secret.is_none() && clustered {
                let (flag, env) = flag_and_env(name);
                return Err(ConfigError(match &self.join {
                    Some(join) => format!(
                        "joining the cluster at {join} needs {flag} (or {env}), the same as on its members"
                    ),
                    None => format!(
                        "a cluster of {} nodes needs {flag} (or {env}), the same on every node",
                        self.nodes.0.len()
                    ),
                }));
            }
        }
        for (name, secret) in [
            ("secret_cluster", &self.secret_cluster),
            ("secret_api", &self.secret_api),
            ("secret_cluster_previous", &self.secret_cluster_previous),
            ("key_encryption_secret", &self.key_encryption_secret),
        ] {
            let length = secret.as_deref().map(|s| s.chars().count());
            if let Some(length) = length.filter(|&n| n < MIN_SECRET_LEN) {
                let (flag, env) = flag_and_env(name);
                return Err(ConfigError(format!(
                    "{flag} ({env}) is {length} characters long; use at least {MIN_SECRET_LEN}"
                )));
            }
        }
        // Raft counts in whole milliseconds.
        let (heartbeat, min, max) = (
            self.heartbeat.as_millis(),
            self.election_timeout_min.as_millis(),
            self.election_timeout_max.as_millis(),
        );
        if heartbeat == 0 || min <= heartbeat {
            return Err(ConfigError(format!(
                "election_timeout_min ({}) must be greater than heartbeat ({}), which must be at least 1ms",
                self.election_timeout_min, self.heartbeat
            )));
        }
        if max <= min {
            return Err(ConfigError(format!(
                "election_timeout_max ({}) must be greater than election_timeout_min ({})",
                self.election_timeout_max, self.election_timeout_min
            )));
        }
        for (name, addr) in [
            ("api_addr", &self.api_addr),
            ("cluster_addr", &self.cluster_addr),
            ("join", &self.join),
        ] {
            if let Some(addr) = addr {
                check_addr(addr, 0, name)
                    .map_err(|_| ConfigError(format!("{name} {addr:?} is not host:port")))?;
            }
        }
        let given = [
            &self.cluster_ca_file,
            &self.cluster_cert_file,
            &self.cluster_key_file,
        ]
        .iter()
        .filter(|file| file.is_some())
        .count();
        if given != 0 && given != 3 {
            return Err(ConfigError(
                "bring-your-own cluster TLS needs all three of cluster_ca_file, cluster_cert_file and cluster_key_file".into(),
            ));
        }
        if self.snapshot_every == 0 {
            return Err(ConfigError("snapshot_every must be at least 1".into()));
        }
        let chunk_limit = crate::cluster_api::CLUSTER_BODY_LIMIT as u64 / 2;
        if !(MIN_SNAPSHOT_CHUNK..=chunk_limit).contains(&self.snapshot_chunk_size.0) {
            return Err(ConfigError(format!(
                "snapshot_chunk_size ({}) must be between {} and {}: a follower refuses larger messages on the cluster port",
                self.snapshot_chunk_size,
                ByteSize(MIN_SNAPSHOT_CHUNK),
                ByteSize(chunk_limit)
            )));
        }
        self.api_tls()?;
        self.validate_keys()?;
        self.validate_agents()?;
        self.backends().map(|_| ())
    }

    /// The backends this server uses; an impossible combination is an error saying why.
    pub fn backends(&self) -> Result<Backends, ConfigError> {
        BackendSettings {
            storage: self.storage,
            ha_storage: self.ha_storage,
            postgres_url: self.postgres_url.as_deref(),
            postgres_pool_size: self.postgres_pool_size,
            postgres_tls: self.postgres_tls,
            postgres_schema: &self.postgres_schema,
            etcd_endpoints: &self.etcd_endpoints,
            etcd_prefix: &self.etcd_prefix,
            lock_ttl: self.lock_ttl,
        }
        .choose()
        .map_err(ConfigError)
    }

    fn validate_agents(&self) -> Result<(), ConfigError> {
        // Agents report every second by default: a shorter limit marks healthy agents down.
        if self.agent_down_after.0 < Duration::from_millis(500) {
            return Err(ConfigError(format!(
                "agent_down_after ({}) must be at least 500ms; agents report every second by default",
                self.agent_down_after
            )));
        }
        if self.agent_deregister_after.0 <= self.agent_down_after.0 {
            return Err(ConfigError(format!(
                "agent_deregister_after ({}) must be longer than agent_down_after ({}): an agent is removed only after it has been down",
                self.agent_deregister_after, self.agent_down_after
            )));
        }
        Ok(())
    }

    fn validate_keys(&self) -> Result<(), ConfigError> {
        tandem_keys::check_instance_id(&self.instance_id()).map_err(ConfigError)?;
        if self.token_duration.0 < Duration::from_secs(1) {
            return Err(ConfigError(format!(
                "token_duration ({}) must be at least 1s",
                self.token_duration
            )));
        }
        if self.key_duration.0 <= self.token_duration.0 * 2 {
            return Err(ConfigError(format!(
                "key_duration ({}) must be more than twice token_duration ({}), so a key outlives the tokens it signed by a margin",
                self.key_duration, self.token_duration
            )));
        }
        if self.key_peers_refresh.0 < Duration::from_secs(1) || self.key_peers_timeout.0.is_zero() {
            return Err(ConfigError(format!(
                "key_peers_refresh ({}) must be at least 1s and key_peers_timeout ({}) above 0",
                self.key_peers_refresh, self.key_peers_timeout
            )));
        }
        Ok(())
    }

    /// The name in this server's key ids: `instance_id`, or `tandem-{node_id}` when unset.
    pub fn instance_id(&self) -> String {
        self.instance_id
            .clone()
            .unwrap_or_else(|| format!("tandem-{}", self.node_id))
    }

    /// The addresses this node asks clients and peers to use.
    pub fn advertised(&self) -> NodeEntry {
        let line = self.this_node();
        NodeEntry {
            id: line.id,
            cluster_addr: self
                .cluster_addr
                .clone()
                .unwrap_or_else(|| line.cluster_addr.clone()),
            api_addr: self
                .api_addr
                .clone()
                .unwrap_or_else(|| line.api_addr.clone()),
        }
    }

    pub fn this_node(&self) -> &NodeEntry {
        // `validate` has checked that the id is in the list.
        self.nodes.get(self.node_id).unwrap_or(&self.nodes.0[0])
    }

    /// How the API is served (see [`ApiTls::choose`]).
    pub fn api_tls(&self) -> Result<ApiTls, ConfigError> {
        ApiTls::choose(
            self.api_tls,
            self.api_tls_cert_file.as_ref(),
            self.api_tls_key_file.as_ref(),
            &self.this_node().api_addr,
        )
        .map_err(ConfigError)
    }

    /// The operator's own cluster CA, certificate and key, when given (`validate` has checked
    /// that it is all three or none).
    pub fn cluster_pem_files(&self) -> Option<ClusterPemFiles> {
        match (
            &self.cluster_ca_file,
            &self.cluster_cert_file,
            &self.cluster_key_file,
        ) {
            (Some(ca), Some(cert), Some(key)) => Some(ClusterPemFiles::new(ca, cert, key)),
            _ => None,
        }
    }
}

/// A setting's flag and environment variable, as error messages name them.
fn flag_and_env(name: &str) -> (String, &'static str) {
    Settings::catalogue()
        .into_iter()
        .find(|setting| setting.name == name)
        .map(|setting| (setting.flag(), setting.env))
        .expect("only declared settings are named")
}

fn hostname() -> Option<String> {
    std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| {
            std::fs::read_to_string("/etc/hostname")
                .ok()
                .map(|h| h.trim().to_string())
        })
}

/// Reads the secret saved in `data_dir`, or makes and saves one (mode 0600). Answers the secret
/// and whether it was just made, so the caller can show it once.
pub fn load_or_generate_secret(data_dir: &Path, name: &str) -> std::io::Result<(String, bool)> {
    use rand::distr::{Alphanumeric, SampleString};
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;

    let path = data_dir.join(name);
    match std::fs::read_to_string(&path) {
        Ok(secret) if !secret.trim().is_empty() => return Ok((secret.trim().to_string(), false)),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let secret = Alphanumeric.sample_string(&mut rand::rng(), 32);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&path)?;
    file.write_all(secret.as_bytes())?;
    file.sync_all()?;
    Ok((secret, true))
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use clap::Parser;

    use super::*;

    fn args(nodes: &str, id: u64) -> ServerArgs {
        ServerArgs {
            nodes: Some(nodes.parse().unwrap()),
            node_id: Some(id),
            secret_cluster: Some("0123456789abcdef".into()),
            secret_api: Some("0123456789abcdef".into()),
            ..Default::default()
        }
    }

    const THREE: &str =
        "1 127.0.0.1:8101 127.0.0.1:8201\n2 127.0.0.1:8102 127.0.0.1:8202\n3 h3:8103 h3:8203";

    /// Settings from a config file's text, with no flags and an empty environment.
    fn from_file(text: &str) -> Result<Settings, String> {
        Settings::from_config_text(text, &|| None).map_err(|e| e.0)
    }

    /// Settings from flags and an environment of `vars`, as `tandem server` reads them.
    fn from_flags_and_env(flags: &[&str], vars: &[(&str, &str)]) -> Result<Settings, String> {
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            server: ServerArgs,
        }
        let cli = Cli::try_parse_from(std::iter::once("tandem").chain(flags.iter().copied()))
            .map_err(|e| e.to_string())?;
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Settings::settle(
            cli.server,
            FileSettings::default(),
            &|name| vars.get(name).cloned(),
            &|| None,
        )
        .map_err(|e| e.0)
    }

    #[test]
    fn node_list_parses_lines_and_semicolons() {
        let list: NodeList = THREE.parse().unwrap();
        assert_eq!(list.ids(), vec![1, 2, 3]);
        assert_eq!(list.get(3).unwrap().api_addr, "h3:8203");
        assert_eq!(list.get(3).unwrap().cluster_addr, "h3:8103");
        let one_line: NodeList = THREE.replace('\n', ";").parse().unwrap();
        assert_eq!(one_line, list);
    }

    #[test]
    fn node_list_errors_name_the_problem() {
        let dup = "1 a:1 a:2\n1 b:1 b:2".parse::<NodeList>().unwrap_err();
        assert!(dup.contains("appears twice"), "{dup}");
        let short = "1 a:1".parse::<NodeList>().unwrap_err();
        assert!(
            short.contains("line 1")
                && short.contains("2 field")
                && short.contains("id addr_cluster addr_api"),
            "{short}"
        );
        let bad_id = "x a:1 a:2".parse::<NodeList>().unwrap_err();
        assert!(bad_id.contains("\"x\""), "{bad_id}");
        let bad_addr = "1 nohost a:2".parse::<NodeList>().unwrap_err();
        assert!(bad_addr.contains("cluster port address"), "{bad_addr}");
        assert!("".parse::<NodeList>().is_err());
    }

    #[test]
    fn unknown_node_id_lists_the_known_ones() {
        let err = Settings::load(&args(THREE, 4)).unwrap_err();
        assert_eq!(err.0, "node id 4 is not in TANDEM_NODES (ids: 1, 2, 3)");
    }

    #[test]
    fn short_or_missing_secrets_are_refused_in_a_cluster() {
        let mut a = args(THREE, 1);
        a.secret_api = Some("short".into());
        assert!(Settings::load(&a).unwrap_err().0.contains("at least 16"));
        a.secret_api = None;
        assert!(Settings::load(&a).unwrap_err().0.contains("--secret-api"));
        let mut a = args(THREE, 1);
        a.secret_cluster = None;
        assert_eq!(
            Settings::load(&a).unwrap_err().0,
            "a cluster of 3 nodes needs --secret-cluster (or TANDEM_SECRET_CLUSTER), the same on every node"
        );
    }

    #[test]
    fn joining_a_cluster_needs_its_secrets_and_a_host_port() {
        let alone = "4 127.0.0.1:8104 127.0.0.1:8204";
        let joining = [
            "--node-id",
            "4",
            "--nodes",
            alone,
            "--join",
            "127.0.0.1:8201",
        ];
        let err = from_flags_and_env(&joining, &[]).unwrap_err();
        assert_eq!(
            err,
            "joining the cluster at 127.0.0.1:8201 needs --secret-cluster (or TANDEM_SECRET_CLUSTER), the same as on its members"
        );
        let mut a = args(alone, 4);
        a.join = Some("nowhere".into());
        assert_eq!(
            Settings::load(&a).unwrap_err().0,
            "join \"nowhere\" is not host:port"
        );
        let s = from_file(
            "[cluster]\nnode_id = 4\nnodes = \"4 a:8100 a:8200\"\njoin = \"b:8200\"\nsecret = \"0123456789abcdef\"\n[api]\nsecret = \"0123456789abcdef\"\ntls = \"off\"\n",
        )
        .unwrap();
        assert_eq!(s.join.as_deref(), Some("b:8200"));
        let secrets = [
            "--secret-cluster",
            "0123456789abcdef",
            "--secret-api",
            "0123456789abcdef",
        ];
        let s = from_flags_and_env(&[&joining[..], &secrets[..]].concat(), &[]).unwrap();
        assert_eq!(s.join.as_deref(), Some("127.0.0.1:8201"));
    }

    #[test]
    fn every_secret_is_held_to_the_same_length() {
        for (flag, env) in [
            ("--secret-cluster", "TANDEM_SECRET_CLUSTER"),
            ("--secret-api", "TANDEM_SECRET_API"),
            (
                "--secret-cluster-previous",
                "TANDEM_SECRET_CLUSTER_PREVIOUS",
            ),
            ("--key-encryption-secret", "TANDEM_KEY_ENCRYPTION_SECRET"),
        ] {
            let err = from_flags_and_env(&[flag, "short"], &[]).unwrap_err();
            assert_eq!(
                err,
                format!("{flag} ({env}) is 5 characters long; use at least 16")
            );
        }
    }

    #[test]
    fn unset_is_none_and_blank_counts_as_unset() {
        let s = from_flags_and_env(&["--secret-api", " \n"], &[]).unwrap();
        assert_eq!(s.secret_api, None);
        assert_eq!(s.secret_cluster, None);
        assert_eq!(s.instance_id, None);
        assert_eq!(s.instance_id(), "tandem-1");
        assert_eq!(s.cluster_pem_files(), None);
        let s = from_flags_and_env(&["--secret-api", "0123456789abcdef\n"], &[]).unwrap();
        assert_eq!(s.secret_api.as_deref(), Some("0123456789abcdef"));
    }

    #[test]
    fn flags_beat_the_file_and_the_file_beats_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tandem.toml");
        std::fs::write(
            &path,
            "[cluster]\nheartbeat = \"40ms\"\nelection_timeout_min = 250\nsnapshot_every = 7\n",
        )
        .unwrap();
        let a = ServerArgs {
            config: Some(path),
            snapshot_every: Some(9),
            ..Default::default()
        };
        let s = Settings::load(&a).unwrap();
        assert_eq!(s.heartbeat, Span::millis(40));
        assert_eq!(s.election_timeout_min, Span::millis(250));
        assert_eq!(s.snapshot_every, 9);
        assert_eq!(s.election_timeout_max, Span::millis(400));
    }

    #[test]
    fn sections_hold_every_setting() {
        let s = from_file(
            r#"
            data_dir = "/var/lib/tandem"
            [cluster]
            node_id = 2
            nodes = "1 a:8100 a:8200; 2 b:8100 b:8200"
            secret = "0123456789abcdef"
            secret_previous = "fedcba9876543210"
            cluster_addr = "nat:9100"
            [api]
            secret = "0123456789abcdefgh"
            request_timeout = "2s"
            max_body_bytes = 1024
            tls = "auto"
            [keys]
            algorithm = "eddsa"
            token_duration = "10m"
            peers = ["http://peer:1/jwks"]
            [log]
            format = "json"
            "#,
        )
        .unwrap();
        assert_eq!(s.api_tls, Some(ApiTlsMode::Auto));
        assert_eq!(s.data_dir, PathBuf::from("/var/lib/tandem"));
        assert_eq!(s.node_id, 2);
        assert_eq!(s.secret_cluster.as_deref(), Some("0123456789abcdef"));
        assert_eq!(
            s.secret_cluster_previous.as_deref(),
            Some("fedcba9876543210")
        );
        assert_eq!(s.secret_api.as_deref(), Some("0123456789abcdefgh"));
        assert_eq!(s.advertised().cluster_addr, "nat:9100");
        assert_eq!(s.advertised().api_addr, "b:8200");
        assert_eq!(s.request_timeout, Span::secs(2));
        assert_eq!(s.max_body_bytes, 1024);
        assert_eq!(s.key_algorithm, SigningAlgorithm::Eddsa);
        assert_eq!(s.token_duration, Span::secs(600));
        assert_eq!(s.key_peers.0, vec!["http://peer:1/jwks".to_string()]);
        assert_eq!(s.log_format, LogFormat::Json);
    }

    #[test]
    fn old_flat_keys_still_load() {
        let s = from_file(
            r#"
            node_id = 2
            nodes = "1 a:8100 a:8200; 2 b:8100 b:8200"
            secret_raft = "0123456789abcdef"
            secret_api = "0123456789abcdefgh"
            heartbeat_ms = 40
            election_timeout_min_ms = 250
            request_timeout_ms = 1500
            key_algorithm = "eddsa"
            log_level = "debug"
            api_tls = "off"
            "#,
        )
        .unwrap();
        assert_eq!(s.node_id, 2);
        assert_eq!(s.secret_cluster.as_deref(), Some("0123456789abcdef"));
        assert_eq!(s.heartbeat, Span::millis(40));
        assert_eq!(s.election_timeout_min, Span::millis(250));
        assert_eq!(s.request_timeout, Span::millis(1500));
        assert_eq!(s.key_algorithm, SigningAlgorithm::Eddsa);
        assert_eq!(s.log_level, "debug");
    }

    #[test]
    fn backends_have_every_spelling() {
        let s = from_file(
            r#"
            [backend]
            storage = "postgres"
            ha_storage = "etcd"
            postgres_url = "postgres://tandem@db:5432/tandem"
            postgres_pool_size = 4
            postgres_tls = "verify-full"
            postgres_schema = "cluster_a"
            etcd_endpoints = ["e1:2379", "http://e2:2379"]
            etcd_prefix = "/a/"
            lock_ttl = "5s"
            "#,
        )
        .unwrap();
        let Backends::Postgres { postgres, ha } = s.backends().unwrap() else {
            panic!("postgres storage expected");
        };
        assert_eq!(postgres.pool_size, 4);
        assert_eq!(postgres.tls, PostgresTls::VerifyFull);
        assert_eq!(postgres.schema, "cluster_a");
        assert_eq!(
            ha,
            ExternalHa::Etcd {
                endpoints: vec![
                    EtcdEndpoint("http://e1:2379".into()),
                    EtcdEndpoint("http://e2:2379".into())
                ],
                prefix: "/a/".into(),
                lock_ttl: Duration::from_secs(5),
            }
        );
        let s = from_flags_and_env(
            &[
                "--storage",
                "postgres",
                "--lock-ttl",
                "2s",
                "--postgres-url",
                "host=db user=tandem",
                "--ha-storage",
                "etcd",
                "--etcd-endpoints",
                "e1:2379,e2:2379,e3:2379",
            ],
            &[],
        )
        .unwrap();
        assert_eq!(s.backends().unwrap().names(), ("postgres", "etcd"));
        assert_eq!(s.etcd_endpoints.len(), 3);
        assert_eq!(s.lock_ttl, Span::secs(2));
        let err = from_flags_and_env(&["--ha-storage", "postgres"], &[]).unwrap_err();
        assert_eq!(
            err,
            "ha_storage = postgres needs storage = postgres: with storage = raft the Raft leader is the active node (ha_storage = raft)"
        );
        assert_eq!(
            from_flags_and_env(&[], &[]).unwrap().backends().unwrap(),
            Backends::Raft
        );
    }

    #[test]
    fn a_setting_given_flat_and_in_its_section_is_refused() {
        let err = from_file("heartbeat_ms = 50\n[cluster]\nheartbeat = \"50ms\"\n").unwrap_err();
        assert_eq!(
            err,
            "config file: `heartbeat_ms` and `cluster.heartbeat` are the same setting; give it once, as `cluster.heartbeat`"
        );
        let err = from_file("log_level = \"info\"\nlog.level = \"debug\"\n").unwrap_err();
        assert!(err.contains("`log_level` and `log.level`"), "{err}");
    }

    #[test]
    fn unknown_file_keys_are_errors_that_name_the_key_and_its_section() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tandem.toml");
        std::fs::write(&path, "hearbeat_ms = 50\n").unwrap();
        let err = Settings::load(&ServerArgs {
            config: Some(path.clone()),
            ..Default::default()
        })
        .unwrap_err();
        assert!(
            err.0.contains("unknown key `hearbeat_ms`")
                && err.0.contains(&path.display().to_string()),
            "{}",
            err.0
        );
        let err = from_file("[cluster]\nhartbeat = \"50ms\"\n").unwrap_err();
        assert!(err.contains("unknown key `hartbeat` in [cluster]"), "{err}");
        // A new spelling is a key of its section, not of the top level.
        let err = from_file("secret_cluster = \"0123456789abcdef\"\n").unwrap_err();
        assert!(err.contains("unknown key `secret_cluster`"), "{err}");
        let err = from_file("[agent]\nname = \"a\"\n").unwrap_err();
        assert!(err.contains("unknown key `agent`"), "{err}");
        let err = from_file("cluster = 3\n").unwrap_err();
        assert!(err.contains("`cluster` must be a table"), "{err}");
        let err = from_file("[cluster]\nheartbeat = true\n").unwrap_err();
        assert!(err.starts_with("config file: cluster.heartbeat: "), "{err}");
    }

    #[test]
    fn durations_take_units_and_bare_milliseconds_where_they_did() {
        for (text, millis) in [
            ("100", 100),
            ("100ms", 100),
            ("2s", 2000),
            (" 1s 500ms", 1500),
        ] {
            assert_eq!(MillisIfBare::text(text), Ok(Span::millis(millis)), "{text}");
        }
        assert!(MillisIfBare::text("-5").is_err());
        assert!(MillisIfBare::file(toml::Value::Integer(-5)).is_err());
        // Durations never given in milliseconds still need their unit.
        assert!(from_flags_and_env(&["--key-duration", "86400"], &[]).is_err());
        let s = from_flags_and_env(
            &[
                "--heartbeat",
                "50ms",
                "--election-timeout-max",
                "1s",
                "--request-timeout-ms",
                "750",
            ],
            &[],
        )
        .unwrap();
        assert_eq!(s.heartbeat, Span::millis(50));
        assert_eq!(s.election_timeout_max, Span::secs(1));
        assert_eq!(s.request_timeout, Span::millis(750));
        let err = from_flags_and_env(&["--heartbeat-ms", "500"], &[]).unwrap_err();
        assert_eq!(
            err,
            "election_timeout_min (200ms) must be greater than heartbeat (500ms), which must be at least 1ms"
        );
    }

    #[test]
    fn former_flags_and_env_vars_are_aliases() {
        let secret = "0123456789abcdef";
        for flag in ["--secret-raft", "--secret-cluster"] {
            let s = from_flags_and_env(&[flag, secret], &[]).unwrap();
            assert_eq!(s.secret_cluster.as_deref(), Some(secret), "{flag}");
        }
        let s = from_flags_and_env(&["--secret-raft-previous", secret], &[]).unwrap();
        assert_eq!(s.secret_cluster_previous.as_deref(), Some(secret));

        let s = from_flags_and_env(
            &[],
            &[
                ("TANDEM_SECRET_RAFT", secret),
                ("TANDEM_HEARTBEAT_MS", "30"),
            ],
        )
        .unwrap();
        assert_eq!(s.secret_cluster.as_deref(), Some(secret));
        assert_eq!(s.heartbeat, Span::millis(30));

        // A flag beats the former env var, as it beats any env var.
        let s =
            from_flags_and_env(&["--heartbeat", "20ms"], &[("TANDEM_HEARTBEAT_MS", "30")]).unwrap();
        assert_eq!(s.heartbeat, Span::millis(20));

        let err = from_flags_and_env(
            &[],
            &[
                ("TANDEM_SECRET_CLUSTER", secret),
                ("TANDEM_SECRET_RAFT", secret),
            ],
        )
        .unwrap_err();
        assert_eq!(
            err,
            "TANDEM_SECRET_CLUSTER and TANDEM_SECRET_RAFT are both set; they are the same setting, so keep only TANDEM_SECRET_CLUSTER"
        );
        let err = from_flags_and_env(&[], &[("TANDEM_HEARTBEAT_MS", "soon")]).unwrap_err();
        assert!(err.starts_with("TANDEM_HEARTBEAT_MS: "), "{err}");
    }

    #[test]
    fn k8s_hostname_gives_ordinal_plus_one() {
        let mut s = Settings::load(&args(THREE, 1)).unwrap();
        s.node_id_from = Some("k8s".into());
        s.resolve_node_id(&|| Some("tandem-2".into())).unwrap();
        assert_eq!(s.node_id, 3);
        assert!(s.resolve_node_id(&|| Some("tandem".into())).is_err());
    }

    #[test]
    fn key_settings_are_checked() {
        let mut a = args(THREE, 2);
        assert_eq!(Settings::load(&a).unwrap().instance_id(), "tandem-2");
        a.key_duration = Some("2h".parse().unwrap());
        let err = Settings::load(&a).unwrap_err();
        assert!(
            err.0.contains("more than twice token_duration"),
            "{}",
            err.0
        );
        a.key_duration = None;
        a.instance_id = Some("bad/id".into());
        assert!(Settings::load(&a).unwrap_err().0.contains("instance_id"));
        assert!("http://a:1/jwks ftp://b".parse::<PeerList>().is_err());
        assert_eq!(
            "http://a:1/x, https://b/y"
                .parse::<PeerList>()
                .unwrap()
                .0
                .len(),
            2
        );
        assert!("5 fortnights".parse::<Span>().is_err());
    }

    #[test]
    fn agent_timings_default_and_are_checked() {
        let s = from_flags_and_env(&[], &[]).unwrap();
        assert_eq!(s.agent_down_after, Span::secs(3));
        assert_eq!(s.agent_deregister_after, Span::secs(72 * 3600));
        let s = from_file("[agents]\ndown_after = \"5s\"\nderegister_after = \"1h\"\n").unwrap();
        assert_eq!(s.agent_down_after, Span::secs(5));
        assert_eq!(s.agent_deregister_after, Span::secs(3600));
        let s = from_flags_and_env(&["--agent-down-after", "2s"], &[]).unwrap();
        assert_eq!(s.agent_down_after, Span::secs(2));
        let err = from_flags_and_env(&["--agent-down-after", "100ms"], &[]).unwrap_err();
        assert_eq!(
            err,
            "agent_down_after (100ms) must be at least 500ms; agents report every second by default"
        );
        let err = from_flags_and_env(
            &[
                "--agent-down-after",
                "10s",
                "--agent-deregister-after",
                "10s",
            ],
            &[],
        )
        .unwrap_err();
        assert!(
            err.starts_with(
                "agent_deregister_after (10s) must be longer than agent_down_after (10s)"
            ),
            "{err}"
        );
    }

    #[test]
    fn every_spelling_derives_from_the_name() {
        let (mut file_keys, mut flat_keys) = (BTreeSet::new(), BTreeSet::new());
        for setting in Settings::catalogue() {
            let name = setting.name;
            assert_eq!(setting.env, format!("TANDEM_{}", name.to_uppercase()));
            assert!(!setting.help.is_empty());
            assert!(file_keys.insert(setting.file_key), "{name}: file key twice");
            assert!(
                flat_keys.insert(setting.flat_key()),
                "{name}: flat key twice"
            );
            if let Some(former) = setting.formerly {
                assert_eq!(former.flag, former.key.replace('_', "-"), "{name}");
                assert_eq!(former.env, format!("TANDEM_{}", former.key.to_uppercase()));
            }
        }
    }
}
