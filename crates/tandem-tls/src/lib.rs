//! Mutual TLS for Tandem's node-to-node cluster channel, and the certificates of enrolled agents.
//!
//! By default every node derives the same cluster CA from the cluster secret (HKDF-SHA256 → Ed25519),
//! issues itself a short-lived certificate signed by it, and trusts exactly the peers whose
//! certificates chain to that CA: knowing the secret is what makes a node a member. Operators may
//! bring their own CA and certificates from PEM files instead ([`ClusterTls::from_pem_files`]).
//!
//! Server side:
//! ```no_run
//! # async fn serve(tls: tandem_tls::ClusterTls, app: axum::Router) -> std::io::Result<()> {
//! let tcp = tokio::net::TcpListener::bind("127.0.0.1:8100").await?;
//! axum::serve(tandem_tls::TlsListener::new(tcp, tls.acceptor()), app).await
//! # }
//! ```
//! Client side:
//! ```no_run
//! # async fn call(tls: tandem_tls::ClusterTls) -> Result<(), Box<dyn std::error::Error>> {
//! let http = tls.https_client()?;
//! let status = http.get("https://127.0.0.1:8100/cluster/ping").send().await?.status();
//! # Ok(()) }
//! ```
//! Certificates expire (7 days by default): call [`ClusterTls::rotate`] on a timer, or keep the
//! task of [`ClusterTls::spawn_rotation`] running.

mod agent_cert;
mod agent_tls;
mod api_tls;
mod client;
mod cluster_tls;
mod derived_ca;
mod error;
mod listener;
mod node_cert;
mod pem_files;
mod trust;

pub use agent_cert::{agent_dns_name, AgentCa, AGENT_CERT_VALIDITY};
pub use agent_tls::{
    peer_agent_name, AgentTls, AgentTlsError, RevocationCheck, SignedStatementError, SigningFailed,
    ANY_AGENT_SERVER_NAME, MESH_ALPN,
};
pub use api_tls::{ApiTls, API_CERT_FILES_CHECK, API_CERT_VALIDITY};
pub use cluster_tls::{
    ClusterTls, DerivedCaSettings, CLIENT_ALPN, DEFAULT_NODE_CERT_VALIDITY, MAX_NODE_CERT_VALIDITY,
    MIN_NODE_CERT_VALIDITY, SERVER_ALPN,
};
pub use derived_ca::{
    AGENT_CA_COMMON_NAME, API_CA_COMMON_NAME, DERIVED_CA_COMMON_NAME, MIN_SECRET_LEN,
};
pub use error::TlsError;
pub use listener::{TlsListener, DEFAULT_HANDSHAKE_TIMEOUT};
pub use node_cert::node_dns_name;
pub use pem_files::{ClusterPemFiles, DEFAULT_RELOAD_INTERVAL};

/// The DNS name every node certificate carries and every client verifies, whatever address it
/// dialled: nodes are reached by IP, and a certificate per address would break on every move.
pub const CLUSTER_SERVER_NAME: &str = "cluster.tandem";
