//! The Tandem server: settings, the client API, the cluster port, and the start-up that ties
//! them to the HA and replication backends.
#![forbid(unsafe_code)]

mod active_channel;
mod agent_api;
mod agents_api;
mod api;
mod auth_api;
mod cluster_api;
pub mod config;
mod credentials;
mod data_api;
mod data_format;
mod error;
mod events;
mod events_api;
mod extract;
mod forward;
mod health;
mod issued_secret;
mod keys;
mod membership_api;
mod registry;
mod removal_watch;
mod replicated;
mod rqlite;
mod rqlite_api;
mod server;
mod server_metrics;
mod stall_watch;
mod state;
mod storage_quota;
#[cfg(test)]
mod test_views;
mod token_api;
mod ui;

pub use active_channel::Advertised;
pub use agents_api::INDEX_HEADER;
pub use cluster_api::{decode_cluster_request, ClusterRequest};
pub use config::{ConfigError, ServerArgs, Settings};
pub use data_api::{parse_api_request, ApiEndpoint, DataRequest, Read};
pub use error::ApiError;
pub use replicated::Consistency;
pub use server::{RunningServer, StartError};

/// Seeds an empty data folder from a backup file; see docs/operations.md.
pub fn restore_backup(
    backup: &std::path::Path,
    data_dir: &std::path::Path,
) -> Result<(), tandem_store::StoreError> {
    tandem_store::StateMachine::prepare_restore(backup, data_dir)
}
