//! What the runtime shows of itself: peers and every stored path, for `/healthz`, and the
//! facts its health is decided on.

use serde::Serialize;

use super::decide::{mesh_health, MeshFacts};
use super::MeshRuntime;
use crate::advert::AgentId;
use crate::path::{PathState, PathView};
use crate::transport::Traffic;

/// One peer: connected, or a configured address not connected now.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PeerStatus {
    /// The peer's agent name, once known.
    pub id: Option<AgentId>,
    /// Its UDP address (the remote address of a connection, else the configured address).
    pub address: String,
    pub rtt_ms: Option<f64>,
    /// What the live connection carried so far (none for a peer not connected).
    pub traffic: Option<Traffic>,
    /// `up`, or `down` for a configured peer not connected.
    pub state: &'static str,
    /// Unix milliseconds since the state holds.
    pub since_ms: u64,
    pub last_error: Option<String>,
}

/// The mesh part of `/healthz`.
#[derive(Clone, Debug, Serialize)]
pub struct MeshStatus {
    pub me: AgentId,
    pub roles: super::MeshRoles,
    pub peers: Vec<PeerStatus>,
    pub routes: Vec<PathView>,
    /// Connected peers.
    pub peer_count: usize,
    /// Destinations with a chosen path through a peer.
    pub route_count: usize,
    /// How often a destination's chosen path changed since the start.
    pub route_changes: u64,
    /// UDP bytes of every mesh connection since the agent started, as on the wire.
    pub traffic: Traffic,
    /// `None` when the agent can carry traffic in its roles, else why not.
    pub unhealthy: Option<String>,
    /// Why this exit's routes are withdrawn (its upstream probe's last output), if they are.
    pub exits_withdrawn: Option<String>,
}

impl MeshRuntime {
    /// Peers and paths now.
    pub fn status(&self) -> MeshStatus {
        let inner = &self.inner;
        let now = inner.core.now_ms();
        let state = inner.core.lock();
        let mut peers: Vec<PeerStatus> = state
            .peers
            .iter()
            .map(|(id, link)| PeerStatus {
                id: Some(id.clone()),
                address: link.conn.remote_address().to_string(),
                rtt_ms: Some(link.conn.rtt().as_secs_f64() * 1000.0),
                traffic: Some(link.conn.traffic()),
                state: "up",
                since_ms: link.since_ms,
                last_error: None,
            })
            .collect();
        for (addr, dial) in &state.dials {
            if !dial.connected {
                peers.push(PeerStatus {
                    id: dial.peer.clone(),
                    address: addr.clone(),
                    rtt_ms: None,
                    traffic: None,
                    state: "down",
                    since_ms: dial.since_ms,
                    last_error: dial.last_error.clone(),
                });
            }
        }
        let routes = state.table.views(now);
        let live = state.peers.len();
        let route_changes = state.route_changes;
        let traffic = state.traffic();
        drop(state);
        let exits_withdrawn = self.exits_withdrawn();
        let facts = facts_of(
            inner.config.roles(),
            live,
            &routes,
            &inner.me,
            exits_withdrawn.is_some(),
        );
        MeshStatus {
            me: inner.me.clone(),
            roles: facts.roles,
            peer_count: facts.peers,
            route_count: facts.routes,
            route_changes,
            traffic,
            unhealthy: mesh_health(&facts).err(),
            exits_withdrawn,
            peers,
            routes,
        }
    }

    /// Whether the agent can carry traffic in its roles (see [`mesh_health`]).
    pub fn health(&self) -> Result<(), String> {
        let now = self.inner.core.now_ms();
        let state = self.inner.core.lock();
        let routes = state.table.views(now);
        let peers = state.peers.len();
        drop(state);
        let facts = facts_of(
            self.inner.config.roles(),
            peers,
            &routes,
            &self.inner.me,
            self.exits_withdrawn().is_some(),
        );
        mesh_health(&facts)
    }
}

fn facts_of(
    roles: super::MeshRoles,
    peers: usize,
    routes: &[PathView],
    me: &AgentId,
    exits_withdrawn: bool,
) -> MeshFacts {
    MeshFacts {
        roles,
        peers,
        routes: routes
            .iter()
            .filter(|v| v.state == PathState::Selected && !v.route.exits_here)
            .count(),
        own_routes_advertised: routes.iter().any(|v| &v.route.origin == me),
        exits_withdrawn,
    }
}
