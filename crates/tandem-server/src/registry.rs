//! The agent registry as the servers run it. What must survive a failover (who is enrolled,
//! registered, draining, down; each agent's checks when its state changed) is replicated; the
//! heartbeats themselves stay in the active server's memory, so 1 000 agents reporting every
//! second cost the cluster only their state changes. The decisions (who is down, which agent a
//! client gets) are `tandem_registry`'s pure rules; this module feeds them and proposes what
//! they answer.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tandem_ha::now_ms;
use tandem_registry::{
    due_changes, route_switches, AgentRecord, AgentState, CheckReport, Liveness, LivenessChange,
    LivenessPolicy, MeshAgent, MeshSummary,
};
use tandem_store::{AgentRow, Command, Outcome, RegistryCommand};
use tandem_tls::AgentCa;

use crate::error::ApiError;
use crate::events::{EventKind, Events};
use crate::replicated::Replicated;
use serde_json::json;

/// How often the active server looks for agents that fell silent.
const LIVENESS_CHECK: Duration = Duration::from_millis(200);
/// Verified agent assertions kept, so a heartbeat costs no signature check; past this many the
/// cache starts over.
const VERIFIED_CACHE_LIMIT: usize = 50_000;

/// The agent a request's credential belongs to.
#[derive(Clone, Debug)]
pub struct AgentIdentity {
    pub name: String,
    pub pool: String,
    pub credential_id: String,
}

/// An assertion that verified.
struct Verified {
    identity: AgentIdentity,
    /// Unix seconds.
    expires_at: u64,
}

/// What the active server last heard from an agent.
#[derive(Clone, Debug)]
pub struct Heard {
    pub at_ms: i64,
    pub load: Option<f64>,
    pub checks: Vec<CheckReport>,
    /// The agent's mesh as its last heartbeat told it, if it has one.
    pub mesh: Option<MeshSummary>,
}

/// Agents as read at a registry index.
type RowsAt = (u64, Arc<Vec<AgentRow>>);

/// Cheap to clone: axum clones handler state for every request.
#[derive(Clone)]
pub struct Registry(Arc<RegistryParts>);

struct RegistryParts {
    data: Replicated,
    agent_ca: AgentCa,
    policy: LivenessPolicy,
    report_every: Duration,
    heard: Mutex<HashMap<String, Heard>>,
    /// When this node last took the active role (Unix ms); heartbeats count from then.
    active_since_ms: AtomicI64,
    /// Assertions whose signature verified, with the agent they speak for and their expiry, so
    /// a heartbeat costs no signature check and no read. Only the active server serves agents;
    /// it empties this when it takes the role and drops an agent's entries when it revokes it.
    verified: Mutex<HashMap<String, Verified>>,
    /// The agents of a pool (or of all pools), as read at a registry index: picks and the
    /// liveness check reuse them until the registry changes.
    rows: Mutex<HashMap<Option<String>, RowsAt>>,
    /// The servers' API addresses, active first, as told to agents; refreshed every second.
    servers: Mutex<(Option<tokio::time::Instant>, Arc<Vec<String>>)>,
    events: Events,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Registry {
    pub fn new(
        data: Replicated,
        agent_ca: AgentCa,
        policy: LivenessPolicy,
        report_every: Duration,
        events: Events,
    ) -> Registry {
        Registry(Arc::new(RegistryParts {
            data,
            agent_ca,
            policy,
            report_every,
            heard: Mutex::new(HashMap::new()),
            active_since_ms: AtomicI64::new(i64::MAX),
            verified: Mutex::new(HashMap::new()),
            rows: Mutex::new(HashMap::new()),
            servers: Mutex::new((None, Arc::new(Vec::new()))),
            events,
        }))
    }

    pub fn data(&self) -> &Replicated {
        &self.0.data
    }

    pub fn agent_ca(&self) -> &AgentCa {
        &self.0.agent_ca
    }

    pub fn report_every(&self) -> Duration {
        self.0.report_every
    }

    /// The agents of `pool` (all agents with `None`), by name, as this node's state holds them.
    pub async fn agents(&self, pool: Option<&str>) -> Result<Arc<Vec<AgentRow>>, ApiError> {
        let key = pool.map(str::to_string);
        let index = *self.0.data.registry_changes().borrow();
        if let Some((seen, rows)) = lock(&self.0.rows).get(&key) {
            if *seen == index {
                return Ok(rows.clone());
            }
        }
        let wanted = key.clone();
        let rows = Arc::new(
            self.0
                .data
                .read(move |db| Ok(db.registry_agents(wanted.as_deref())?))
                .await?,
        );
        lock(&self.0.rows).insert(key, (index, rows.clone()));
        Ok(rows)
    }

    /// One agent, from the same rows (sorted by name), without a read of its own: every
    /// heartbeat looks its agent up.
    pub async fn agent(&self, name: &str) -> Result<Option<AgentRow>, ApiError> {
        let rows = self.agents(None).await?;
        Ok(rows
            .binary_search_by(|row| row.name.as_str().cmp(name))
            .ok()
            .map(|i| rows[i].clone()))
    }

    /// The load each of `rows` last reported to this node, in the same order.
    pub fn loads(&self, rows: &[AgentRow]) -> Vec<Option<f64>> {
        let heard = lock(&self.0.heard);
        rows.iter()
            .map(|row| heard.get(&row.name).and_then(|h| h.load))
            .collect()
    }

    /// The servers' API addresses with the one that leads first, for agents to talk to next.
    pub fn servers(&self) -> Arc<Vec<String>> {
        let mut cached = lock(&self.0.servers);
        let fresh = cached
            .0
            .is_some_and(|at| at.elapsed() < Duration::from_secs(1));
        if !fresh {
            let mut members = self.0.data.status().members;
            // Stable: the others keep their order, so agents see a list change only on a
            // failover or a membership change.
            members.sort_by_key(|member| !member.leads);
            let servers = members
                .into_iter()
                .map(|member| member.api_addr)
                .filter(|addr| !addr.is_empty())
                .collect();
            *cached = (Some(tokio::time::Instant::now()), Arc::new(servers));
        }
        cached.1.clone()
    }

    /// Notes a report from `name`.
    pub fn heard(
        &self,
        name: &str,
        load: Option<f64>,
        checks: Vec<CheckReport>,
        mesh: Option<MeshSummary>,
    ) {
        metrics::counter!("tandem_agent_reports_total").increment(1);
        let now = Heard {
            at_ms: now_ms(),
            load,
            checks,
            mesh,
        };
        let mut heard = lock(&self.0.heard);
        let before = heard.insert(name.to_string(), now).and_then(|h| h.mesh);
        // Compared with the agent's previous heartbeat to this server: the first one since it
        // took the role has nothing to compare with, so a failover of the servers is not
        // mistaken for one of the mesh.
        let after = heard.get(name).and_then(|h| h.mesh.as_ref());
        let switches = match (&before, after) {
            (Some(before), Some(after)) => route_switches(before, after),
            _ => Vec::new(),
        };
        drop(heard);
        for switch in switches {
            tracing::info!(agent = name, dest = %switch.dest, from = ?switch.from, to = ?switch.to, "agent's mesh route changed");
            self.0.events.record(
                EventKind::RouteChanged,
                json!({ "agent": name, "dest": switch.dest, "from": switch.from, "to": switch.to }),
            );
        }
    }

    /// The meshes of `rows` whose last heartbeat to this node carried one, in the same order.
    pub fn meshes(&self, rows: &[AgentRow]) -> Vec<MeshAgent> {
        let heard = lock(&self.0.heard);
        rows.iter()
            .filter_map(|row| {
                let h = heard.get(&row.name)?;
                let mesh = h.mesh.as_ref()?;
                Some(MeshAgent {
                    name: row.name.clone(),
                    pool: row.pool.clone(),
                    state: row.state(),
                    last_heartbeat_ms: h.at_ms,
                    peers: mesh.peers.clone(),
                    routes: mesh.routes.clone(),
                })
            })
            .collect()
    }

    /// The last mesh summary of each of `rows` that is not down (in the replicated state, or
    /// overdue on this node), for `/metrics`: an agent that is gone has no figures to show.
    pub fn live_mesh_summaries(&self, rows: &[AgentRow]) -> Vec<(String, MeshSummary)> {
        let overdue = self.overdue(rows);
        let heard = lock(&self.0.heard);
        rows.iter()
            .filter(|row| row.state() != AgentState::Down && !overdue.contains(&row.name))
            .filter_map(|row| {
                let mesh = heard.get(&row.name)?.mesh.clone()?;
                Some((row.name.clone(), mesh))
            })
            .collect()
    }

    pub fn forget(&self, name: &str) {
        lock(&self.0.heard).remove(name);
    }

    /// The agent `token` speaks for, when it verified before and is unexpired at `now_secs`.
    pub fn verified_before(&self, token: &str, now_secs: u64) -> Option<AgentIdentity> {
        lock(&self.0.verified)
            .get(token)
            .filter(|verified| verified.expires_at > now_secs)
            .map(|verified| verified.identity.clone())
    }

    pub fn remember_verified(&self, token: &str, identity: &AgentIdentity, expires_at: u64) {
        let mut verified = lock(&self.0.verified);
        if verified.len() >= VERIFIED_CACHE_LIMIT {
            verified.clear();
        }
        let entry = Verified {
            identity: identity.clone(),
            expires_at,
        };
        verified.insert(token.to_string(), entry);
    }

    /// Forgets the assertions of agent `name`: its credential was revoked.
    pub fn forget_assertions(&self, name: &str) {
        lock(&self.0.verified).retain(|_, verified| verified.identity.name != name);
    }

    /// An agent as the API shows it: the replicated row, with the load, the checks' latest
    /// output and the last heartbeat this server holds.
    pub fn record(&self, row: AgentRow) -> AgentRecord {
        let heard = lock(&self.0.heard).get(&row.name).cloned();
        let state = row.state();
        AgentRecord {
            state,
            load: heard.as_ref().and_then(|h| h.load),
            last_heartbeat_ms: heard.as_ref().map(|h| h.at_ms),
            checks: heard.map_or(row.checks, |h| h.checks),
            name: row.name,
            pool: row.pool,
            address: row.address,
            labels: row.labels,
            version: row.version,
            state_since_ms: row.state_since_ms,
            registered_at_ms: row.registered_at_ms,
        }
    }

    /// Proposes a registry command, answering what applying it said.
    pub async fn propose(&self, command: RegistryCommand) -> Result<Outcome, ApiError> {
        self.0.data.propose(Command::Registry(command)).await
    }

    /// Proposes a change an operator asked for, recorded in the audit log as `who`'s.
    pub async fn propose_by(
        &self,
        who: &str,
        command: RegistryCommand,
    ) -> Result<Outcome, ApiError> {
        self.0
            .data
            .propose(Command::Registry(command).audited(who))
            .await
    }

    /// Notes a state change in the log, the events feed and the metrics.
    pub fn note_change(&self, name: &str, pool: &str, from: Option<AgentState>, to: AgentState) {
        if from == Some(to) {
            return;
        }
        let from_text = from.map_or("unregistered", AgentState::as_str);
        tracing::info!(
            agent = name,
            pool,
            from = from_text,
            to = to.as_str(),
            "agent state changed"
        );
        self.0.events.record(
            EventKind::AgentStateChanged,
            json!({ "agent": name, "pool": pool, "from": from_text, "to": to.as_str() }),
        );
        metrics::counter!("tandem_agent_state_changes_total", "to" => to.as_str()).increment(1);
    }

    /// What only the active server does for the registry, for as long as it holds the role:
    /// mark silent agents down (after `down_after` of grace from `active_since_ms`), remove those
    /// down past `deregister_after`, and publish the agents-by-state gauges.
    pub async fn liveness_duty(&self, active_since_ms: i64) {
        // Heartbeats heard in an earlier term are stale: loads and check outputs start afresh.
        // So are verified assertions: a revocation may have been applied since.
        lock(&self.0.heard).clear();
        lock(&self.0.verified).clear();
        self.0
            .active_since_ms
            .store(active_since_ms, Ordering::SeqCst);
        let mut every = tokio::time::interval(LIVENESS_CHECK);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_error = String::new();
        loop {
            every.tick().await;
            match self.check_liveness(active_since_ms).await {
                Ok(()) => last_error.clear(),
                Err(e) if e.message != last_error => {
                    tracing::info!(error = %e.message, "agent liveness not checked; retrying");
                    last_error = e.message;
                }
                Err(_) => {}
            }
        }
    }

    /// What the liveness rule says is due for `rows` now, from the heartbeats this node holds.
    fn due(&self, rows: &[AgentRow], active_since_ms: i64) -> Vec<LivenessChange> {
        let heard = lock(&self.0.heard);
        let agents = rows.iter().map(|row| Liveness {
            name: &row.name,
            last_heartbeat_ms: heard.get(&row.name).map(|h| h.at_ms),
            down_since_ms: row.down_since_ms,
        });
        due_changes(agents, self.0.policy, active_since_ms, now_ms())
    }

    /// Agents this active node already considers down though the replicated state does not say
    /// so yet (the proposal is on its way): picks leave them out at once.
    pub fn overdue(&self, rows: &[AgentRow]) -> HashSet<String> {
        let active_since_ms = self.0.active_since_ms.load(Ordering::SeqCst);
        self.due(rows, active_since_ms)
            .into_iter()
            .filter_map(|change| match change {
                LivenessChange::MarkDown(name) => Some(name),
                LivenessChange::Remove(_) => None,
            })
            .collect()
    }

    async fn check_liveness(&self, active_since_ms: i64) -> Result<(), ApiError> {
        let rows = self.agents(None).await?;
        publish_gauges(&rows);
        let changes = self.due(&rows, active_since_ms);
        let (mut down, mut gone) = (Vec::new(), Vec::new());
        for change in changes {
            match change {
                LivenessChange::MarkDown(name) => down.push(name),
                LivenessChange::Remove(name) => gone.push(name),
            }
        }
        let pool_of = |name: &str| {
            rows.iter()
                .find(|row| row.name == name)
                .map(|row| (row.pool.clone(), row.state()))
        };
        if !down.is_empty() {
            self.propose(RegistryCommand::MarkDown {
                names: down.clone(),
            })
            .await?;
            for name in &down {
                if let Some((pool, from)) = pool_of(name) {
                    self.note_change(name, &pool, Some(from), AgentState::Down);
                }
            }
        }
        if !gone.is_empty() {
            self.propose(RegistryCommand::Remove {
                names: gone.clone(),
            })
            .await?;
            for name in &gone {
                tracing::info!(agent = %name, "agent removed: down longer than deregister_after");
                self.forget(name);
            }
        }
        Ok(())
    }
}

/// `tandem_agents{pool, state}`: how many agents of each pool are in each state.
fn publish_gauges(rows: &[AgentRow]) {
    let mut counts: HashMap<(&str, AgentState), u64> = HashMap::new();
    let pools: std::collections::BTreeSet<&str> = rows.iter().map(|r| r.pool.as_str()).collect();
    for pool in &pools {
        for state in AgentState::ALL {
            counts.insert((pool, state), 0);
        }
    }
    for row in rows {
        *counts.entry((row.pool.as_str(), row.state())).or_default() += 1;
    }
    for ((pool, state), count) in counts {
        metrics::gauge!("tandem_agents", "pool" => pool.to_string(), "state" => state.as_str())
            .set(count as f64);
    }
}
