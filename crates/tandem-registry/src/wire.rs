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
    #[serde(flatten)]
    pub report: Report,
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

impl Registration {
    pub fn check(&self) -> Result<(), String> {
        if self.address.is_empty() {
            return Err("the agent's address is empty; give --address HOST:PORT".into());
        }
        check_field("the agent's address", &self.address)?;
        check_field("the agent's version", &self.version)?;
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
