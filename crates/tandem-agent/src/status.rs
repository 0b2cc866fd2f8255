//! What the agent knows about itself, shared by the reporter (which writes it) and the local
//! HTTP endpoint (which shows it).

use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use tandem_client::Client;
use tandem_mesh::runtime::MeshRuntime;
use tandem_registry::AgentState;
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::checks::CheckBoard;
use crate::load::LoadSource;

#[derive(Clone, Debug, Default)]
pub struct AgentStatus {
    /// The pool, as given or, once enrolled, as the credential says.
    pub pool: Option<String>,
    pub enrolled: bool,
    pub registered: bool,
    /// The state the servers answered last.
    pub state: Option<AgentState>,
    /// A drain was asked for (locally, or by a signal) and not yet confirmed.
    pub drain_wanted: bool,
    /// The servers confirmed that this agent drains.
    pub draining: bool,
    /// Why the servers refuse this agent's credential, once they have.
    pub revoked: Option<String>,
    /// Since when no server has answered, while none does.
    pub unreachable_since: Option<Instant>,
    pub last_error: Option<String>,
    /// The servers the agent talks to, and the one that answered last.
    pub servers: Vec<String>,
    pub server: Option<String>,
    /// Unix milliseconds of the last report the servers accepted.
    pub last_report_ms: Option<u64>,
    /// The load sent with the last report.
    pub load: Option<f64>,
}

/// The agent's moving parts that more than one task uses.
pub struct Shared {
    pub name: String,
    status: Mutex<AgentStatus>,
    pub checks: Arc<CheckBoard>,
    pub load: LoadSource,
    /// Wakes the reporter before its next tick (a drain was asked for).
    pub wake: Notify,
    /// The client to the servers, once the agent has its credential.
    pub client: OnceLock<Arc<Client>>,
    /// `--mesh-listen` is given: the agent is healthy only with its mesh part.
    pub mesh_enabled: bool,
    /// The mesh runtime, once started (after enrolment: it needs the credential).
    pub mesh: OnceLock<Arc<MeshRuntime>>,
}

impl Shared {
    pub fn new(
        name: String,
        status: AgentStatus,
        checks: Arc<CheckBoard>,
        load: LoadSource,
        mesh_enabled: bool,
    ) -> Shared {
        Shared {
            name,
            status: Mutex::new(status),
            checks,
            load,
            wake: Notify::new(),
            client: OnceLock::new(),
            mesh_enabled,
            mesh: OnceLock::new(),
        }
    }

    pub fn status(&self) -> MutexGuard<'_, AgentStatus> {
        self.status.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The mesh's verdict for `/health`: `None` when the mesh is off, else whether the agent
    /// can carry traffic in its mesh roles.
    pub fn mesh_health(&self) -> Option<Result<(), String>> {
        if !self.mesh_enabled {
            return None;
        }
        Some(match self.mesh.get() {
            Some(mesh) => mesh.health(),
            None => Err("not started yet".into()),
        })
    }

    /// Records that no server answered, and why.
    pub fn unreachable(&self, why: String) {
        let mut status = self.status();
        status.unreachable_since.get_or_insert_with(Instant::now);
        status.last_error = Some(why);
    }
}
