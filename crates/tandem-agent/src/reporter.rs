//! The heartbeat: registers the agent, then reports its checks and load every report interval
//! and at once when a check changes; follows the server list the servers answer with; backs off
//! with jitter while no server answers; stops for good when the credential is revoked.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tandem_client::{Client, ClientError, Reply, StatusCode};
use tandem_registry::{AgentState, Heartbeat, Registration, Report, ReportAnswer};

use crate::credential::write_private;
use crate::status::Shared;
use crate::AgentError;

pub const SERVERS_FILE: &str = "servers.json";
const FIRST_BACKOFF: Duration = Duration::from_millis(200);
const LAST_BACKOFF: Duration = Duration::from_secs(5);
/// The fastest the agent reports, whatever a server asks.
const FASTEST_REPORT: Duration = Duration::from_millis(100);

/// How long to wait after the `failures`-th failure in a row (counting from 0): 200 ms doubling
/// to 5 s, of which a random half (`random` in [0, 1)) is left out, so that agents cut off
/// together do not all come back in the same instant.
pub fn backoff_delay(failures: u32, random: f64) -> Duration {
    let base = FIRST_BACKOFF
        .saturating_mul(1u32 << failures.min(8))
        .min(LAST_BACKOFF);
    let random = if random.is_finite() {
        random.clamp(0.0, 1.0)
    } else {
        0.0
    };
    base / 2 + (base / 2).mul_f64(random)
}

/// The servers to talk to: those the servers named last, then the configured ones not among
/// them (a fallback should the named ones all go), each once.
pub fn merge_servers(answered: &[String], configured: &[String]) -> Vec<String> {
    let mut servers: Vec<String> = Vec::new();
    for server in answered.iter().chain(configured) {
        let server = server.trim().trim_end_matches('/');
        let bare = server.trim_start_matches("http://");
        if !server.is_empty()
            && !servers
                .iter()
                .any(|known| known.trim_start_matches("http://") == bare)
        {
            servers.push(server.to_string());
        }
    }
    servers
}

/// The servers the last start learned of, from `servers.json`; none when it is missing or
/// unreadable (they are only a help).
pub fn load_servers(dir: &Path) -> Vec<String> {
    #[derive(serde::Deserialize)]
    struct Saved {
        servers: Vec<String>,
    }
    std::fs::read(dir.join(SERVERS_FILE))
        .ok()
        .and_then(|bytes| serde_json::from_slice::<Saved>(&bytes).ok())
        .map(|saved| saved.servers)
        .unwrap_or_default()
}

pub fn save_servers(dir: &Path, servers: &[String]) -> std::io::Result<()> {
    let text = serde_json::to_vec_pretty(&serde_json::json!({ "servers": servers }))?;
    write_private(dir, SERVERS_FILE, &text)
}

/// What one exchange with the servers came to.
#[derive(Debug, PartialEq)]
pub enum Outcome {
    Answered(ReportAnswer),
    /// The servers do not know this agent (any more): register again, now.
    NotRegistered,
    /// The credential was revoked; the agent stops.
    Revoked(String),
    /// No server answered, or not usefully: try again after a pause.
    Failed(String),
}

/// The code and message of an API error reply.
fn api_error(reply: &Reply) -> (String, String) {
    let copy = Reply {
        status: reply.status,
        headers: reply.headers.clone(),
        body: reply.body.clone(),
    };
    match copy.error_for_status() {
        Err(ClientError::Api { code, message, .. }) => (code, message),
        Err(other) => ("error".into(), other.to_string()),
        Ok(_) => ("error".into(), "no error".into()),
    }
}

/// What a reply to a registration or report means.
pub fn outcome_of(reply: &Reply) -> Outcome {
    if reply.status.is_success() {
        return match serde_json::from_slice::<ReportAnswer>(&reply.body) {
            Ok(answer) => Outcome::Answered(answer),
            Err(e) => Outcome::Failed(format!("the server's answer is not a report answer: {e}")),
        };
    }
    let (code, message) = api_error(reply);
    match (reply.status, code.as_str()) {
        (StatusCode::NOT_FOUND, "agent_not_registered") => Outcome::NotRegistered,
        (StatusCode::UNAUTHORIZED, "credential_revoked") => Outcome::Revoked(message),
        (status, _) => Outcome::Failed(format!("{message} (HTTP {}, {code})", status.as_u16())),
    }
}

pub struct Reporter {
    pub shared: Arc<Shared>,
    pub client: Arc<Client>,
    pub address: String,
    /// Which mesh the agent is in and where its peers reach it, when it has a mesh.
    pub mesh: Option<tandem_registry::MeshMembership>,
    pub labels: std::collections::BTreeMap<String, String>,
    pub report_interval: Duration,
    pub data_dir: PathBuf,
    pub configured_servers: Vec<String>,
    /// What `servers.json` holds.
    pub saved_servers: std::sync::Mutex<Vec<String>>,
}

impl Reporter {
    /// Reports until the credential is revoked (the only way it returns).
    pub async fn run(self) -> Result<(), AgentError> {
        let mut failures: u32 = 0;
        loop {
            let delay = match self.exchange().await {
                Outcome::Answered(answer) => {
                    if failures > 0 {
                        tracing::info!("the servers answer again");
                    }
                    failures = 0;
                    let every = Duration::from_millis(answer.report_every_ms);
                    self.apply(answer);
                    if every.is_zero() {
                        self.report_interval
                    } else {
                        self.report_interval.min(every).max(FASTEST_REPORT)
                    }
                }
                Outcome::NotRegistered => {
                    tracing::info!("the servers do not know this agent; registering again");
                    self.shared.status().registered = false;
                    Duration::ZERO
                }
                Outcome::Revoked(message) => {
                    // The server's message says what happened; this says how to come back.
                    let fix = format!(
                        "to enrol again, remove {} and start with --join-token",
                        crate::credential::credential_path(&self.data_dir).display()
                    );
                    self.shared.status().revoked = Some(message.clone());
                    return Err(AgentError::Revoked(format!("{message} ({fix})")));
                }
                Outcome::Failed(why) => {
                    if failures == 0 {
                        tracing::warn!("no server answered: {why}; retrying with backoff");
                    } else {
                        tracing::debug!("no server answered: {why}");
                    }
                    self.shared.unreachable(why);
                    failures = failures.saturating_add(1);
                    backoff_delay(failures - 1, rand::random::<f64>())
                }
            };
            if failures > 0 {
                // Cut off: a changing check does not hurry the next try, a drain does.
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = self.shared.wake.notified() => {}
                }
            } else {
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = self.shared.checks.status_changed() => {}
                    _ = self.shared.wake.notified() => {}
                }
            }
        }
    }

    async fn report(&self) -> Report {
        let load = self.shared.load.current().await;
        self.shared.status().load = load;
        Report {
            checks: self.shared.checks.reports(),
            load,
        }
    }

    /// One exchange: a pending drain first, then a registration or a report.
    async fn exchange(&self) -> Outcome {
        let (drain, registered) = {
            let status = self.shared.status();
            (status.drain_wanted && !status.draining, status.registered)
        };
        if drain && registered {
            match self.post("/v1/agent/drain", &serde_json::json!({})).await {
                Ok(reply) if reply.status.is_success() => {
                    tracing::info!("draining: the servers pick this agent no more");
                    let mut status = self.shared.status();
                    status.draining = true;
                    status.drain_wanted = false;
                }
                Ok(reply) => match outcome_of(&reply) {
                    Outcome::Answered(_) => {}
                    other => return other,
                },
                Err(e) => return Outcome::Failed(e),
            }
        }
        let report = self.report().await;
        let sent = if registered {
            let heartbeat = Heartbeat {
                report,
                mesh: self
                    .shared
                    .mesh
                    .get()
                    .map(|mesh| crate::mesh::summary(mesh)),
            };
            self.post("/v1/agent/report", &heartbeat).await
        } else {
            let registration = Registration {
                address: self.address.clone(),
                labels: self.labels.clone(),
                version: env!("CARGO_PKG_VERSION").to_string(),
                mesh: self.mesh.clone(),
                report,
            };
            self.post("/v1/agent/register", &registration).await
        };
        match sent {
            Ok(reply) => match outcome_of(&reply) {
                // A registration the servers answer with "not registered" would loop at once.
                Outcome::NotRegistered if !registered => {
                    Outcome::Failed("the servers refused the registration".into())
                }
                outcome => outcome,
            },
            Err(e) => Outcome::Failed(e),
        }
    }

    async fn post(&self, path: &str, body: &impl serde::Serialize) -> Result<Reply, String> {
        let body = serde_json::to_value(body).map_err(|e| format!("cannot encode {path}: {e}"))?;
        self.client
            .post_json(path, &body)
            .await
            .map_err(|e| e.to_string())
    }

    /// Takes in what the servers answered: the state, and the servers to talk to from now on.
    fn apply(&self, answer: ReportAnswer) {
        let servers = merge_servers(&answer.servers, &self.configured_servers);
        let server = self.client.preferred_endpoint();
        let changed = {
            let mut status = self.shared.status();
            if !status.registered {
                tracing::info!(state = answer.state.as_str(), server = %server, "registered");
            } else if status.state != Some(answer.state) {
                tracing::info!(
                    state = answer.state.as_str(),
                    "the servers see this agent as {}",
                    answer.state.as_str()
                );
            }
            status.registered = true;
            status.state = Some(answer.state);
            if answer.state == AgentState::Draining {
                status.draining = true;
                status.drain_wanted = false;
            }
            status.unreachable_since = None;
            status.last_error = None;
            status.server = Some(server);
            status.last_report_ms = Some(unix_millis());
            let changed = !answer.servers.is_empty() && status.servers != servers;
            if changed {
                status.servers = servers.clone();
            }
            changed
        };
        if changed {
            tracing::info!(servers = %servers.join(","), "the servers are now");
            self.client.set_endpoints(&servers);
        }
        let mut saved = self.saved_servers.lock().unwrap_or_else(|e| e.into_inner());
        if !answer.servers.is_empty() && *saved != servers {
            match save_servers(&self.data_dir, &servers) {
                Ok(()) => *saved = servers,
                Err(e) => tracing::warn!(
                    "cannot save the server list in {}: {e}",
                    self.data_dir.display()
                ),
            }
        }
    }
}

fn unix_millis() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis().min(u64::MAX as u128) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(status: u16, body: serde_json::Value) -> Reply {
        Reply {
            status: StatusCode::from_u16(status).unwrap(),
            headers: Default::default(),
            body: body.to_string().into_bytes(),
        }
    }

    #[test]
    fn backoff_doubles_to_five_seconds_with_jitter() {
        assert_eq!(backoff_delay(0, 0.0), Duration::from_millis(100));
        assert_eq!(backoff_delay(0, 0.999_999).as_millis(), 199);
        assert_eq!(backoff_delay(1, 1.0), Duration::from_millis(400));
        assert_eq!(backoff_delay(3, 1.0), Duration::from_millis(1600));
        for failures in [5, 6, 30, u32::MAX] {
            assert_eq!(backoff_delay(failures, 1.0), LAST_BACKOFF, "{failures}");
            assert_eq!(backoff_delay(failures, 0.0), LAST_BACKOFF / 2, "{failures}");
        }
        for random in [f64::NAN, -3.0, 7.0] {
            let delay = backoff_delay(2, random);
            assert!(delay >= Duration::from_millis(400) && delay <= Duration::from_millis(800));
        }
        for _ in 0..1000 {
            let delay = backoff_delay(4, rand::random::<f64>());
            assert!(delay >= Duration::from_millis(1600) && delay <= Duration::from_millis(3200));
        }
    }

    #[test]
    fn answered_servers_come_first_and_configured_ones_stay() {
        let answered = vec!["10.0.0.1:8200".to_string(), "10.0.0.4:8200".to_string()];
        let configured = vec![
            "http://10.0.0.1:8200/".to_string(),
            "10.0.0.2:8200".to_string(),
        ];
        assert_eq!(
            merge_servers(&answered, &configured),
            vec!["10.0.0.1:8200", "10.0.0.4:8200", "10.0.0.2:8200"]
        );
        assert_eq!(
            merge_servers(&[], &configured),
            vec!["http://10.0.0.1:8200", "10.0.0.2:8200"]
        );
    }

    #[test]
    fn the_server_list_survives_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        assert!(load_servers(dir.path()).is_empty());
        let servers = vec!["a:1".to_string(), "b:2".to_string()];
        save_servers(dir.path(), &servers).unwrap();
        assert_eq!(load_servers(dir.path()), servers);
        std::fs::write(dir.path().join(SERVERS_FILE), "junk").unwrap();
        assert!(load_servers(dir.path()).is_empty());
    }

    #[test]
    fn replies_become_outcomes() {
        let answer = ReportAnswer {
            state: AgentState::Passing,
            servers: vec!["a:1".into()],
            report_every_ms: 1000,
        };
        assert_eq!(
            outcome_of(&reply(200, serde_json::to_value(&answer).unwrap())),
            Outcome::Answered(answer)
        );
        let error = |code: &str| serde_json::json!({"error": {"code": code, "message": "why"}});
        assert_eq!(
            outcome_of(&reply(404, error("agent_not_registered"))),
            Outcome::NotRegistered
        );
        assert_eq!(
            outcome_of(&reply(401, error("credential_revoked"))),
            Outcome::Revoked("why".into())
        );
        assert_eq!(
            outcome_of(&reply(401, error("credential_invalid"))),
            Outcome::Failed("why (HTTP 401, credential_invalid)".into())
        );
        assert!(matches!(
            outcome_of(&reply(200, serde_json::json!({}))),
            Outcome::Failed(_)
        ));
        assert!(matches!(
            outcome_of(&reply(404, error("not_found"))),
            Outcome::Failed(_)
        ));
    }
}
