//! Ingresses: where client TCP connections enter the mesh.
//!
//! - [`socks5`]: a SOCKS5 server (CONNECT only; no auth or username/password) on a
//!   [`TcpListener`](tokio::net::TcpListener), 127.0.0.1:1080 by default.
//! - [`forward`]: TCP port-forwards, `listen = "127.0.0.1:5432"` to `to = "db.internal:5432"`.
//!
//! Both ask a [`MeshDialer`](crate::dial::MeshDialer) for every connection and never dial a
//! destination themselves: with no route the client gets an error, never a direct connection
//! around the mesh. Each runs as one task per listener, returned as an [`Ingress`]; dropping it
//! stops the listener and cuts every connection it carries.

mod accept;
pub mod forward;
mod relay;
pub mod socks5;
mod userpass;

use std::net::SocketAddr;
use std::time::Duration;

use tokio::task::JoinHandle;

pub use forward::{serve_forward, ForwardSpec, ForwardSpecError, ForwardTarget};
pub use socks5::{
    reply_code, serve_socks5, CheckFuture, CredentialCheck, HandshakeError, Socks5Auth,
    DEFAULT_SOCKS5_LISTEN,
};
pub use userpass::UserPasswordError;

/// Bounds on what one ingress listener holds, so idle or hostile clients cannot exhaust the
/// agent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IngressLimits {
    /// Client connections carried at once; a new one beyond this is closed at once.
    pub max_connections: usize,
    /// How long a SOCKS5 client has from connecting to sending a complete request (greeting,
    /// authentication, command), so half-open clients cannot pile up.
    pub handshake_timeout: Duration,
    /// How long the dialer may take to open a stream through the mesh. The runtime retries
    /// other paths within its own, shorter timeouts; this only stops a client waiting forever
    /// if the dialer never answers.
    pub dial_timeout: Duration,
}

impl IngressLimits {
    pub const DEFAULT_MAX_CONNECTIONS: usize = 10_000;
    pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
    pub const DEFAULT_DIAL_TIMEOUT: Duration = Duration::from_secs(30);
}

impl Default for IngressLimits {
    fn default() -> Self {
        Self {
            max_connections: Self::DEFAULT_MAX_CONNECTIONS,
            handshake_timeout: Self::DEFAULT_HANDSHAKE_TIMEOUT,
            dial_timeout: Self::DEFAULT_DIAL_TIMEOUT,
        }
    }
}

/// A running ingress listener and the connections it carries.
///
/// Dropping it (or calling [`Ingress::stop`]) closes the listener and every client connection
/// it accepted, so a runtime that shuts down leaves nothing half-open behind.
#[derive(Debug)]
#[must_use = "dropping an Ingress stops it"]
pub struct Ingress {
    local_addr: Option<SocketAddr>,
    task: JoinHandle<()>,
}

impl Ingress {
    /// The address the listener is bound to (useful with port 0).
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.local_addr
    }

    /// Stops accepting and cuts every connection.
    pub fn stop(self) {
        drop(self);
    }

    /// Whether the accept loop has ended (only when stopped or on a panic).
    pub fn is_finished(&self) -> bool {
        self.task.is_finished()
    }
}

impl Drop for Ingress {
    fn drop(&mut self) {
        // The accept task owns the connections' JoinSet: aborting it aborts them all.
        self.task.abort();
    }
}
