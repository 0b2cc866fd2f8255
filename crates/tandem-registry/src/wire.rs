//! What agents, servers and clients send each other about agents, and the limits every server
//! checks before anything reaches the replicated state.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The most output of one check kept and shown: the first 4 KiB.
pub const MAX_CHECK_OUTPUT: usize = 4096;
/// The most checks one agent may declare.
pub const MAX_CHECKS: usize = 64;
/// The most labels one agent may carry.
pub const MAX_LABELS: usize = 64;
/// Longest label key or value, agent address, or version string.
pub const MAX_FIELD_LEN: usize = 256;
/// Longest agent or pool name (a DNS label's length, so a name can go in a certificate).
pub const MAX_NAME_LEN: usize = 63;
/// The most mesh peers one heartbeat may carry.
pub const MAX_MESH_PEERS: usize = 256;
/// The most mesh paths one heartbeat may carry.
pub const MAX_MESH_ROUTES: usize = 4096;
/// The most hops a reported mesh path may list.
pub const MAX_MESH_PATH_LEN: usize = 64;
/// The most destinations one agent's announce restriction may list.
pub const MAX_ANNOUNCE_ENTRIES: usize = 256;
/// The mesh an agent is in unless it names another (`--mesh-name`).
pub const DEFAULT_MESH: &str = "default";

/// What one check found. Ordered from best to worst, so the worst of several is their maximum.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CheckStatus {
    Passing,
    Warning,
    Critical,
}

impl CheckStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            CheckStatus::Passing => "passing",
            CheckStatus::Warning => "warning",
            CheckStatus::Critical => "critical",
        }
    }
}

impl std::str::FromStr for CheckStatus {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        match text {
            "passing" => Ok(CheckStatus::Passing),
            "warning" => Ok(CheckStatus::Warning),
            "critical" => Ok(CheckStatus::Critical),
            other => Err(format!(
                "check status {other:?} is not one of passing, warning, critical"
            )),
        }
    }
}

/// An agent's state as the registry shows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AgentState {
    Passing,
    Warning,
    Critical,
    /// Missed its heartbeats for longer than `down_after`.
    Down,
    /// Asked to stop taking new work; never picked.
    Draining,
}

impl AgentState {
    pub const ALL: [AgentState; 5] = [
        AgentState::Passing,
        AgentState::Warning,
        AgentState::Critical,
        AgentState::Down,
        AgentState::Draining,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            AgentState::Passing => "passing",
            AgentState::Warning => "warning",
            AgentState::Critical => "critical",
            AgentState::Down => "down",
            AgentState::Draining => "draining",
        }
    }
}

impl std::str::FromStr for AgentState {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        AgentState::ALL
            .into_iter()
            .find(|state| state.as_str() == text)
            .ok_or_else(|| {
                format!(
                    "agent state {text:?} is not one of passing, warning, critical, down, draining"
                )
            })
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CheckKind {
    Http,
    Tcp,
    Exec,
}

/// One check's latest result, as the agent reports it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckReport {
    /// Unique among the agent's checks, e.g. `http:http://127.0.0.1:9000/ready`.
    pub name: String,
    pub kind: CheckKind,
    pub status: CheckStatus,
    /// What the check printed or answered, at most [`MAX_CHECK_OUTPUT`] bytes.
    #[serde(default)]
    pub output: String,
}

/// `POST /v1/agent/enroll`: a join token traded for a credential. The agent's key never leaves
/// it; the public half is sent as a JWK.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Enrollment {
    pub token: String,
    pub name: String,
    /// The pool the agent was started for; enrolment is refused when the token is for another.
    #[serde(default)]
    pub pool: Option<String>,
    /// The agent's ES256 public key, as a JWK (`kty` `EC`, `crv` `P-256`, `x`, `y`).
    pub public_key: serde_json::Value,
}

/// The answer to an enrolment: the credential's id (the key id of every assertion the agent
/// signs), and a certificate for its key issued by the cluster's agent CA (for peering).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Credential {
    pub name: String,
    pub pool: String,
    pub credential_id: String,
    pub certificate_pem: String,
    pub ca_certificate_pem: String,
}

/// `POST /v1/agent/register`: what an agent says about itself when it (re)starts.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Registration {
    /// Where clients reach the agent's service, `host:port`.
    pub address: String,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub version: String,
    /// Agents with a mesh: which mesh, and where its peers reach it. Older agents send none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mesh: Option<MeshMembership>,
    #[serde(flatten)]
    pub report: Report,
}

/// An agent's place in a mesh, as it registers it: agents of the same mesh that peer `auto`
/// dial each other at these addresses.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MeshMembership {
    /// The mesh's name (`--mesh-name`, [`DEFAULT_MESH`] unless given).
    pub mesh: String,
    /// The UDP `host:port` peers dial (`--mesh-advertise`).
    pub address: String,
}

impl MeshMembership {
    pub fn check(&self) -> Result<(), String> {
        check_name("mesh name", &self.mesh)?;
        if self.address.is_empty() {
            return Err(
                "the agent's mesh address is empty; give --mesh-advertise HOST:PORT".into(),
            );
        }
        check_field("the agent's mesh address", &self.address)
    }
}

/// `GET /v1/agent/mesh`: what a mesh agent needs from the servers, in one answer.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MeshDirectory {
    /// The agents whose credentials are revoked (and that hold no unrevoked one), by name; a
    /// mesh refuses them as peers and cuts them off.
    #[serde(default)]
    pub revoked: Vec<String>,
    /// The other registered agents of the asking agent's mesh, by name: its peers when it
    /// peers `auto`.
    #[serde(default)]
    pub peers: Vec<DirectoryPeer>,
    /// The agents the servers restrict, each with the only destinations it may announce
    /// (CIDRs and domain patterns); an agent not named here may announce anything.
    #[serde(default)]
    pub announce: BTreeMap<String, Vec<String>>,
}

/// One agent of a mesh, where its peers reach it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct DirectoryPeer {
    pub name: String,
    pub address: String,
}

/// `POST /v1/agents/{name}/announce`: what the agent may announce from now on; `null` (or no
/// `allow`) lifts the restriction.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AnnounceRestriction {
    #[serde(default)]
    pub allow: Option<Vec<String>>,
}

/// Checks one entry of an announce restriction: a CIDR (`10.20.0.0/16`, `fd00::/8`) or a
/// domain pattern with a dot (`db.internal.example`, `*.internal.example`). The mesh parses
/// the same spellings as its destinations (a test there holds both to it).
pub fn check_announce_entry(entry: &str) -> Result<(), String> {
    let refuse = || {
        format!(
            "{entry:?} is neither a CIDR (like 10.20.0.0/16) nor a domain pattern with a dot (like *.internal.example or db.internal.example)"
        )
    };
    if let Some((addr, len)) = entry.split_once('/') {
        let max = match addr.parse::<std::net::IpAddr>().map_err(|_| refuse())? {
            std::net::IpAddr::V4(_) => 32,
            std::net::IpAddr::V6(_) => 128,
        };
        return match len.parse::<u8>() {
            Ok(len) if len <= max => Ok(()),
            _ => Err(refuse()),
        };
    }
    let name = entry.strip_prefix("*.").unwrap_or(entry);
    let label_ok = |label: &str| {
        !label.is_empty()
            && label.len() <= 63
            && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
            && !label.starts_with('-')
            && !label.ends_with('-')
    };
    if name.len() > 253 || !name.contains('.') || !name.split('.').all(label_ok) {
        return Err(refuse());
    }
    Ok(())
}

/// Checks a whole restriction: at most [`MAX_ANNOUNCE_ENTRIES`] entries, each one
/// [`check_announce_entry`] admits. An empty list is allowed: the agent may announce nothing.
pub fn check_announce_list(entries: &[String]) -> Result<(), String> {
    if entries.len() > MAX_ANNOUNCE_ENTRIES {
        return Err(format!(
            "{} destinations given; an agent's restriction may list at most {MAX_ANNOUNCE_ENTRIES}",
            entries.len()
        ));
    }
    entries
        .iter()
        .try_for_each(|entry| check_announce_entry(entry))
}

/// `POST /v1/agent/report`: a heartbeat, with the checks' latest results and the load.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Report {
    #[serde(default)]
    pub checks: Vec<CheckReport>,
    /// Any non-negative number; lower is less loaded.
    #[serde(default)]
    pub load: Option<f64>,
}

/// `POST /v1/agent/report` as agents with a mesh send it: the report, and what the agent's
/// mesh looks like now. Without `mesh` (older agents, agents without a mesh) it is a plain
/// [`Report`].
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Heartbeat {
    #[serde(flatten)]
    pub report: Report,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mesh: Option<MeshSummary>,
}

/// An agent's mesh in brief: its peers and every stored path, as its `/healthz` shows them.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct MeshSummary {
    #[serde(default)]
    pub peers: Vec<MeshPeer>,
    #[serde(default)]
    pub routes: Vec<MeshRoute>,
    /// How often a destination's chosen path changed since the agent started (older agents
    /// send none: 0).
    #[serde(default)]
    pub route_changes: u64,
    /// UDP bytes the agent's mesh connections sent and received since it started (older agents
    /// send none: 0).
    #[serde(default)]
    pub bytes_sent: u64,
    #[serde(default)]
    pub bytes_received: u64,
}

/// One mesh peer of an agent.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MeshPeer {
    /// The peer's agent name, once known.
    #[serde(default)]
    pub id: Option<String>,
    /// Its UDP address.
    pub address: String,
    #[serde(default)]
    pub rtt_ms: Option<f64>,
    /// `up`, or `down` for a configured peer not connected.
    pub state: String,
}

/// One stored mesh path of an agent.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MeshRoute {
    /// The prefix or domain pattern.
    pub dest: String,
    /// The exit that advertises it.
    pub origin: String,
    pub next_hop: String,
    /// Origin first, next hop last.
    #[serde(default)]
    pub path: Vec<String>,
    /// Hops to the origin.
    pub metric: u32,
    pub weight: u32,
    /// `selected` or `backup`.
    pub state: String,
}

/// One agent's mesh as `GET /v1/mesh` shows it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MeshAgent {
    pub name: String,
    pub pool: String,
    pub state: AgentState,
    /// Unix milliseconds of the heartbeat that carried this summary.
    pub last_heartbeat_ms: i64,
    pub peers: Vec<MeshPeer>,
    pub routes: Vec<MeshRoute>,
}

/// `GET /v1/mesh`: the agents whose last heartbeat carried a mesh summary, by name.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct MeshView {
    pub agents: Vec<MeshAgent>,
}

/// `GET /v1/agent/revoked`: the agents whose credentials are revoked (and that hold no
/// unrevoked one), by name; a mesh refuses them as peers.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevokedNames {
    pub agents: Vec<String>,
}

/// What a server answers a registration or report with.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ReportAnswer {
    pub state: AgentState,
    /// The API addresses of the cluster's servers now, so agents follow membership changes.
    pub servers: Vec<String>,
    /// How often the servers expect a report, in milliseconds.
    pub report_every_ms: u64,
}

/// An agent as `GET /v1/agents` shows it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AgentRecord {
    pub name: String,
    pub pool: String,
    pub address: String,
    pub labels: BTreeMap<String, String>,
    pub state: AgentState,
    pub checks: Vec<CheckReport>,
    pub load: Option<f64>,
    /// Unix milliseconds of the last report the active server received, if it received one.
    pub last_heartbeat_ms: Option<i64>,
    pub version: String,
    /// Unix milliseconds since which the agent has been in `state`.
    pub state_since_ms: i64,
    pub registered_at_ms: i64,
}

/// `GET /v1/agents`: the agents, and the registry index to wait on for the next change.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AgentList {
    pub index: u64,
    pub agents: Vec<AgentRecord>,
}

/// A join token as listed (never its secret).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JoinTokenInfo {
    pub id: String,
    pub pool: String,
    pub created_at_ms: i64,
    pub expires_at_ms: Option<i64>,
    /// Enrolments left; `None` is unlimited.
    pub uses_left: Option<u64>,
}

/// Checks an agent or pool name: 1 to 63 letters, digits, `-`, `_` or `.`, starting with a
/// letter or digit (a hostname's spelling).
pub fn check_name(what: &str, name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > MAX_NAME_LEN {
        return Err(format!(
            "{what} {name:?} must be 1 to {MAX_NAME_LEN} characters long"
        ));
    }
    let starts_well = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphanumeric());
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
    if !starts_well || !name.chars().all(allowed) {
        return Err(format!(
            "{what} {name:?} may hold only letters, digits, '-', '_' and '.', and must start with a letter or digit"
        ));
    }
    Ok(())
}

fn check_field(what: &str, value: &str) -> Result<(), String> {
    if value.len() > MAX_FIELD_LEN {
        return Err(format!(
            "{what} is {} bytes long; the limit is {MAX_FIELD_LEN}",
            value.len()
        ));
    }
    Ok(())
}

impl Report {
    /// Checks the report's shape; output longer than [`MAX_CHECK_OUTPUT`] is an error here
    /// (agents cut it before sending).
    pub fn check(&self) -> Result<(), String> {
        if self.checks.len() > MAX_CHECKS {
            return Err(format!(
                "{} checks reported; an agent may declare at most {MAX_CHECKS}",
                self.checks.len()
            ));
        }
        let mut names = std::collections::BTreeSet::new();
        for check in &self.checks {
            if check.name.is_empty() {
                return Err("a check has an empty name".into());
            }
            check_field("a check's name", &check.name)?;
            if check.output.len() > MAX_CHECK_OUTPUT {
                return Err(format!(
                    "check {:?} sent {} bytes of output; the limit is {MAX_CHECK_OUTPUT}",
                    check.name,
                    check.output.len()
                ));
            }
            if !names.insert(check.name.as_str()) {
                return Err(format!("check {:?} is reported twice", check.name));
            }
        }
        match self.load {
            Some(load) if !load.is_finite() || load < 0.0 => {
                Err(format!("load {load} is not a finite number of at least 0"))
            }
            _ => Ok(()),
        }
    }
}

impl Heartbeat {
    pub fn check(&self) -> Result<(), String> {
        self.report.check()?;
        match &self.mesh {
            Some(mesh) => mesh.check(),
            None => Ok(()),
        }
    }
}

impl MeshSummary {
    /// Refuses a summary past [`MAX_MESH_PEERS`] or [`MAX_MESH_ROUTES`], or with a field past
    /// [`MAX_FIELD_LEN`] (agents cut theirs before sending).
    pub fn check(&self) -> Result<(), String> {
        if self.peers.len() > MAX_MESH_PEERS {
            return Err(format!(
                "{} mesh peers reported; the limit is {MAX_MESH_PEERS}",
                self.peers.len()
            ));
        }
        if self.routes.len() > MAX_MESH_ROUTES {
            return Err(format!(
                "{} mesh routes reported; the limit is {MAX_MESH_ROUTES}",
                self.routes.len()
            ));
        }
        for peer in &self.peers {
            check_field("a mesh peer's address", &peer.address)?;
            check_field("a mesh peer's state", &peer.state)?;
            if let Some(id) = &peer.id {
                check_field("a mesh peer's name", id)?;
            }
            if peer.rtt_ms.is_some_and(|rtt| !rtt.is_finite() || rtt < 0.0) {
                return Err(format!(
                    "mesh peer {:?} has an rtt that is not a finite number of at least 0",
                    peer.address
                ));
            }
        }
        for route in &self.routes {
            for (what, value) in [
                ("a mesh route's destination", &route.dest),
                ("a mesh route's origin", &route.origin),
                ("a mesh route's next hop", &route.next_hop),
                ("a mesh route's state", &route.state),
            ] {
                check_field(what, value)?;
            }
            if route.path.len() > MAX_MESH_PATH_LEN {
                return Err(format!(
                    "a mesh route to {:?} lists {} hops; the limit is {MAX_MESH_PATH_LEN}",
                    route.dest,
                    route.path.len()
                ));
            }
            for hop in &route.path {
                check_field("a mesh route's hop", hop)?;
            }
        }
        Ok(())
    }
}

impl Registration {
    pub fn check(&self) -> Result<(), String> {
        if self.address.is_empty() {
            return Err("the agent's address is empty; give --address HOST:PORT".into());
        }
        check_field("the agent's address", &self.address)?;
        check_field("the agent's version", &self.version)?;
        if let Some(mesh) = &self.mesh {
            mesh.check()?;
        }
        if self.labels.len() > MAX_LABELS {
            return Err(format!(
                "{} labels given; the limit is {MAX_LABELS}",
                self.labels.len()
            ));
        }
        for (key, value) in &self.labels {
            if key.is_empty() {
                return Err("a label has an empty key; write labels as key=value".into());
            }
            check_field("a label's key", key)?;
            check_field(&format!("label {key:?}'s value"), value)?;
        }
        self.report.check()
    }
}

/// Cuts `text` to at most `limit` bytes, on a character boundary.
pub fn truncate_output(text: &mut String, limit: usize) {
    if text.len() > limit {
        let mut end = limit;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(name: &str, status: CheckStatus, output: &str) -> CheckReport {
        CheckReport {
            name: name.into(),
            kind: CheckKind::Tcp,
            status,
            output: output.into(),
        }
    }

    #[test]
    fn names_are_hostname_shaped() {
        assert!(check_name("agent name", "gw-1.eu").is_ok());
        assert!(check_name("agent name", "").is_err());
        assert!(check_name("agent name", "-gw").is_err());
        assert!(check_name("agent name", "gw/1").is_err());
        assert!(check_name("agent name", &"a".repeat(64)).is_err());
    }

    #[test]
    fn reports_with_bad_load_duplicate_or_long_checks_are_refused() {
        let ok = Report {
            checks: vec![check("a", CheckStatus::Passing, "fine")],
            load: Some(0.5),
        };
        assert!(ok.check().is_ok());
        for load in [f64::NAN, -1.0, f64::INFINITY] {
            let bad = Report {
                load: Some(load),
                ..ok.clone()
            };
            assert!(bad.check().is_err(), "{load}");
        }
        let twice = Report {
            checks: vec![check("a", CheckStatus::Passing, ""); 2],
            load: None,
        };
        assert!(twice.check().unwrap_err().contains("twice"));
        let long = Report {
            checks: vec![check("a", CheckStatus::Passing, &"x".repeat(5000))],
            load: None,
        };
        assert!(long.check().unwrap_err().contains("4096"));
    }

    fn peer(address: &str) -> MeshPeer {
        MeshPeer {
            id: Some("exit-a".into()),
            address: address.into(),
            rtt_ms: Some(0.4),
            state: "up".into(),
        }
    }

    fn route(dest: &str) -> MeshRoute {
        MeshRoute {
            dest: dest.into(),
            origin: "exit-a".into(),
            next_hop: "exit-a".into(),
            path: vec!["exit-a".into()],
            metric: 1,
            weight: 100,
            state: "selected".into(),
        }
    }

    #[test]
    fn heartbeats_without_a_mesh_parse_and_large_meshes_are_refused() {
        let plain: Heartbeat =
            serde_json::from_str(r#"{"checks": [], "load": 0.5}"#).expect("an older agent's body");
        assert_eq!(plain.report.load, Some(0.5));
        assert_eq!(plain.mesh, None);
        let with_mesh = Heartbeat {
            report: Report::default(),
            mesh: Some(MeshSummary {
                peers: vec![peer("10.0.0.1:4433")],
                routes: vec![route("10.0.0.0/8")],
                ..Default::default()
            }),
        };
        assert!(with_mesh.check().is_ok());
        let text = serde_json::to_string(&with_mesh).unwrap();
        assert_eq!(serde_json::from_str::<Heartbeat>(&text).unwrap(), with_mesh);
        // A server reading only the report still takes it.
        assert!(serde_json::from_str::<Report>(&text).is_ok());

        let many_peers = MeshSummary {
            peers: vec![peer("10.0.0.1:4433"); MAX_MESH_PEERS + 1],
            routes: vec![],
            ..Default::default()
        };
        assert!(many_peers.check().unwrap_err().contains("256"));
        let many_routes = MeshSummary {
            peers: vec![],
            routes: vec![route("10.0.0.0/8"); MAX_MESH_ROUTES + 1],
            ..Default::default()
        };
        assert!(many_routes.check().unwrap_err().contains("4096"));
        let long = MeshSummary {
            peers: vec![],
            routes: vec![route(&"x".repeat(MAX_FIELD_LEN + 1))],
            ..Default::default()
        };
        assert!(long.check().is_err());
        let bad_rtt = MeshSummary {
            peers: vec![MeshPeer {
                rtt_ms: Some(f64::NAN),
                ..peer("10.0.0.1:4433")
            }],
            routes: vec![],
            ..Default::default()
        };
        assert!(bad_rtt.check().is_err());
    }

    #[test]
    fn registrations_need_an_address_and_sane_labels() {
        let mut registration = Registration {
            address: "10.0.0.7:51820".into(),
            ..Default::default()
        };
        assert!(registration.check().is_ok());
        registration.labels.insert(String::new(), "x".into());
        assert!(registration.check().is_err());
        registration.labels.clear();
        registration.address.clear();
        assert!(registration.check().unwrap_err().contains("--address"));
    }

    #[test]
    fn announce_entries_are_cidrs_or_dotted_domain_patterns() {
        for good in [
            "10.20.0.0/16",
            "10.20.0.1/32",
            "fd00::/8",
            "*.internal.example",
            "db.internal.example",
        ] {
            assert_eq!(check_announce_entry(good), Ok(()), "{good}");
        }
        for bad in [
            "notacidr",
            "10.20.0.0/33",
            "10.20.0/16",
            "*.",
            "a..b",
            "-a.example",
            "bad name.example",
            "",
        ] {
            let err = check_announce_entry(bad).unwrap_err();
            assert!(err.contains("neither a CIDR"), "{bad}: {err}");
        }
        assert!(check_announce_list(&[]).is_ok());
        let many = vec!["10.0.0.0/8".to_string(); MAX_ANNOUNCE_ENTRIES + 1];
        assert!(check_announce_list(&many).unwrap_err().contains("at most"));
    }

    #[test]
    fn registrations_without_a_mesh_parse_and_mesh_ones_are_checked() {
        let old: Registration = serde_json::from_str(r#"{"address": "10.0.0.7:80"}"#).unwrap();
        assert_eq!(old.mesh, None);
        let mut with_mesh = Registration {
            address: "10.0.0.7:80".into(),
            mesh: Some(MeshMembership {
                mesh: DEFAULT_MESH.into(),
                address: "10.0.0.7:4433".into(),
            }),
            ..Default::default()
        };
        assert!(with_mesh.check().is_ok());
        let text = serde_json::to_string(&with_mesh).unwrap();
        assert_eq!(
            serde_json::from_str::<Registration>(&text).unwrap(),
            with_mesh
        );
        if let Some(mesh) = &mut with_mesh.mesh {
            mesh.mesh = "bad/mesh".into();
        }
        assert!(with_mesh.check().unwrap_err().contains("mesh name"));
    }

    #[test]
    fn output_is_cut_on_a_character_boundary() {
        let mut text = "aé".repeat(3000);
        truncate_output(&mut text, MAX_CHECK_OUTPUT);
        assert!(text.len() <= MAX_CHECK_OUTPUT);
        assert!(text.len() >= MAX_CHECK_OUTPUT - 1);
    }

    #[test]
    fn states_parse_and_print_alike() {
        for state in AgentState::ALL {
            assert_eq!(state.as_str().parse::<AgentState>().unwrap(), state);
        }
        assert!("up".parse::<AgentState>().is_err());
    }
}
