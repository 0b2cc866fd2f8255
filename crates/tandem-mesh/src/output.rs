//! What a call on the table returns: the destinations whose chosen path changed, and the
//! messages a runtime must send at once.

use crate::advert::{AgentId, Destination, Message};
use crate::path::PathId;

/// A message for one peer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outgoing {
    pub to: AgentId,
    pub message: Message,
}

/// The path chosen for `dest` changed (`None`: no route).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SelectionChange {
    pub dest: Destination,
    pub previous: Option<PathId>,
    pub current: Option<PathId>,
}

/// What changed and what must be sent.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[must_use = "the outgoing messages must be sent"]
pub struct Output {
    pub changes: Vec<SelectionChange>,
    pub outgoing: Vec<Outgoing>,
}

impl Output {
    pub fn is_empty(&self) -> bool {
        self.changes.is_empty() && self.outgoing.is_empty()
    }

    /// The messages addressed to `peer`.
    pub fn to(&self, peer: &AgentId) -> Vec<&Message> {
        self.outgoing
            .iter()
            .filter(|o| &o.to == peer)
            .map(|o| &o.message)
            .collect()
    }
}
