//! Server settings. Each setting is declared once below — type, default, help line, env var —
//! and from that one line come the command-line flag, the `TANDEM_*` variable and the TOML key
//! (the flag's name with underscores). A flag or variable beats the file, the file beats the
//! default.

use std::collections::BTreeSet;
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use std::time::Duration;

use tandem_keys::SigningAlgorithm;
use tandem_raft::NodeId;

/// A line of the node list: `id addr_raft addr_api`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeEntry {
    pub id: NodeId,
    pub raft_addr: String,
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

fn check_addr(addr: &str, line: usize, what: &str) -> Result<(), String> {
    let valid = addr.parse::<std::net::SocketAddr>().is_ok()
        || addr
            .rsplit_once(':')
            .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
    if valid {
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
            let [id, raft_addr, api_addr] = fields[..] else {
                return Err(format!(
                    "node list line {line_no} {line:?} has {} field(s); each line is `id addr_raft addr_api`, e.g. `1 10.0.0.1:8100 10.0.0.1:8200`",
                    fields.len()
                ));
            };
            let id: NodeId = id.parse().ok().filter(|id| *id > 0).ok_or_else(|| {
                format!("node list line {line_no}: node id {id:?} is not a whole number above 0")
            })?;
            if !seen.insert(id) {
                return Err(format!("node list line {line_no}: node id {id} appears twice; every node needs its own id"));
            }
            check_addr(raft_addr, line_no, "raft address")?;
            check_addr(api_addr, line_no, "API address")?;
            nodes.push(NodeEntry {
                id,
                raft_addr: raft_addr.to_string(),
                api_addr: api_addr.to_string(),
            });
        }
        if nodes.is_empty() {
            return Err(
                "the node list is empty; give one line `id addr_raft addr_api` per node".into(),
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
            write!(f, "{} {} {}", n.id, n.raft_addr, n.api_addr)?;
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

/// A length of time, written as humans do: `90s`, `5m`, `24h`, `1h 30m`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Span(pub Duration);

impl Span {
    pub const fn secs(secs: u64) -> Span {
        Span(Duration::from_secs(secs))
    }

    pub fn as_millis(self) -> u64 {
        self.0.as_millis().min(u64::MAX as u128) as u64
    }
}

impl FromStr for Span {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        humantime::parse_duration(s.trim())
            .map(Span)
            .map_err(|e| format!("{s:?} is not a duration like 30s, 5m or 24h: {e}"))
    }
}

impl fmt::Display for Span {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", humantime::format_duration(self.0))
    }
}

impl<'de> serde::Deserialize<'de> for Span {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
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

macro_rules! settings {
    ($( $(#[doc = $doc:literal])+ $name:ident : $ty:ty = $default:expr, shown $shown:literal, env $env:literal; )*) => {
        /// `tandem server` flags. Every flag is also an environment variable and a key of the
        /// TOML file given with `--config`.
        #[derive(clap::Args, Debug, Default, Clone)]
        pub struct ServerArgs {
            /// TOML file with settings; its keys are the flag names with underscores
            #[arg(long, env = "TANDEM_CONFIG")]
            pub config: Option<PathBuf>,
            $(
                #[arg(long, env = $env, hide_env_values = true, help = concat!($($doc,)+ " [default: ", $shown, "]"))]
                pub $name: Option<$ty>,
            )*
        }

        #[derive(serde::Deserialize, Default)]
        #[serde(deny_unknown_fields)]
        struct FileSettings {
            $( $name: Option<$ty>, )*
        }

        /// Settings after flags, environment, file and defaults are merged.
        #[derive(Clone, Debug)]
        pub struct Settings {
            $( $(#[doc = $doc])+ pub $name: $ty, )*
        }

        impl Settings {
            fn merge(args: &ServerArgs, file: FileSettings) -> Settings {
                Settings {
                    $( $name: args.$name.clone().or(file.$name).unwrap_or_else(|| $default), )*
                }
            }

            /// Every setting as `(toml key, env var, default, help)`, for docs and tests.
            pub fn catalogue() -> Vec<(&'static str, &'static str, &'static str, String)> {
                vec![ $( (stringify!($name), $env, $shown, [$($doc),+].join(" ").trim().to_string()), )* ]
            }
        }
    };
}

settings! {
    /// This node's id; must be one of the ids in the node list
    node_id: NodeId = 1, shown "1", env "TANDEM_NODE_ID";
    /// Take the node id from elsewhere: `k8s` reads a StatefulSet hostname (`tandem-0` is node 1)
    node_id_from: String = String::new(), shown "unset", env "TANDEM_NODE_ID_FROM";
    /// The cluster, one node a line (or `;`-separated): `id addr_raft addr_api`
    nodes: NodeList = NodeList(vec![NodeEntry { id: 1, raft_addr: "127.0.0.1:8100".into(), api_addr: "127.0.0.1:8200".into() }]),
        shown "1 127.0.0.1:8100 127.0.0.1:8200", env "TANDEM_NODES";
    /// Address clients use to reach this node's API when it differs from the API address in its node-list line (NAT, a load balancer); redirects point here
    api_addr: String = String::new(), shown "the API address of this node's line", env "TANDEM_API_ADDR";
    /// Address peers use to reach this node's cluster port when it differs from the Raft address in its node-list line
    cluster_addr: String = String::new(), shown "the Raft address of this node's line", env "TANDEM_CLUSTER_ADDR";
    /// Folder for the Raft log, the state database, snapshots and generated secrets
    data_dir: PathBuf = PathBuf::from("./tandem-data"), shown "./tandem-data", env "TANDEM_DATA_DIR";
    /// Secret that authenticates node-to-node traffic (16+ characters, the same on every node); generated on a single node when unset
    secret_raft: String = String::new(), shown "generated", env "TANDEM_SECRET_RAFT";
    /// A second cluster secret also accepted while every node moves to a new secret_raft (see docs/operations.md)
    secret_raft_previous: String = String::new(), shown "unset", env "TANDEM_SECRET_RAFT_PREVIOUS";
    /// PEM file of the CA(s) that sign cluster certificates, to bring your own instead of the CA derived from secret_raft
    cluster_ca_file: String = String::new(), shown "unset: CA derived from secret_raft", env "TANDEM_CLUSTER_CA_FILE";
    /// PEM file of this node's cluster certificate chain (with cluster_ca_file and cluster_key_file)
    cluster_cert_file: String = String::new(), shown "unset", env "TANDEM_CLUSTER_CERT_FILE";
    /// PEM file of this node's cluster private key (with cluster_ca_file and cluster_cert_file)
    cluster_key_file: String = String::new(), shown "unset", env "TANDEM_CLUSTER_KEY_FILE";
    /// Secret clients send as `Authorization: Bearer <secret>` (16+ characters); generated on a single node when unset
    secret_api: String = String::new(), shown "generated", env "TANDEM_SECRET_API";
    /// Interval between leader heartbeats, in milliseconds; also how long the leader waits for a follower to answer one append
    heartbeat_ms: u64 = 100, shown "100", env "TANDEM_HEARTBEAT_MS";
    /// Shortest election timeout, in milliseconds; a follower that has a leader also waits out the leader's lease (the longest election timeout) before it calls an election
    election_timeout_min_ms: u64 = 200, shown "200", env "TANDEM_ELECTION_TIMEOUT_MIN_MS";
    /// Longest such time (each follower picks at random in between), in milliseconds
    election_timeout_max_ms: u64 = 400, shown "400", env "TANDEM_ELECTION_TIMEOUT_MAX_MS";
    /// Build a snapshot after this many log entries since the last one
    snapshot_every: u64 = 10_000, shown "10000", env "TANDEM_SNAPSHOT_EVERY";
    /// Log entries kept behind a snapshot (a follower further behind is sent the snapshot)
    snapshot_logs_to_keep: u64 = 1_000, shown "1000", env "TANDEM_SNAPSHOT_LOGS_TO_KEEP";
    /// How long a request waits for Raft (a write to commit, a read to be confirmed), in milliseconds
    request_timeout_ms: u64 = 5_000, shown "5000", env "TANDEM_REQUEST_TIMEOUT_MS";
    /// Largest request body the API accepts, in bytes
    max_body_bytes: usize = 8 * 1024 * 1024, shown "8388608", env "TANDEM_MAX_BODY_BYTES";
    /// This server's name in its signing key ids (`{instance_id}-{unique}`): letters, digits, `.`, `_` and `-`
    instance_id: String = String::new(), shown "tandem-{node_id}", env "TANDEM_INSTANCE_ID";
    /// Signature algorithm of this server's token signing keys: es256 or eddsa
    key_algorithm: SigningAlgorithm = SigningAlgorithm::Es256, shown "es256", env "TANDEM_KEY_ALGORITHM";
    /// How long a signing key signs before the server rotates to a new one; must be more than twice token_duration
    key_duration: Span = Span::secs(24 * 3600), shown "24h", env "TANDEM_KEY_DURATION";
    /// Longest life of a token, and the life of one whose request names no ttl; a retired key stays published this long
    token_duration: Span = Span::secs(3600), shown "1h", env "TANDEM_TOKEN_DURATION";
    /// The `iss` claim of every token this cluster issues
    token_issuer: String = "tandem".into(), shown "tandem", env "TANDEM_TOKEN_ISSUER";
    /// Secret (16+ characters) that encrypts the private key files in data_dir/keys
    key_encryption_secret: String = String::new(), shown "unset: key files are plain, mode 0600", env "TANDEM_KEY_ENCRYPTION_SECRET";
    /// JWKS URLs of peers outside the cluster whose keys join this cluster's key set (separated by spaces, commas or lines)
    key_peers: PeerList = PeerList::default(), shown "none", env "TANDEM_KEY_PEERS";
    /// How often each key peer's JWKS is fetched again
    key_peers_refresh: Span = Span::secs(30), shown "30s", env "TANDEM_KEY_PEERS_REFRESH";
    /// How long one fetch from a key peer may take before it counts as failed
    key_peers_timeout: Span = Span::secs(2), shown "2s", env "TANDEM_KEY_PEERS_TIMEOUT";
    /// Log filter, as RUST_LOG spells it (`info`, `tandem=debug,openraft=warn`)
    log_level: String = "info,openraft=warn".into(), shown "info,openraft=warn", env "TANDEM_LOG_LEVEL";
    /// Log format: text or json
    log_format: LogFormat = LogFormat::Text, shown "text", env "TANDEM_LOG_FORMAT";
}

/// A setting that makes start-up impossible; the process exits with code 2.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

/// The shortest secret accepted.
pub const MIN_SECRET_LEN: usize = 16;

impl Settings {
    /// Merges flags and environment (already in `args`) with the config file and defaults, and
    /// checks the result.
    pub fn load(args: &ServerArgs) -> Result<Settings, ConfigError> {
        let file = match &args.config {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|e| {
                    ConfigError(format!("cannot read config file {}: {e}", path.display()))
                })?;
                toml::from_str(&text)
                    .map_err(|e| ConfigError(format!("config file {}: {e}", path.display())))?
            }
            None => FileSettings::default(),
        };
        Settings::settle(args, file, &hostname)
    }

    /// The settings a config file's text gives over the defaults, checked as [`Settings::load`]
    /// checks them; `hostname` stands in for the machine's name (`node_id_from = "k8s"`). Apart
    /// from `load` so that the parser can be driven without a file, as the fuzz target does.
    pub fn from_config_text(
        text: &str,
        hostname: &dyn Fn() -> Option<String>,
    ) -> Result<Settings, ConfigError> {
        let file = toml::from_str(text).map_err(|e| ConfigError(format!("config file: {e}")))?;
        Settings::settle(&ServerArgs::default(), file, hostname)
    }

    fn settle(
        args: &ServerArgs,
        file: FileSettings,
        hostname: &dyn Fn() -> Option<String>,
    ) -> Result<Settings, ConfigError> {
        let mut settings = Settings::merge(args, file);
        // Secrets read from files and environments often end in a newline.
        for secret in [
            &mut settings.secret_api,
            &mut settings.secret_raft,
            &mut settings.secret_raft_previous,
            &mut settings.key_encryption_secret,
        ] {
            *secret = secret.trim().to_string();
        }
        settings.resolve_node_id(hostname)?;
        settings.validate()?;
        Ok(settings)
    }

    fn resolve_node_id(
        &mut self,
        hostname: &dyn Fn() -> Option<String>,
    ) -> Result<(), ConfigError> {
        match self.node_id_from.as_str() {
            "" => Ok(()),
            "k8s" => {
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
            other => Err(ConfigError(format!(
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
        let clustered = self.nodes.0.len() > 1;
        for (name, secret) in [
            ("secret_raft", &self.secret_raft),
            ("secret_api", &self.secret_api),
        ] {
            let flag = name.replace('_', "-");
            let env = format!("TANDEM_{}", name.to_uppercase());
            if secret.is_empty() {
                if clustered {
                    return Err(ConfigError(format!(
                        "a cluster of {} nodes needs --{flag} (or {env}), the same on every node",
                        self.nodes.0.len()
                    )));
                }
            } else if secret.chars().count() < MIN_SECRET_LEN {
                return Err(ConfigError(format!(
                    "--{flag} ({env}) is {} characters long; use at least {MIN_SECRET_LEN}",
                    secret.chars().count()
                )));
            }
        }
        if self.heartbeat_ms == 0 || self.election_timeout_min_ms <= self.heartbeat_ms {
            return Err(ConfigError(format!(
                "election_timeout_min_ms ({}) must be greater than heartbeat_ms ({}), which must be above 0",
                self.election_timeout_min_ms, self.heartbeat_ms
            )));
        }
        if self.election_timeout_max_ms <= self.election_timeout_min_ms {
            return Err(ConfigError(format!(
                "election_timeout_max_ms ({}) must be greater than election_timeout_min_ms ({})",
                self.election_timeout_max_ms, self.election_timeout_min_ms
            )));
        }
        for (name, addr) in [
            ("api_addr", &self.api_addr),
            ("cluster_addr", &self.cluster_addr),
        ] {
            if !addr.is_empty() {
                check_addr(addr, 0, name)
                    .map_err(|_| ConfigError(format!("{name} {addr:?} is not host:port")))?;
            }
        }
        let files = [
            &self.cluster_ca_file,
            &self.cluster_cert_file,
            &self.cluster_key_file,
        ];
        let given = files.iter().filter(|f| !f.is_empty()).count();
        if given != 0 && given != 3 {
            return Err(ConfigError(
                "bring-your-own cluster TLS needs all three of cluster_ca_file, cluster_cert_file and cluster_key_file".into(),
            ));
        }
        if !self.secret_raft_previous.is_empty()
            && self.secret_raft_previous.chars().count() < MIN_SECRET_LEN
        {
            return Err(ConfigError(format!(
                "--secret-raft-previous (TANDEM_SECRET_RAFT_PREVIOUS) is shorter than {MIN_SECRET_LEN} characters"
            )));
        }
        if self.snapshot_every == 0 {
            return Err(ConfigError("snapshot_every must be at least 1".into()));
        }
        self.validate_keys()
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
        if !self.key_encryption_secret.is_empty()
            && self.key_encryption_secret.chars().count() < MIN_SECRET_LEN
        {
            return Err(ConfigError(format!(
                "--key-encryption-secret (TANDEM_KEY_ENCRYPTION_SECRET) is shorter than {MIN_SECRET_LEN} characters"
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
        if self.instance_id.is_empty() {
            format!("tandem-{}", self.node_id)
        } else {
            self.instance_id.clone()
        }
    }

    /// The addresses this node asks clients and peers to use.
    pub fn advertised(&self) -> NodeEntry {
        let line = self.this_node();
        NodeEntry {
            id: line.id,
            raft_addr: if self.cluster_addr.is_empty() {
                line.raft_addr.clone()
            } else {
                self.cluster_addr.clone()
            },
            api_addr: if self.api_addr.is_empty() {
                line.api_addr.clone()
            } else {
                self.api_addr.clone()
            },
        }
    }

    pub fn this_node(&self) -> &NodeEntry {
        // `validate` has checked that the id is in the list.
        self.nodes.get(self.node_id).unwrap_or(&self.nodes.0[0])
    }
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
    use super::*;

    fn args(nodes: &str, id: u64) -> ServerArgs {
        ServerArgs {
            nodes: Some(nodes.parse().unwrap()),
            node_id: Some(id),
            secret_raft: Some("0123456789abcdef".into()),
            secret_api: Some("0123456789abcdef".into()),
            ..Default::default()
        }
    }

    const THREE: &str =
        "1 127.0.0.1:8101 127.0.0.1:8201\n2 127.0.0.1:8102 127.0.0.1:8202\n3 h3:8103 h3:8203";

    #[test]
    fn node_list_parses_lines_and_semicolons() {
        let list: NodeList = THREE.parse().unwrap();
        assert_eq!(list.ids(), vec![1, 2, 3]);
        assert_eq!(list.get(3).unwrap().api_addr, "h3:8203");
        let one_line: NodeList = THREE.replace('\n', ";").parse().unwrap();
        assert_eq!(one_line, list);
    }

    #[test]
    fn node_list_errors_name_the_problem() {
        let dup = "1 a:1 a:2\n1 b:1 b:2".parse::<NodeList>().unwrap_err();
        assert!(dup.contains("appears twice"), "{dup}");
        let short = "1 a:1".parse::<NodeList>().unwrap_err();
        assert!(
            short.contains("line 1") && short.contains("2 field"),
            "{short}"
        );
        let bad_id = "x a:1 a:2".parse::<NodeList>().unwrap_err();
        assert!(bad_id.contains("\"x\""), "{bad_id}");
        let bad_addr = "1 nohost a:2".parse::<NodeList>().unwrap_err();
        assert!(bad_addr.contains("raft address"), "{bad_addr}");
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
    }

    #[test]
    fn flags_beat_the_file_and_the_file_beats_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tandem.toml");
        std::fs::write(
            &path,
            "heartbeat_ms = 40\nelection_timeout_min_ms = 250\nsnapshot_every = 7\n",
        )
        .unwrap();
        let a = ServerArgs {
            config: Some(path),
            snapshot_every: Some(9),
            ..Default::default()
        };
        let s = Settings::load(&a).unwrap();
        assert_eq!(s.heartbeat_ms, 40);
        assert_eq!(s.election_timeout_min_ms, 250);
        assert_eq!(s.snapshot_every, 9);
        assert_eq!(s.election_timeout_max_ms, 400);
    }

    #[test]
    fn unknown_file_keys_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tandem.toml");
        std::fs::write(&path, "hearbeat_ms = 50\n").unwrap();
        let err = Settings::load(&ServerArgs {
            config: Some(path),
            ..Default::default()
        })
        .unwrap_err();
        assert!(err.0.contains("hearbeat_ms"), "{}", err.0);
    }

    #[test]
    fn k8s_hostname_gives_ordinal_plus_one() {
        let mut s = Settings::load(&args(THREE, 1)).unwrap();
        s.node_id_from = "k8s".into();
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
    fn every_setting_has_an_env_var() {
        for (key, env, _, help) in Settings::catalogue() {
            assert_eq!(env, format!("TANDEM_{}", key.to_uppercase()));
            assert!(!help.is_empty());
        }
    }
}
