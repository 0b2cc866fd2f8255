//! What the table tells about a path: its identity, the route a lookup chooses, and the view
//! of every stored path that `/healthz` shows.

use serde::Serialize;

use crate::advert::{AgentId, Destination};

/// One stored path: the origin it leads to and the peer it goes through. For a route this
/// agent originates, both are this agent.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct PathId {
    pub origin: AgentId,
    pub next_hop: AgentId,
}

/// The path a lookup chose for a destination.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SelectedRoute {
    /// The matching prefix or domain pattern.
    pub dest: Destination,
    pub origin: AgentId,
    pub next_hop: AgentId,
    /// Origin first, next hop last.
    pub path: Vec<AgentId>,
    /// Hops to the origin; 0 when this agent is the exit.
    pub metric: u32,
    pub weight: u32,
    /// This agent is the exit: dial the destination here.
    pub exits_here: bool,
}

impl SelectedRoute {
    pub fn id(&self) -> PathId {
        PathId {
            origin: self.origin.clone(),
            next_hop: self.next_hop.clone(),
        }
    }
}

/// Whether a stored path carries the destination's traffic now.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PathState {
    Selected,
    Backup,
}

/// One stored path to one destination, as `/healthz` and the ingress see it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PathView {
    #[serde(flatten)]
    pub route: SelectedRoute,
    pub state: PathState,
    /// The origin's sequence number this path was last heard with.
    pub seq: u64,
    /// Since this path was (re)established.
    pub age_ms: u64,
    /// Until the TTL backstop drops it; `None` for this agent's own routes.
    pub expires_in_ms: Option<u64>,
    /// An open through its next hop was not acknowledged: ranked after every other path.
    pub suspected: bool,
    /// It recovered recently and may take over only after this long.
    pub held_for_ms: Option<u64>,
}
