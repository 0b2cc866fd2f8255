//! The agent's settings, each declared once: a flag, a `TANDEM_AGENT_*` variable and a key of
//! the `[agent]` table of the file given with `--config`. Lists (servers, labels, checks) may be
//! given by repeating the flag; their variables separate items with commas, or with lines for
//! checks, whose commands may hold commas.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use ipnet::IpNet;
use tandem_mesh::ingress::ForwardSpec;
use tandem_mesh::runtime::{DnsServer, MeshConfig, MeshConfigError};
use tandem_mesh::transport::{Backoff, BackoffError};
use tandem_mesh::{DomainPattern, TableConfig, DEFAULT_WEIGHT};
use tandem_registry::{
    check_name, CheckKind, MeshMembership, DEFAULT_MESH, MAX_CHECKS, MAX_FIELD_LEN,
};
use tandem_settings::{settings, ConfigError, Span};

/// A label of the agent, `key=value`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Label {
    pub key: String,
    pub value: String,
}

impl FromStr for Label {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        match text.trim().split_once('=') {
            Some((key, value)) if !key.trim().is_empty() => Ok(Label {
                key: key.trim().to_string(),
                value: value.trim().to_string(),
            }),
            _ => Err(format!("label {text:?} is not key=value, like region=eu")),
        }
    }
}

impl<'de> serde::Deserialize<'de> for Label {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

/// A health check as declared: `http:URL`, `tcp:HOST:PORT` or `exec:COMMAND` as text (`--check`),
/// or in the file a table such as `{http = "http://127.0.0.1:9000/ready", interval = "5s",
/// timeout = "2s"}`. Without its own interval or timeout it runs with `--check-interval` and
/// `--check-timeout`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckSpec {
    pub kind: CheckKind,
    pub target: String,
    pub interval: Option<Span>,
    pub timeout: Option<Span>,
}

fn kind_word(kind: CheckKind) -> &'static str {
    match kind {
        CheckKind::Http => "http",
        CheckKind::Tcp => "tcp",
        CheckKind::Exec => "exec",
    }
}

impl CheckSpec {
    pub fn new(kind: CheckKind, target: &str) -> CheckSpec {
        CheckSpec {
            kind,
            target: target.trim().to_string(),
            interval: None,
            timeout: None,
        }
    }

    /// The check's name in reports: `http:<url>`, `tcp:<addr>` or `exec:<command>`, cut to the
    /// registry's field limit.
    pub fn name(&self) -> String {
        let mut name = format!("{}:{}", kind_word(self.kind), self.target);
        tandem_registry::truncate_output(&mut name, MAX_FIELD_LEN);
        name
    }

    /// Refuses a target of the wrong shape, an interval under 100ms or a zero timeout.
    fn check(&self) -> Result<(), String> {
        self.check_target()?;
        if self.interval.is_some_and(|i| i.0 < MIN_INTERVAL)
            || self.timeout.is_some_and(|t| t.0.is_zero())
        {
            return Err(format!(
                "check {self}: its interval must be at least 100ms and its timeout above 0"
            ));
        }
        Ok(())
    }

    fn check_target(&self) -> Result<(), String> {
        match self.kind {
            CheckKind::Http => match reqwest::Url::parse(&self.target) {
                Ok(url) if matches!(url.scheme(), "http" | "https") && url.has_host() => Ok(()),
                _ => Err(format!(
                    "http check {:?} is not an http:// or https:// URL",
                    self.target
                )),
            },
            CheckKind::Tcp => {
                if is_host_port(&self.target) {
                    Ok(())
                } else {
                    Err(format!("tcp check {:?} is not host:port", self.target))
                }
            }
            CheckKind::Exec if self.target.is_empty() => {
                Err("an exec check has an empty command".into())
            }
            CheckKind::Exec => Ok(()),
        }
    }
}

impl fmt::Display for CheckSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", kind_word(self.kind), self.target)
    }
}

impl FromStr for CheckSpec {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let (kind, target) = text.trim().split_once(':').unwrap_or((text.trim(), ""));
        let kind = match kind {
            "http" => CheckKind::Http,
            "tcp" => CheckKind::Tcp,
            "exec" => CheckKind::Exec,
            _ => {
                return Err(format!(
                    "check {text:?} is not http:URL, tcp:HOST:PORT or exec:COMMAND"
                ))
            }
        };
        Ok(CheckSpec::new(kind, target))
    }
}

impl<'de> serde::Deserialize<'de> for CheckSpec {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Table {
            http: Option<String>,
            tcp: Option<String>,
            exec: Option<String>,
            interval: Option<Span>,
            timeout: Option<Span>,
        }
        #[derive(serde::Deserialize)]
        #[serde(untagged)]
        enum Given {
            Text(String),
            Table(Table),
        }
        let table = match Given::deserialize(d).map_err(|_| {
            serde::de::Error::custom(
                "a check is a table with one of http, tcp or exec (and optionally interval and timeout), or text like \"tcp:127.0.0.1:5432\"",
            )
        })? {
            Given::Text(text) => return text.parse().map_err(serde::de::Error::custom),
            Given::Table(table) => table,
        };
        let mut kinds = [
            (CheckKind::Http, table.http),
            (CheckKind::Tcp, table.tcp),
            (CheckKind::Exec, table.exec),
        ]
        .into_iter()
        .filter_map(|(kind, target)| Some((kind, target?)));
        match (kinds.next(), kinds.next()) {
            (Some((kind, target)), None) => Ok(CheckSpec {
                interval: table.interval,
                timeout: table.timeout,
                ..CheckSpec::new(kind, &target)
            }),
            _ => Err(serde::de::Error::custom(
                "a check table needs exactly one of http, tcp or exec",
            )),
        }
    }
}

/// A mesh peer to dial: `host:port` as text (`--mesh-peer transit-a:4433`), or in the file a
/// table `{address = "transit-a:4433"}`; or `auto`: the other registered agents of this
/// agent's mesh, as the servers list them (`--mesh-peer auto`, `mesh_peers = "auto"`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MeshPeer {
    Address(String),
    Auto,
}

impl FromStr for MeshPeer {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let address = text.trim();
        if address.eq_ignore_ascii_case("auto") {
            return Ok(MeshPeer::Auto);
        }
        if tandem_mesh::runtime::config::split_host_port(address).is_none() {
            return Err(format!(
                "mesh peer {address:?} is not host:port, like transit-a:4433, or auto"
            ));
        }
        Ok(MeshPeer::Address(address.to_string()))
    }
}

impl<'de> serde::Deserialize<'de> for MeshPeer {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Table {
            address: String,
        }
        #[derive(serde::Deserialize)]
        #[serde(untagged)]
        enum Given {
            Text(String),
            Table(Table),
        }
        let address = match Given::deserialize(d).map_err(|_| {
            serde::de::Error::custom(
                "a mesh peer is a table {address = \"host:port\"}, text like \"transit-a:4433\", or \"auto\"",
            )
        })? {
            Given::Text(text) => text,
            Given::Table(table) => table.address,
        };
        address.parse().map_err(serde::de::Error::custom)
    }
}

/// `host:port` with a port number and a host that is not empty.
pub fn is_host_port(text: &str) -> bool {
    text.parse::<std::net::SocketAddr>().is_ok()
        || text
            .rsplit_once(':')
            .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok())
}

settings! {
    /// `tandem agent` flags. Every flag is also a TANDEM_AGENT_* environment variable and a key
    /// of the [agent] table of the TOML file given with `--config`.
    args AgentArgs, file AgentFileSettings, settings AgentSettings,
    config_env "TANDEM_AGENT_CONFIG",
    config_help "TOML file with settings, in the table [agent] (see docs/agents.md)";
    /// Servers to talk to, host:port, comma-separated; needed on the first start, later the agent also knows the servers it was told of
    servers: Vec<String> = Vec::new(), file "agent.servers", shown "the servers known from the last start", env "TANDEM_AGENT_SERVERS", split ',';
    /// PEM file of the CA the servers' API certificates chain to (`tandem cluster ca` prints it); with it, the servers are reached over HTTPS
    ca_file: PathBuf, file "agent.ca_file", shown "unset: plain HTTP", env "TANDEM_AGENT_CA_FILE";
    /// The pool this agent serves in; the join token must be for this pool
    pool: String, file "agent.pool", shown "the join token's pool", env "TANDEM_AGENT_POOL";
    /// Join token, traded on the first start for this agent's own credential (later starts do not need it)
    join_token: String, file "agent.join_token", shown "unset", env "TANDEM_AGENT_JOIN_TOKEN";
    /// Address clients use to reach this agent's service, host:port
    address: String, file "agent.address", shown "required", env "TANDEM_AGENT_ADDRESS";
    /// A label, key=value (repeat the flag for more; the variable separates them with commas)
    label: Vec<Label> = Vec::new(), file "agent.labels", shown "none", env "TANDEM_AGENT_LABELS", split ',';
    /// This agent's name in the registry
    name: String, file "agent.name", shown "the hostname", env "TANDEM_AGENT_NAME";
    /// Folder for the agent's credential and the servers it knows
    data_dir: PathBuf = PathBuf::from("./tandem-agent-data"), file "agent.data_dir", shown "./tandem-agent-data", env "TANDEM_AGENT_DATA_DIR";
    /// Address of the agent's own HTTP endpoint (/health, /healthz, /load, /drain)
    health_listen: String = "127.0.0.1:8080".into(), file "agent.health_listen", shown "127.0.0.1:8080", env "TANDEM_AGENT_HEALTH_LISTEN";
    /// HTTP check: a GET of this URL; 2xx is passing, 429 warning, anything else critical (repeatable; the variable takes one URL a line)
    check_http: Vec<String> = Vec::new(), file "agent.check_http", shown "none", env "TANDEM_AGENT_CHECK_HTTP", split '\n';
    /// TCP check: a connection to this host:port; passing when it opens in time (repeatable; the variable takes one address a line)
    check_tcp: Vec<String> = Vec::new(), file "agent.check_tcp", shown "none", env "TANDEM_AGENT_CHECK_TCP", split '\n';
    /// Exec check: `sh -c` this command; exit 0 is passing, 1 warning, anything else critical (repeatable; the variable takes one command a line)
    check_exec: Vec<String> = Vec::new(), file "agent.check_exec", shown "none", env "TANDEM_AGENT_CHECK_EXEC", split '\n';
    /// A check of any kind, http:URL, tcp:HOST:PORT or exec:COMMAND; in the file a table like {http = "...", interval = "5s", timeout = "2s"} (repeatable; the variable takes one a line)
    check: Vec<CheckSpec> = Vec::new(), file "agent.checks", shown "none", env "TANDEM_AGENT_CHECKS", split '\n';
    /// How often each check runs, unless it has its own interval
    check_interval: Span = Span::secs(1), file "agent.check_interval", shown "1s", env "TANDEM_AGENT_CHECK_INTERVAL";
    /// How long a check may take before it counts as critical, unless it has its own timeout
    check_timeout: Span = Span::secs(1), file "agent.check_timeout", shown "1s", env "TANDEM_AGENT_CHECK_TIMEOUT";
    /// How often the agent reports to the servers (its heartbeat); a check that changes is reported at once
    report_interval: Span = Span::secs(1), file "agent.report_interval", shown "1s", env "TANDEM_AGENT_REPORT_INTERVAL";
    /// Command whose output, a number, is the agent's load
    load_command: String, file "agent.load_command", shown "unset: the 1-minute load average per core", env "TANDEM_AGENT_LOAD_COMMAND";
    /// Log filter, as RUST_LOG spells it
    log_level: String = "info".into(), file "agent.log_level", shown "info", env "TANDEM_AGENT_LOG_LEVEL";
    /// UDP address the mesh listens on for peers (QUIC, mutual TLS with the agent credential), e.g. 0.0.0.0:4433; the mesh settings below need it
    mesh_listen: SocketAddr, file "agent.mesh_listen", shown "unset: the mesh is off", env "TANDEM_AGENT_MESH_LISTEN";
    /// A mesh peer to dial and keep dialing, host:port, or auto: the other registered agents of this agent's mesh, as the servers list them; in the file a table {address = "transit-a:4433"} or "auto" (repeatable; the variable separates them with commas)
    mesh_peer: Vec<MeshPeer> = Vec::new(), file "agent.mesh_peers", shown "none", env "TANDEM_AGENT_MESH_PEERS", split ',';
    /// The mesh this agent is in: agents with --mesh-peer auto peer with the registered agents of the same mesh
    mesh_name: String, file "agent.mesh_name", shown "default", env "TANDEM_AGENT_MESH_NAME";
    /// Where other agents reach this agent's mesh, host:port, as registered with the servers for --mesh-peer auto
    mesh_advertise: String, file "agent.mesh_advertise", shown "the host of --address with the port of --mesh-listen", env "TANDEM_AGENT_MESH_ADVERTISE";
    /// Address of a SOCKS5 proxy (CONNECT) into the mesh, e.g. 127.0.0.1:1080; without --socks5-username/--socks5-password or --socks5-tokens it asks no authentication
    socks5_listen: SocketAddr, file "agent.socks5_listen", shown "unset: no SOCKS5", env "TANDEM_AGENT_SOCKS5_LISTEN";
    /// The user name SOCKS5 clients must give (RFC 1929); with --socks5-password, and only then, clients must authenticate
    socks5_username: String, file "agent.socks5_username", shown "unset: no authentication", env "TANDEM_AGENT_SOCKS5_USERNAME";
    /// The password SOCKS5 clients must give with --socks5-username
    socks5_password: String, file "agent.socks5_password", shown "unset", env "TANDEM_AGENT_SOCKS5_PASSWORD";
    /// Accept tokens the cluster issued with the claim "socks5": true, or a list naming this agent or "pool:<its pool>": the token up to its first dot as the user name, the rest as the password (with or without --socks5-username)
    socks5_tokens: bool = false, file "agent.socks5_tokens", shown "false", env "TANDEM_AGENT_SOCKS5_TOKENS";
    /// A port-forward into the mesh, LISTEN=HOST:PORT; in the file a table {listen = "127.0.0.1:5432", to = "db.internal:5432"} (repeatable; the variable separates them with commas)
    forward: Vec<ForwardSpec> = Vec::new(), file "agent.forwards", shown "none", env "TANDEM_AGENT_FORWARDS", split ',';
    /// A CIDR this agent exits to and advertises in the mesh (repeatable; the variable separates them with commas)
    exit_route: Vec<IpNet> = Vec::new(), file "agent.exit_routes", shown "none", env "TANDEM_AGENT_EXIT_ROUTES", split ',';
    /// A domain pattern this agent exits to and advertises, db.internal.example or *.internal.example; resolved here, with the system resolver unless --exit-dns is given (repeatable; the variable separates them with commas)
    exit_domain: Vec<String> = Vec::new(), file "agent.exit_domains", shown "none", env "TANDEM_AGENT_EXIT_DOMAINS", split ',';
    /// The weight of this agent's exit routes; a higher weight is preferred (primary and backup exits)
    exit_weight: u32 = DEFAULT_WEIGHT, file "agent.exit_weight", shown "100", env "TANDEM_AGENT_EXIT_WEIGHT";
    /// A DNS server this exit resolves destination names with, IP or IP:PORT, instead of the system resolver (repeatable; the variable separates them with commas)
    exit_dns: Vec<DnsServer> = Vec::new(), file "agent.exit_dns", shown "none: the system resolver", env "TANDEM_AGENT_EXIT_DNS", split ',';
    /// An upstream probe, http:URL, tcp:HOST:PORT or exec:COMMAND as for --check (in the file also a table with interval and timeout): while it fails, this exit withdraws its routes
    exit_probe: CheckSpec, file "agent.exit_probe", shown "none", env "TANDEM_AGENT_EXIT_PROBE";
    /// How long a recovered mesh path must stay up before traffic moves back to it
    mesh_hold_down: Span = Span::secs(5), file "agent.mesh_hold_down", shown "5s", env "TANDEM_AGENT_MESH_HOLD_DOWN";
    /// The longest mesh path accepted, in agents
    mesh_max_hops: usize = 8, file "agent.mesh_max_hops", shown "8", env "TANDEM_AGENT_MESH_MAX_HOPS";
    /// How long peers keep this agent's routes without a refresh (the backstop; withdrawals are sent at once)
    mesh_route_ttl: Span = Span::secs(90), file "agent.mesh_route_ttl", shown "90s", env "TANDEM_AGENT_MESH_ROUTE_TTL";
    /// How often this agent re-advertises its exit routes; at most half of mesh_route_ttl
    mesh_advertise_interval: Span = Span::secs(30), file "agent.mesh_advertise_interval", shown "30s", env "TANDEM_AGENT_MESH_ADVERTISE_INTERVAL";
    /// How long to wait before dialing a lost mesh peer again the first time
    mesh_reconnect_initial_delay: Span = Span::secs(1), file "agent.mesh_reconnect_initial_delay", shown "1s", env "TANDEM_AGENT_MESH_RECONNECT_INITIAL_DELAY";
    /// The longest wait between two dials of a lost mesh peer
    mesh_reconnect_max_delay: Span = Span::secs(60), file "agent.mesh_reconnect_max_delay", shown "60s", env "TANDEM_AGENT_MESH_RECONNECT_MAX_DELAY";
    /// What the wait is multiplied by after each failed dial (at least 1)
    mesh_reconnect_multiplier: f64 = 2.0, file "agent.mesh_reconnect_multiplier", shown "2", env "TANDEM_AGENT_MESH_RECONNECT_MULTIPLIER";
    /// How far each wait is spread at random, as a fraction (0 to 1), so that agents do not dial in lockstep
    mesh_reconnect_jitter: f64 = 0.2, file "agent.mesh_reconnect_jitter", shown "0.2", env "TANDEM_AGENT_MESH_RECONNECT_JITTER";
    /// How many times a lost mesh peer is dialed again before giving up; 0 is forever
    mesh_reconnect_max_retries: u32 = 0, file "agent.mesh_reconnect_max_retries", shown "0 (forever)", env "TANDEM_AGENT_MESH_RECONNECT_MAX_RETRIES";
}

/// The shortest check or report interval accepted.
const MIN_INTERVAL: Duration = Duration::from_millis(100);

impl AgentSettings {
    /// Merges flags and environment (already in `args`) with the config file and defaults, and
    /// checks the result.
    pub fn load(args: &AgentArgs) -> Result<AgentSettings, ConfigError> {
        let file = AgentFileSettings::read(args.config.as_deref())?;
        AgentSettings::settle(
            args.clone(),
            file,
            &|name| std::env::var(name).ok(),
            &hostname,
        )
    }

    /// `env` reads an environment variable and `hostname` the machine's name: the process's in
    /// [`AgentSettings::load`], stand-ins in tests.
    fn settle(
        args: AgentArgs,
        file: AgentFileSettings,
        env: &dyn Fn(&str) -> Option<String>,
        hostname: &dyn Fn() -> Option<String>,
    ) -> Result<AgentSettings, ConfigError> {
        let mut settings = AgentSettings::merge(args, file, env)?;
        tandem_settings::unset_blanks([
            &mut settings.pool,
            &mut settings.join_token,
            &mut settings.address,
            &mut settings.name,
            &mut settings.load_command,
            &mut settings.mesh_name,
            &mut settings.mesh_advertise,
        ]);
        if settings.name.is_none() {
            settings.name = Some(hostname().ok_or_else(|| {
                ConfigError(
                    "the hostname cannot be read to name this agent; give --name (or TANDEM_AGENT_NAME)"
                        .into(),
                )
            })?);
        }
        settings.validate()?;
        Ok(settings)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let Some(address) = &self.address else {
            return Err(ConfigError(
                "--address (TANDEM_AGENT_ADDRESS) is required: the host:port clients use to reach this agent's service".into(),
            ));
        };
        if !is_host_port(address) || address.len() > MAX_FIELD_LEN {
            return Err(ConfigError(format!(
                "--address {address:?} is not host:port"
            )));
        }
        check_name("agent name", self.name())
            .map_err(|e| ConfigError(format!("{e}; give --name")))?;
        if let Some(pool) = &self.pool {
            check_name("pool", pool).map_err(ConfigError)?;
        }
        if let Some(server) = self.servers.iter().find(|s| {
            let bare = s.trim_start_matches("http://").trim_end_matches('/');
            !is_host_port(bare)
        }) {
            return Err(ConfigError(format!(
                "server {server:?} in --servers is not host:port"
            )));
        }
        self.labels()?;
        for (name, span) in [
            ("check_interval", self.check_interval),
            ("report_interval", self.report_interval),
        ] {
            if span.0 < MIN_INTERVAL {
                return Err(ConfigError(format!(
                    "{name} ({span}) must be at least 100ms"
                )));
            }
        }
        if self.check_timeout.0.is_zero() {
            return Err(ConfigError("check_timeout must be above 0".into()));
        }
        let checks = self.checks();
        if checks.len() > MAX_CHECKS {
            return Err(ConfigError(format!(
                "{} checks declared; an agent may have at most {MAX_CHECKS}",
                checks.len()
            )));
        }
        let mut names = std::collections::BTreeSet::new();
        for check in &checks {
            check.check().map_err(ConfigError)?;
            if !names.insert(check.name()) {
                return Err(ConfigError(format!(
                    "check {:?} is declared twice",
                    check.name()
                )));
            }
        }
        self.validate_mesh()
    }

    fn validate_mesh(&self) -> Result<(), ConfigError> {
        if self.socks5_username.is_some() != self.socks5_password.is_some() {
            return Err(ConfigError(
                "give --socks5-username and --socks5-password together, or neither".into(),
            ));
        }
        if self.socks5_username.is_some() && self.socks5_listen.is_none() {
            return Err(ConfigError(
                "--socks5-username needs --socks5-listen: there is no SOCKS5 proxy to protect"
                    .into(),
            ));
        }
        if self.socks5_tokens && self.socks5_listen.is_none() {
            return Err(ConfigError(
                "--socks5-tokens needs --socks5-listen: there is no SOCKS5 proxy to protect".into(),
            ));
        }
        let exit = !self.exit_route.is_empty() || !self.exit_domain.is_empty();
        for (flag, given) in [
            ("--exit-dns", !self.exit_dns.is_empty()),
            ("--exit-probe", self.exit_probe.is_some()),
        ] {
            if given && !exit {
                return Err(ConfigError(format!(
                    "{flag} is for an exit: give --exit-route or --exit-domain too"
                )));
            }
        }
        if let Some(probe) = self.exit_probe() {
            probe
                .check()
                .map_err(|e| ConfigError(format!("--exit-probe: {e}")))?;
        }
        if self.mesh_listen.is_none() {
            let given = [
                ("--mesh-peer", !self.mesh_peer.is_empty()),
                ("--mesh-name", self.mesh_name.is_some()),
                ("--mesh-advertise", self.mesh_advertise.is_some()),
                ("--socks5-listen", self.socks5_listen.is_some()),
                ("--socks5-username", self.socks5_username.is_some()),
                ("--forward", !self.forward.is_empty()),
                ("--exit-route", !self.exit_route.is_empty()),
                ("--exit-domain", !self.exit_domain.is_empty()),
            ];
            if let Some((flag, _)) = given.iter().find(|(_, given)| *given) {
                return Err(ConfigError(format!(
                    "{flag} needs the mesh: give --mesh-listen (e.g. 0.0.0.0:4433)"
                )));
            }
            return Ok(());
        }
        if let Some(mesh) = &self.mesh_name {
            check_name("mesh name", mesh)
                .map_err(|e| ConfigError(format!("{e}; give --mesh-name")))?;
        }
        if let Some(advertise) = &self.mesh_advertise {
            if tandem_mesh::runtime::config::split_host_port(advertise).is_none()
                || advertise.len() > MAX_FIELD_LEN
            {
                return Err(ConfigError(format!(
                    "--mesh-advertise {advertise:?} is not host:port, like 203.0.113.7:4433"
                )));
            }
        }
        let mut listens = std::collections::BTreeSet::new();
        for listen in self
            .socks5_listen
            .iter()
            .chain(self.forward.iter().map(|f| &f.listen))
        {
            if !listens.insert(*listen) {
                return Err(ConfigError(format!(
                    "{listen} is given twice among --socks5-listen and --forward; each needs its own port"
                )));
            }
        }
        if let Some(config) = self.mesh_config()? {
            config.check().map_err(|e| match e {
                MeshConfigError::Reconnect(e) => {
                    let flags = match e {
                        BackoffError::Multiplier(_) => "--mesh-reconnect-multiplier",
                        BackoffError::Jitter(_) => "--mesh-reconnect-jitter",
                        BackoffError::Delays { .. } => {
                            "--mesh-reconnect-initial-delay, --mesh-reconnect-max-delay"
                        }
                    };
                    ConfigError(format!("{flags}: {e}"))
                }
                e => ConfigError(format!("mesh: {e}")),
            })?;
        }
        Ok(())
    }

    /// The exit domain patterns, checked.
    pub fn exit_domains(&self) -> Result<Vec<DomainPattern>, ConfigError> {
        self.exit_domain
            .iter()
            .map(|d| {
                DomainPattern::parse(d.trim())
                    .map_err(|e| ConfigError(format!("--exit-domain: {e}")))
            })
            .collect()
    }

    /// The mesh runtime's settings; `None` when the mesh is off (no `--mesh-listen`).
    pub fn mesh_config(&self) -> Result<Option<MeshConfig>, ConfigError> {
        let Some(listen) = self.mesh_listen else {
            return Ok(None);
        };
        let mut config = MeshConfig::new(listen);
        config.peers = self
            .mesh_peer
            .iter()
            .filter_map(|peer| match peer {
                MeshPeer::Address(address) => Some(address.clone()),
                MeshPeer::Auto => None,
            })
            .collect();
        config.exit_routes = self.exit_route.iter().map(IpNet::trunc).collect();
        config.exit_domains = self.exit_domains()?;
        config.exit_weight = self.exit_weight;
        config.table = TableConfig {
            max_hops: self.mesh_max_hops,
            hold_down_ms: self.mesh_hold_down.as_millis(),
            route_ttl_ms: self.mesh_route_ttl.as_millis(),
        };
        config.advertise_interval = self.mesh_advertise_interval.0;
        config.exit_dns = self.exit_dns.clone();
        config.reconnect = Backoff {
            initial_delay: self.mesh_reconnect_initial_delay.0,
            max_delay: self.mesh_reconnect_max_delay.0,
            multiplier: self.mesh_reconnect_multiplier,
            jitter: self.mesh_reconnect_jitter,
            max_retries: self.mesh_reconnect_max_retries,
        };
        config.ingress = self.socks5_listen.is_some() || !self.forward.is_empty();
        Ok(Some(config))
    }

    /// Whether the agent learns its mesh peers from the servers (`--mesh-peer auto`).
    pub fn mesh_peers_auto(&self) -> bool {
        self.mesh_peer.contains(&MeshPeer::Auto)
    }

    /// The mesh this agent is in.
    pub fn mesh_name(&self) -> &str {
        self.mesh_name.as_deref().unwrap_or(DEFAULT_MESH)
    }

    /// What the agent registers of its mesh, once it listens on `mesh_port`: its mesh name and
    /// `--mesh-advertise`, else the host of `--address` with the mesh's port. `None` without
    /// a mesh.
    pub fn mesh_membership(&self, mesh_port: u16) -> Option<MeshMembership> {
        self.mesh_listen?;
        let address = match &self.mesh_advertise {
            Some(advertise) => advertise.clone(),
            None => {
                let given = self.address.as_deref().unwrap_or_default();
                let host = tandem_mesh::runtime::config::split_host_port(given)
                    .map_or(given, |(host, _)| host);
                if host.contains(':') {
                    format!("[{host}]:{mesh_port}")
                } else {
                    format!("{host}:{mesh_port}")
                }
            }
        };
        Some(MeshMembership {
            mesh: self.mesh_name().to_string(),
            address,
        })
    }

    /// The agent's name (the hostname unless given).
    pub fn name(&self) -> &str {
        // `settle` always sets it.
        self.name.as_deref().unwrap_or_default()
    }

    /// The labels as a map; a key given twice is an error.
    pub fn labels(&self) -> Result<BTreeMap<String, String>, ConfigError> {
        let mut labels = BTreeMap::new();
        for label in &self.label {
            if labels
                .insert(label.key.clone(), label.value.clone())
                .is_some()
            {
                return Err(ConfigError(format!("label {:?} is given twice", label.key)));
            }
        }
        Ok(labels)
    }

    /// Every check, from the `--check-*` flags and the `checks` table alike, each with its
    /// interval and timeout filled in.
    pub fn checks(&self) -> Vec<CheckSpec> {
        let of_kind = |kind, targets: &Vec<String>| {
            targets
                .iter()
                .map(move |target| CheckSpec::new(kind, target))
                .collect::<Vec<_>>()
        };
        of_kind(CheckKind::Http, &self.check_http)
            .into_iter()
            .chain(of_kind(CheckKind::Tcp, &self.check_tcp))
            .chain(of_kind(CheckKind::Exec, &self.check_exec))
            .chain(self.check.iter().cloned())
            .map(|check| self.timed(check))
            .collect()
    }

    /// The exit's upstream probe, with its interval and timeout filled in.
    pub fn exit_probe(&self) -> Option<CheckSpec> {
        self.exit_probe.clone().map(|probe| self.timed(probe))
    }

    /// A check with `--check-interval` and `--check-timeout` where it has none of its own.
    fn timed(&self, check: CheckSpec) -> CheckSpec {
        CheckSpec {
            interval: Some(check.interval.unwrap_or(self.check_interval)),
            timeout: Some(check.timeout.unwrap_or(self.check_timeout)),
            ..check
        }
    }
}

/// The machine's name: /proc/sys/kernel/hostname, else `HOSTNAME`.
fn hostname() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok().filter(|h| !h.is_empty()))
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        agent: AgentArgs,
    }

    fn settle(args: AgentArgs, file: AgentFileSettings) -> Result<AgentSettings, String> {
        AgentSettings::settle(args, file, &|_| None, &|| Some("gw-host".into())).map_err(|e| e.0)
    }

    fn from_flags(flags: &[&str]) -> Result<AgentSettings, String> {
        let cli = Cli::try_parse_from(std::iter::once("tandem").chain(flags.iter().copied()))
            .map_err(|e| e.to_string())?;
        settle(cli.agent, AgentFileSettings::default())
    }

    fn from_file(text: &str) -> Result<AgentSettings, String> {
        let file = AgentFileSettings::parse(text)?;
        settle(AgentArgs::default(), file)
    }

    #[test]
    fn every_agent_config_in_the_mesh_docs_loads() {
        let page = include_str!("../../../docs/mesh.md");
        let blocks: Vec<&str> = page
            .split("```toml\n")
            .skip(1)
            .filter_map(|rest| rest.split("```").next())
            .filter(|block| block.contains("[agent]"))
            .collect();
        assert!(
            blocks.len() >= 6,
            "the mesh page's configs: {}",
            blocks.len()
        );
        for block in blocks {
            let settings = from_file(block).unwrap_or_else(|e| panic!("{e}\nin:\n{block}"));
            assert!(
                settings.mesh_config().is_ok_and(|mesh| mesh.is_some()),
                "a mesh config without a working mesh:\n{block}"
            );
        }
    }

    /// What clap reads from an environment of `vars`. The variables are set in the process
    /// under names only this test reads (`TANDEM_SETTINGS_TEST_` before each), so that tests
    /// running at the same time see none of them.
    fn from_env(vars: &[(&str, &str)]) -> Result<AgentSettings, String> {
        const PREFIX: &str = "TANDEM_SETTINGS_TEST_";
        for (name, value) in vars {
            std::env::set_var(format!("{PREFIX}{name}"), value);
        }
        let command = <Cli as clap::CommandFactory>::command().mut_args(|arg| {
            match arg.get_env().and_then(|e| e.to_str()) {
                Some(name) => {
                    let renamed: &'static str =
                        Box::leak(format!("{PREFIX}{name}").into_boxed_str());
                    arg.env(renamed)
                }
                None => arg,
            }
        });
        let matches = command
            .try_get_matches_from(["tandem"])
            .map_err(|e| e.to_string())?;
        let cli =
            <Cli as clap::FromArgMatches>::from_arg_matches(&matches).map_err(|e| e.to_string())?;
        settle(cli.agent, AgentFileSettings::default())
    }

    #[test]
    fn flags_give_every_setting_and_repeat_for_lists() {
        let s = from_flags(&[
            "--servers",
            "10.0.0.1:8200,10.0.0.2:8200",
            "--servers",
            "10.0.0.3:8200",
            "--pool",
            "vpn",
            "--join-token",
            "tok",
            "--address",
            "203.0.113.7:51820",
            "--label",
            "region=eu",
            "--label",
            "tier=gold,zone=a",
            "--check-http",
            "http://127.0.0.1:9000/ready",
            "--check-exec",
            "test -e /tmp/a, or not",
            "--check-exec",
            "true",
            "--check-tcp",
            "127.0.0.1:5432",
            "--check-interval",
            "5s",
            "--report-interval",
            "500ms",
            "--load-command",
            "cat /tmp/load",
        ])
        .unwrap();
        assert_eq!(
            s.servers,
            vec!["10.0.0.1:8200", "10.0.0.2:8200", "10.0.0.3:8200"]
        );
        assert_eq!(s.pool.as_deref(), Some("vpn"));
        assert_eq!(s.name(), "gw-host");
        assert_eq!(s.data_dir, PathBuf::from("./tandem-agent-data"));
        assert_eq!(s.health_listen, "127.0.0.1:8080");
        let labels = s.labels().unwrap();
        assert_eq!(labels.len(), 3);
        assert_eq!(labels["zone"], "a");
        let checks = s.checks();
        let names: Vec<String> = checks.iter().map(CheckSpec::name).collect();
        assert_eq!(
            names,
            vec![
                "http:http://127.0.0.1:9000/ready",
                "tcp:127.0.0.1:5432",
                "exec:test -e /tmp/a, or not",
                "exec:true"
            ]
        );
        assert!(checks
            .iter()
            .all(|c| c.interval == Some(Span::secs(5)) && c.timeout == Some(Span::secs(1))));
        assert_eq!(s.report_interval, Span::millis(500));
        assert_eq!(s.load_command.as_deref(), Some("cat /tmp/load"));
    }

    #[test]
    fn environment_lists_split_on_commas_or_lines() {
        let s = from_env(&[
            ("TANDEM_AGENT_SERVERS", "a:8200,b:8200"),
            ("TANDEM_AGENT_ADDRESS", "10.0.0.7:80"),
            ("TANDEM_AGENT_LABELS", "region=eu,tier=gold"),
            ("TANDEM_AGENT_CHECK_EXEC", "echo a, b\nexit 1"),
            ("TANDEM_AGENT_CHECKS", "tcp:127.0.0.1:1\nhttp:http://x/"),
            ("TANDEM_AGENT_NAME", "gw-7"),
        ])
        .unwrap();
        assert_eq!(s.servers, vec!["a:8200", "b:8200"]);
        assert_eq!(s.labels().unwrap()["tier"], "gold");
        assert_eq!(s.name(), "gw-7");
        let names: Vec<String> = s.checks().iter().map(CheckSpec::name).collect();
        assert_eq!(
            names,
            vec![
                "exec:echo a, b",
                "exec:exit 1",
                "tcp:127.0.0.1:1",
                "http:http://x/"
            ]
        );
    }

    #[test]
    fn the_file_holds_an_agent_table_with_check_tables() {
        let s = from_file(
            r#"
            [agent]
            servers = ["10.0.0.1:8200", "10.0.0.2:8200"]
            pool = "vpn"
            address = "203.0.113.7:51820"
            labels = ["region=eu"]
            name = "gw-1"
            check_interval = "2s"
            checks = [
                {http = "http://127.0.0.1:9000/ready", interval = "5s", timeout = "2s"},
                {exec = "pg_isready -q"},
                "tcp:127.0.0.1:5432",
            ]
            "#,
        )
        .unwrap();
        assert_eq!(s.servers.len(), 2);
        assert_eq!(s.name(), "gw-1");
        let checks = s.checks();
        assert_eq!(checks.len(), 3);
        assert_eq!(checks[0].kind, CheckKind::Http);
        assert_eq!(checks[0].interval, Some(Span::secs(5)));
        assert_eq!(checks[0].timeout, Some(Span::secs(2)));
        assert_eq!(checks[1].name(), "exec:pg_isready -q");
        assert_eq!(checks[1].interval, Some(Span::secs(2)));
        assert_eq!(checks[2].kind, CheckKind::Tcp);

        let err = from_file(
            "[agent]\naddress = \"a:1\"\nchecks = [{http = \"http://x/\", tcp = \"a:1\"}]\n",
        )
        .unwrap_err();
        assert!(err.contains("exactly one of http, tcp or exec"), "{err}");
        let err = from_file("[agent]\nadress = \"a:1\"\n").unwrap_err();
        assert!(err.contains("unknown key `adress` in [agent]"), "{err}");
    }

    #[test]
    fn a_flag_beats_the_file() {
        let file =
            AgentFileSettings::parse("[agent]\naddress = \"a:1\"\nname = \"from-file\"\n").unwrap();
        let args = AgentArgs {
            name: Some("from-flag".into()),
            ..Default::default()
        };
        assert_eq!(settle(args, file).unwrap().name(), "from-flag");
    }

    #[test]
    fn bad_settings_name_what_is_wrong() {
        let err = from_flags(&[]).unwrap_err();
        assert!(
            err.starts_with("--address (TANDEM_AGENT_ADDRESS) is required"),
            "{err}"
        );
        let with = |extra: &[&str]| {
            let mut flags = vec!["--address", "10.0.0.7:80"];
            flags.extend_from_slice(extra);
            from_flags(&flags).unwrap_err()
        };
        assert!(with(&["--name", "bad/name"]).contains("give --name"));
        assert!(with(&["--label", "novalue"]).contains("key=value"));
        assert!(with(&["--label", "a=1", "--label", "a=2"]).contains("given twice"));
        assert!(with(&["--check-http", "ftp://x/"]).contains("not an http:// or https:// URL"));
        assert!(with(&["--check-tcp", "nohost"]).contains("not host:port"));
        assert!(with(&["--check-exec", "true", "--check-exec", "true"]).contains("declared twice"));
        assert!(with(&["--check", "ping:x"]).contains("http:URL, tcp:HOST:PORT or exec:COMMAND"));
        assert!(with(&["--report-interval", "10ms"]).contains("at least 100ms"));
        assert!(with(&["--servers", "a:1,nope"]).contains("\"nope\""));
        let err = AgentSettings::settle(
            AgentArgs {
                address: Some("a:1".into()),
                ..Default::default()
            },
            AgentFileSettings::default(),
            &|_| None,
            &|| None,
        )
        .unwrap_err();
        assert!(err.0.contains("give --name"), "{}", err.0);
    }

    #[test]
    fn long_check_names_are_cut() {
        let check = CheckSpec::new(CheckKind::Exec, &"x".repeat(1000));
        assert_eq!(check.name().len(), MAX_FIELD_LEN);
    }

    #[test]
    fn the_mesh_is_off_unless_mesh_listen_is_given() {
        let s = from_flags(&["--address", "10.0.0.7:80"]).unwrap();
        assert!(s.mesh_config().unwrap().is_none());
        assert!(s.socks5_listen.is_none());
    }

    #[test]
    fn mesh_flags_repeat_and_make_the_runtime_config() {
        let s = from_flags(&[
            "--address",
            "10.0.0.7:80",
            "--mesh-listen",
            "0.0.0.0:4433",
            "--mesh-peer",
            "transit-a:4433",
            "--mesh-peer",
            "transit-b:4433,[fd00::1]:4433",
            "--socks5-listen",
            "127.0.0.1:1080",
            "--forward",
            "127.0.0.1:5432=db.internal.example:5432",
            "--exit-route",
            "10.1.2.3/8",
            "--exit-route",
            "192.168.0.0/16",
            "--exit-domain",
            "*.internal.example",
            "--exit-weight",
            "200",
            "--mesh-hold-down",
            "2s",
            "--mesh-max-hops",
            "4",
            "--mesh-route-ttl",
            "60s",
            "--mesh-advertise-interval",
            "20s",
        ])
        .unwrap();
        let config = s.mesh_config().unwrap().expect("mesh on");
        assert_eq!(config.listen, "0.0.0.0:4433".parse().unwrap());
        assert_eq!(
            config.peers,
            ["transit-a:4433", "transit-b:4433", "[fd00::1]:4433"]
        );
        let exits: Vec<String> = config.exits().iter().map(|r| r.dest.to_string()).collect();
        assert_eq!(
            exits,
            ["10.0.0.0/8", "192.168.0.0/16", "*.internal.example"]
        );
        assert!(config.exits().iter().all(|r| r.weight == 200));
        assert_eq!(config.table.hold_down_ms, 2_000);
        assert_eq!(config.table.max_hops, 4);
        assert_eq!(config.table.route_ttl_ms, 60_000);
        assert_eq!(config.advertise_interval, Duration::from_secs(20));
        assert!(config.ingress);
        assert_eq!(s.forward[0].to.host(), "db.internal.example");
    }

    #[test]
    fn the_file_takes_mesh_peers_and_forwards_as_tables() {
        let s = from_file(
            r#"
            [agent]
            address = "10.0.0.7:80"
            mesh_listen = "0.0.0.0:4433"
            mesh_peers = [{address = "transit-a:4433"}, "transit-b:4433"]
            forwards = [{listen = "127.0.0.1:5432", to = "db.internal:5432"}, "127.0.0.1:6379=cache.internal:6379"]
            exit_routes = ["10.0.0.0/8"]
            exit_domains = ["*.internal.example"]
            "#,
        )
        .unwrap();
        let config = s.mesh_config().unwrap().expect("mesh on");
        assert_eq!(config.peers, ["transit-a:4433", "transit-b:4433"]);
        assert_eq!(s.forward.len(), 2);
        assert_eq!(s.forward[1].to.port(), 6379);
        assert!(config.roles().exit);
        let defaults = from_file("[agent]\naddress = \"a:1\"\nmesh_listen = \"0.0.0.0:4433\"\n")
            .unwrap()
            .mesh_config()
            .unwrap()
            .expect("mesh on");
        assert_eq!(defaults.table, TableConfig::default());
        assert_eq!(defaults.advertise_interval, Duration::from_secs(30));
        assert_eq!(defaults.exit_weight, DEFAULT_WEIGHT);
        assert!(defaults.roles().transit);
    }

    #[test]
    fn auto_peers_are_a_value_of_the_same_setting_in_every_spelling() {
        let flags = from_flags(&[
            "--address",
            "203.0.113.7:51820",
            "--mesh-listen",
            "0.0.0.0:4433",
            "--mesh-peer",
            "auto",
            "--mesh-peer",
            "transit-a:4433",
        ])
        .unwrap();
        assert!(flags.mesh_peers_auto());
        let config = flags.mesh_config().unwrap().expect("mesh on");
        assert_eq!(config.peers, ["transit-a:4433"]);
        let membership = flags.mesh_membership(4433).expect("a mesh");
        assert_eq!(membership.mesh, "default");
        assert_eq!(membership.address, "203.0.113.7:4433");

        let file = from_file(
            "[agent]\naddress = \"[fd00::7]:80\"\nmesh_listen = \"[::]:4433\"\nmesh_peers = \"auto\"\nmesh_name = \"lab\"\n",
        )
        .unwrap();
        assert!(file.mesh_peers_auto());
        let membership = file.mesh_membership(4500).expect("a mesh");
        assert_eq!(
            (membership.mesh.as_str(), membership.address.as_str()),
            ("lab", "[fd00::7]:4500")
        );

        let env = from_env(&[
            ("TANDEM_AGENT_ADDRESS", "10.0.0.7:80"),
            ("TANDEM_AGENT_MESH_LISTEN", "0.0.0.0:4433"),
            ("TANDEM_AGENT_MESH_PEERS", "auto"),
            ("TANDEM_AGENT_MESH_ADVERTISE", "gw-7.example:4433"),
        ])
        .unwrap();
        assert!(env.mesh_peers_auto());
        assert_eq!(env.mesh_membership(1).unwrap().address, "gw-7.example:4433");
        assert!(from_flags(&["--address", "a:1"])
            .unwrap()
            .mesh_membership(1)
            .is_none());
    }

    #[test]
    fn mesh_lists_come_from_the_environment_split_on_commas() {
        let s = from_env(&[
            ("TANDEM_AGENT_ADDRESS", "10.0.0.7:80"),
            ("TANDEM_AGENT_MESH_LISTEN", "0.0.0.0:4433"),
            ("TANDEM_AGENT_MESH_PEERS", "transit-a:4433,transit-b:4433"),
            ("TANDEM_AGENT_EXIT_ROUTES", "10.0.0.0/8,172.16.0.0/12"),
        ])
        .unwrap();
        let config = s.mesh_config().unwrap().expect("mesh on");
        assert_eq!(config.peers.len(), 2);
        assert_eq!(config.exit_routes.len(), 2);
    }

    #[test]
    fn bad_mesh_settings_name_what_is_wrong() {
        let with = |extra: &[&str]| {
            let mut flags = vec!["--address", "10.0.0.7:80"];
            flags.extend_from_slice(extra);
            from_flags(&flags).unwrap_err()
        };
        for flag in [
            &["--mesh-peer", "t:4433"][..],
            &["--socks5-listen", "127.0.0.1:1080"],
            &["--exit-route", "10.0.0.0/8"],
            &["--exit-domain", "a.example"],
            &["--forward", "127.0.0.1:1=a:1"],
        ] {
            let err = with(flag);
            assert!(err.contains("needs the mesh: give --mesh-listen"), "{err}");
        }
        let mesh = |extra: &[&str]| {
            let mut flags = vec!["--mesh-listen", "0.0.0.0:4433"];
            flags.extend_from_slice(extra);
            with(&flags)
        };
        assert!(mesh(&["--mesh-peer", "nohost"]).contains("not host:port"));
        assert!(with(&["--mesh-name", "lab"]).contains("needs the mesh"));
        assert!(mesh(&["--mesh-name", "bad/name"]).contains("--mesh-name"));
        assert!(mesh(&["--mesh-advertise", "4433"]).contains("--mesh-advertise"));
        let socks = ["--socks5-listen", "127.0.0.1:1080"];
        assert!(mesh(&[&socks[..], &["--socks5-username", "u"]].concat()).contains("together"));
        assert!(mesh(&["--socks5-username", "u", "--socks5-password", "p"])
            .contains("needs --socks5-listen"));
        assert!(mesh(&["--exit-route", "10.0.0.0/99"]).contains("--exit-route"));
        assert!(mesh(&["--exit-domain", "bad domain"]).contains("--exit-domain"));
        assert!(mesh(&["--forward", "nope"]).contains("LISTEN=HOST:PORT"));
        assert!(mesh(&["--mesh-max-hops", "0"]).contains("max_hops"));
        assert!(mesh(&["--mesh-advertise-interval", "60s"]).contains("advertise_interval"));
        assert!(mesh(&[
            "--socks5-listen",
            "127.0.0.1:1080",
            "--forward",
            "127.0.0.1:1080=a:1"
        ])
        .contains("given twice"));
        assert!(with(&["--mesh-listen", "4433"]).contains("mesh-listen"));
    }

    #[test]
    fn reconnect_dns_probe_and_token_settings_reach_the_runtime() {
        let s = from_flags(&[
            "--address",
            "10.0.0.7:80",
            "--mesh-listen",
            "0.0.0.0:4433",
            "--socks5-listen",
            "127.0.0.1:1080",
            "--socks5-tokens",
            "true",
            "--exit-route",
            "10.0.0.0/8",
            "--exit-dns",
            "10.0.0.2",
            "--exit-dns",
            "10.0.0.3:5353,[fd00::53]:53",
            "--exit-probe",
            "tcp:10.20.0.5:5432",
            "--check-interval",
            "2s",
            "--mesh-reconnect-initial-delay",
            "500ms",
            "--mesh-reconnect-max-delay",
            "10s",
            "--mesh-reconnect-multiplier",
            "1.5",
            "--mesh-reconnect-jitter",
            "0",
            "--mesh-reconnect-max-retries",
            "7",
        ])
        .unwrap();
        assert!(s.socks5_tokens);
        let probe = s.exit_probe().expect("a probe");
        assert_eq!(probe.name(), "tcp:10.20.0.5:5432");
        assert_eq!(probe.interval, Some(Span::secs(2)));
        let config = s.mesh_config().unwrap().expect("mesh on");
        let dns: Vec<String> = config.exit_dns.iter().map(ToString::to_string).collect();
        assert_eq!(dns, ["10.0.0.2:53", "10.0.0.3:5353", "[fd00::53]:53"]);
        assert_eq!(
            config.reconnect,
            Backoff {
                initial_delay: Duration::from_millis(500),
                max_delay: Duration::from_secs(10),
                multiplier: 1.5,
                jitter: 0.0,
                max_retries: 7,
            }
        );
        let defaults =
            from_file("[agent]\naddress = \"a:1\"\nmesh_listen = \"0.0.0.0:4433\"\n").unwrap();
        assert!(!defaults.socks5_tokens);
        let defaults = defaults.mesh_config().unwrap().expect("mesh on");
        assert_eq!(defaults.reconnect, Backoff::default());
        assert!(defaults.exit_dns.is_empty());

        let s = from_file(
            r#"
            [agent]
            address = "10.0.0.7:80"
            mesh_listen = "0.0.0.0:4433"
            socks5_listen = "127.0.0.1:1080"
            socks5_tokens = true
            exit_domains = ["*.internal.example"]
            exit_dns = ["10.0.0.2:5353"]
            exit_probe = {http = "http://10.20.0.5/ready", interval = "5s", timeout = "2s"}
            mesh_reconnect_multiplier = 3
            mesh_reconnect_max_delay = "2m"
            "#,
        )
        .unwrap();
        assert!(s.socks5_tokens);
        let probe = s.exit_probe().expect("a probe");
        assert_eq!(probe.kind, CheckKind::Http);
        assert_eq!(probe.timeout, Some(Span::secs(2)));
        let config = s.mesh_config().unwrap().expect("mesh on");
        assert_eq!(config.exit_dns[0].to_string(), "10.0.0.2:5353");
        assert_eq!(config.reconnect.multiplier, 3.0);
        assert_eq!(config.reconnect.max_delay, Duration::from_secs(120));

        let s = from_env(&[
            ("TANDEM_AGENT_ADDRESS", "10.0.0.7:80"),
            ("TANDEM_AGENT_MESH_LISTEN", "0.0.0.0:4433"),
            ("TANDEM_AGENT_EXIT_ROUTES", "10.0.0.0/8"),
            ("TANDEM_AGENT_EXIT_DNS", "10.0.0.2,10.0.0.3"),
            ("TANDEM_AGENT_EXIT_PROBE", "exec:pg_isready -q"),
            ("TANDEM_AGENT_MESH_RECONNECT_JITTER", "0.5"),
        ])
        .unwrap();
        assert_eq!(s.exit_dns.len(), 2);
        assert_eq!(s.exit_probe().expect("a probe").kind, CheckKind::Exec);
        assert_eq!(s.mesh_reconnect_jitter, 0.5);
    }

    #[test]
    fn bad_reconnect_dns_probe_and_token_settings_name_what_is_wrong() {
        let mesh = |extra: &[&str]| {
            let mut flags = vec!["--address", "10.0.0.7:80", "--mesh-listen", "0.0.0.0:4433"];
            flags.extend_from_slice(extra);
            from_flags(&flags).unwrap_err()
        };
        let exit = ["--exit-route", "10.0.0.0/8"];
        for (flags, expected) in [
            (
                &["--mesh-reconnect-multiplier", "0.5"][..],
                "--mesh-reconnect-multiplier: reconnect multiplier 0.5 must be at least 1",
            ),
            (
                &["--mesh-reconnect-jitter", "1.5"],
                "--mesh-reconnect-jitter: reconnect jitter 1.5 must be between 0 and 1",
            ),
            (
                &["--mesh-reconnect-initial-delay", "2m"],
                "--mesh-reconnect-initial-delay, --mesh-reconnect-max-delay: reconnect initial_delay 120s",
            ),
            (&["--mesh-reconnect-multiplier", "fast"], "invalid float"),
            (
                &["--socks5-tokens", "true"],
                "--socks5-tokens needs --socks5-listen",
            ),
            (&["--exit-dns", "10.0.0.2"], "--exit-dns is for an exit"),
            (&["--exit-probe", "tcp:a:1"], "--exit-probe is for an exit"),
            (
                &[&exit[..], &["--exit-dns", "dns.example"]].concat(),
                "not IP or IP:PORT",
            ),
            (
                &[&exit[..], &["--exit-probe", "tcp:nohost"]].concat(),
                "--exit-probe: tcp check",
            ),
            (
                &[&exit[..], &["--exit-probe", "ping:x"]].concat(),
                "http:URL, tcp:HOST:PORT",
            ),
        ] {
            let err = mesh(flags);
            assert!(err.contains(expected), "{flags:?}: {err}");
        }
    }

    #[test]
    fn every_spelling_is_an_agent_one() {
        let mut keys = std::collections::BTreeSet::new();
        for setting in AgentSettings::catalogue() {
            assert!(setting.env.starts_with("TANDEM_AGENT_"), "{}", setting.env);
            assert!(
                setting.file_key.starts_with("agent."),
                "{}",
                setting.file_key
            );
            assert!(!setting.help.is_empty());
            assert!(keys.insert(setting.file_key), "{} twice", setting.file_key);
        }
    }
}
