//! Active views for unit tests: node `id` holds the role (or none does), reachable at
//! 127.0.0.1:820<id> (API) and 127.0.0.1:810<id> (cluster port).

use tandem_ha::{ActiveNode, ActiveView};

pub(crate) fn active_view(active: Option<u64>, fencing_token: u64, is_self: bool) -> ActiveView {
    ActiveView {
        active: active.map(|id| ActiveNode {
            id,
            api_addr: format!("127.0.0.1:820{id}"),
            cluster_addr: format!("127.0.0.1:810{id}"),
        }),
        fencing_token,
        is_self,
        stepping_down: false,
    }
}
