//! What the external lock tests share: nodes on made-up addresses, and waiting for the one
//! holder.

use std::sync::Arc;
use std::time::Duration;

use tandem_ha::{ActiveNode, HaBackend, LeasedHa};
use tandem_testkit::wait_for;

/// Long enough for anything one TTL bounds, on a loaded machine.
pub const WITHIN: Duration = Duration::from_secs(20);

pub fn node(id: u64) -> ActiveNode {
    ActiveNode {
        id,
        api_addr: format!("127.0.0.1:82{id:02}"),
        cluster_addr: format!("127.0.0.1:81{id:02}"),
    }
}

/// The index and token of the one node of `nodes` that holds the role, once exactly one does.
pub async fn the_active(nodes: &[&Arc<LeasedHa>]) -> (usize, u64) {
    wait_for(WITHIN, "exactly one active node", async || {
        let holding: Vec<(usize, u64)> = nodes
            .iter()
            .enumerate()
            .filter(|(_, n)| n.view().is_self)
            .map(|(i, n)| (i, n.view().fencing_token))
            .collect();
        (holding.len() == 1).then(|| holding[0])
    })
    .await
}
