//! The mesh runtime: the I/O around one [`RouteTable`]. It owns this agent's
//! [`MeshEndpoint`], dials its configured peers (and again, with backoff, when a connection
//! ends), takes the peers that dial in, feeds every message and every peer up or down to the
//! table and sends what the table answers at once; it originates and refreshes this agent's
//! exit routes and calls `expire` at the table's deadline. It serves the flows peers open (as
//! exit or transit), and opens flows for the ingress through [`MeshDialer`].
//!
//! - [`config`]: what it is started with.
//! - [`decide`]: its pure decisions (an open's acknowledgement timeout, health by role).
//! - [`resolve`]: how an exit resolves names: the system resolver or its own DNS servers.
//! - `core`: the table and the live peers under one lock; `peering`: the connection tasks;
//!   `flows`: exit and transit; `dialer`: the ingress side; `splice`: bytes both ways.

pub mod config;
mod core;
pub mod decide;
mod dialer;
mod flows;
mod peering;
pub mod resolve;
mod splice;
mod status;

use std::sync::{Arc, Mutex};

use tandem_tls::AgentTls;
use tokio::task::JoinHandle;

pub use config::{MeshConfig, MeshConfigError, MeshRoles};
pub use decide::{mesh_health, open_timeout, MeshFacts};
pub use resolve::DnsServer;
pub use status::{MeshStatus, PeerStatus};

use self::core::Core;
use self::flows::Exits;
use crate::advert::AgentId;
use crate::policy::AllowAll;
use crate::table::RouteTable;
use crate::transport::{EndpointError, MeshEndpoint};

/// Why a runtime did not start.
#[derive(Debug, thiserror::Error)]
pub enum MeshError {
    #[error(transparent)]
    Config(#[from] MeshConfigError),
    #[error(transparent)]
    Endpoint(#[from] EndpointError),
    #[error("the agent certificate names {certificate}, but the mesh was started as {me}")]
    NameMismatch { certificate: String, me: AgentId },
    #[error("this agent's exit routes cannot be advertised: {0}")]
    Exits(#[from] crate::AdvertError),
}

/// A running mesh runtime. Dropping it (or [`MeshRuntime::shutdown`]) closes every connection
/// at once, so peers see it go immediately.
pub struct MeshRuntime {
    inner: Arc<Inner>,
}

pub(crate) struct Inner {
    me: AgentId,
    config: MeshConfig,
    endpoint: MeshEndpoint,
    core: Core,
    exits: Exits,
    /// Why this exit's routes are withdrawn now (its upstream probe fails), if they are.
    withdrawn: Mutex<Option<String>>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

impl std::fmt::Debug for MeshRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MeshRuntime")
            .field("me", &self.inner.me)
            .field("endpoint", &self.inner.endpoint)
            .finish_non_exhaustive()
    }
}

impl MeshRuntime {
    /// Listens on `config.listen`, originates the exit routes, dials the peers. Must be called
    /// within a tokio runtime.
    pub fn start(config: MeshConfig, tls: AgentTls, me: AgentId) -> Result<Self, MeshError> {
        config.check()?;
        if tls.name() != me.as_str() {
            return Err(MeshError::NameMismatch {
                certificate: tls.name().to_owned(),
                me,
            });
        }
        let endpoint = MeshEndpoint::bind(config.listen, &tls, config.transport.clone())?;
        // Milliseconds since the epoch exceed every sequence number used before a restart.
        let mut table = RouteTable::new(
            me.clone(),
            config.table.clone(),
            Arc::new(AllowAll),
            core::unix_ms(),
        );
        let exit_routes = config.exits();
        if !exit_routes.is_empty() {
            // No peer yet: nothing to send.
            let _ = table.originate(exit_routes, 0)?;
        }
        let core = Core::new(table, config.peers.iter().cloned());
        let exits = Exits {
            routes: config.exit_routes.clone(),
            domains: config.exit_domains.clone(),
            dial_timeout: config.exit_dial_timeout,
            resolver: resolve::ExitResolver::new(&config.exit_dns),
        };
        let inner = Arc::new(Inner {
            me,
            config,
            endpoint,
            core,
            exits,
            withdrawn: Mutex::new(None),
            tasks: Mutex::new(Vec::new()),
        });
        let mut tasks = vec![
            tokio::spawn(peering::accept_loop(inner.clone())),
            tokio::spawn(peering::clock_loop(inner.clone())),
        ];
        for addr in &inner.config.peers {
            tasks.push(tokio::spawn(peering::dial_loop(
                inner.clone(),
                addr.clone(),
            )));
        }
        *inner.tasks.lock().unwrap_or_else(|e| e.into_inner()) = tasks;
        tracing::info!(
            me = %inner.me,
            listen = ?inner.endpoint.local_addr().ok(),
            peers = inner.config.peers.len(),
            exits = inner.config.exits().len(),
            "mesh started"
        );
        Ok(Self { inner })
    }

    pub fn me(&self) -> &AgentId {
        &self.inner.me
    }

    /// The UDP address the mesh listens on.
    pub fn local_addr(&self) -> std::io::Result<std::net::SocketAddr> {
        self.inner.endpoint.local_addr()
    }

    /// Closes the connection to every connected peer `cut_off` names (e.g. agents whose
    /// credentials were revoked): each goes down at once, its paths withdrawn and the streams
    /// through it reset. Configured addresses are dialed again as usual, so the handshake's
    /// revocation check must already refuse them. Answers the peers disconnected.
    pub fn disconnect(&self, cut_off: impl Fn(&AgentId) -> bool, reason: &str) -> Vec<AgentId> {
        let connected: Vec<AgentId> = self.inner.core.lock().peers.keys().cloned().collect();
        connected
            .into_iter()
            .filter(|peer| cut_off(peer) && self.inner.core.disconnect(peer, reason))
            .collect()
    }

    /// Withdraws this exit's own routes from every peer at once, e.g. while its upstream probe
    /// fails; `reason` shows in its status until [`MeshRuntime::restore_exits`]. Answers false
    /// when they were withdrawn already (then only the reason is replaced).
    pub fn withdraw_exits(&self, reason: &str) -> bool {
        let mut withdrawn = self
            .inner
            .withdrawn
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let first = withdrawn.is_none();
        *withdrawn = Some(reason.to_owned());
        if first {
            let dests: Vec<_> = self
                .inner
                .config
                .exits()
                .into_iter()
                .map(|r| r.dest)
                .collect();
            self.inner
                .core
                .change(|table, now| table.withdraw_own(&dests, now));
        }
        first
    }

    /// Advertises this exit's own routes again after [`MeshRuntime::withdraw_exits`]; answers
    /// false when they were not withdrawn.
    pub fn restore_exits(&self) -> bool {
        let mut withdrawn = self
            .inner
            .withdrawn
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if withdrawn.take().is_none() {
            return false;
        }
        let routes = self.inner.config.exits();
        self.inner.core.change(|table, now| {
            // The same routes were accepted at start, so this does not fail.
            table.originate(routes, now).unwrap_or_else(|e| {
                tracing::error!("this exit's routes cannot be advertised again: {e}");
                crate::Output::default()
            })
        });
        true
    }

    /// Why this exit's routes are withdrawn now, if they are.
    pub fn exits_withdrawn(&self) -> Option<String> {
        self.inner
            .withdrawn
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Stops dialing and closes every connection now.
    pub fn shutdown(&self) {
        let tasks =
            std::mem::take(&mut *self.inner.tasks.lock().unwrap_or_else(|e| e.into_inner()));
        for task in tasks {
            task.abort();
        }
        self.inner.endpoint.close();
    }
}

impl Drop for MeshRuntime {
    fn drop(&mut self) {
        self.shutdown();
    }
}
