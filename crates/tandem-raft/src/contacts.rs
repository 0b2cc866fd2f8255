use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use tokio::time::Instant;

use crate::NodeId;

/// When this node last heard from each peer: a reply to an RPC it sent, or an RPC the peer sent.
#[derive(Clone, Default)]
pub struct PeerContacts(Arc<Mutex<BTreeMap<NodeId, Instant>>>);

impl PeerContacts {
    pub fn record(&self, peer: NodeId) {
        let mut map = self
            .0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        map.insert(peer, Instant::now());
    }

    /// Milliseconds since the last contact with `peer`, if there was one.
    pub fn millis_since(&self, peer: NodeId) -> Option<u64> {
        let map = self
            .0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        map.get(&peer).map(|at| at.elapsed().as_millis() as u64)
    }
}
