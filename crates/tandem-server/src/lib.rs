//! The Tandem server: settings, the client API, the cluster port, and the node that ties them
//! to Raft and the state machine.
#![forbid(unsafe_code)]

mod api;
mod cluster_api;
pub mod config;
mod error;
mod extract;
mod forward;
mod health;
mod keys;
mod node;
mod proposals;
mod read_index;
mod server;
mod token_api;

pub use api::{parse_api_request, ApiEndpoint};
pub use cluster_api::{decode_cluster_request, ClusterRequest};
pub use config::{ConfigError, ServerArgs, Settings};
pub use error::ApiError;
pub use node::Node;
pub use server::{RunningServer, StartError};

/// Seeds an empty data folder from a backup file; see docs/operations.md.
pub fn restore_backup(
    backup: &std::path::Path,
    data_dir: &std::path::Path,
) -> Result<(), tandem_store::StoreError> {
    tandem_store::StateMachine::prepare_restore(backup, data_dir)
}
