//! The mesh runtime: the I/O around one [`RouteTable`]. It owns this agent's
//! [`MeshEndpoint`], dials its configured peers and those the servers offer (and again, with
//! backoff, when a connection ends), takes the peers that dial in, feeds every message and every peer up or down to the
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
pub(crate) use splice::TCP_READ_BUFFER;
mod status;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use tandem_tls::AgentTls;
use tokio::task::JoinHandle;

pub use config::{MeshConfig, MeshConfigError, MeshRoles};
pub use decide::{dial_changes, mesh_health, open_timeout, own_routes, DialChanges, MeshFacts};
pub use resolve::DnsServer;
pub use status::{MeshStatus, PeerStatus};

pub(crate) use self::core::unix_ms;

use self::core::Core;
use self::flows::Exits;
use crate::advert::AgentId;
use crate::policy::Restrictions;
use crate::proof::AgentProofs;
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
    /// A dial loop per peer address: the configured ones and those the servers offer.
    dials: Mutex<BTreeMap<String, JoinHandle<()>>>,
    /// The restrictions the table's policy was made of.
    restrictions: Mutex<Restrictions>,
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
            Arc::new(config.restrictions.clone()),
            Arc::new(AgentProofs::new(tls.clone())),
            core::unix_ms(),
        );
        let (exit_routes, refused) = own_routes(&me, config.exits(), &config.restrictions);
        log_refused_own(&refused, &config.restrictions, &me);
        if !exit_routes.is_empty() {
            // No peer yet: nothing to send.
            let _ = table.originate(exit_routes, 0)?;
        }
        let core = Core::new(table, std::iter::empty());
        let exits = Exits {
            routes: config.exit_routes.clone(),
            domains: config.exit_domains.clone(),
            dial_timeout: config.exit_dial_timeout,
            resolver: resolve::ExitResolver::new(&config.exit_dns),
        };
        let restrictions = Mutex::new(config.restrictions.clone());
        let inner = Arc::new(Inner {
            me,
            config,
            endpoint,
            core,
            exits,
            withdrawn: Mutex::new(None),
            tasks: Mutex::new(Vec::new()),
            dials: Mutex::new(BTreeMap::new()),
            restrictions,
        });
        let tasks = vec![
            tokio::spawn(peering::accept_loop(inner.clone())),
            tokio::spawn(peering::clock_loop(inner.clone())),
        ];
        *inner.tasks.lock().unwrap_or_else(|e| e.into_inner()) = tasks;
        let runtime = Self { inner };
        runtime.dial(runtime.inner.config.peers.iter().cloned().collect());
        let inner = &runtime.inner;
        tracing::info!(
            me = %inner.me,
            listen = ?inner.endpoint.local_addr().ok(),
            peers = inner.config.peers.len(),
            exits = inner.config.exits().len(),
            "mesh started"
        );
        Ok(runtime)
    }

    /// Dials the configured peers and `learned` (the addresses the servers offer), and no
    /// others: a dial loop starts for each new address and stops for each one gone. A stopped
    /// loop's connection stays until it ends by itself (or is cut off, e.g. on revocation):
    /// a peer that leaves the registry has usually stopped anyway, and closing a working path
    /// on a directory change would only reset flows.
    pub fn set_learned_peers(&self, learned: impl IntoIterator<Item = String>) {
        let wanted = self
            .inner
            .config
            .peers
            .iter()
            .cloned()
            .chain(learned)
            .collect();
        self.dial(wanted);
    }

    fn dial(&self, wanted: BTreeSet<String>) {
        let inner = &self.inner;
        let mut dials = inner.dials.lock().unwrap_or_else(|e| e.into_inner());
        let running = dials.keys().cloned().collect();
        let changes = dial_changes(&running, &wanted);
        for addr in changes.stop {
            if let Some(task) = dials.remove(&addr) {
                task.abort();
            }
            inner.core.remove_dial(&addr);
            tracing::info!(%addr, "mesh peer address dialed no more");
        }
        for addr in changes.start {
            inner.core.add_dial(&addr);
            let task = tokio::spawn(peering::dial_loop(inner.clone(), addr.clone()));
            dials.insert(addr, task);
        }
    }

    /// Applies the servers' announce restrictions: advertisements from a restricted origin
    /// for anything outside its list are refused from now on, and stored ones are dropped; this
    /// agent's own exit routes outside its list are withdrawn (and come back when allowed).
    /// Nothing happens when they did not change.
    pub fn restrict(&self, restrictions: Restrictions) {
        let inner = &self.inner;
        {
            let mut current = inner.restrictions.lock().unwrap_or_else(|e| e.into_inner());
            if *current == restrictions {
                return;
            }
            *current = restrictions.clone();
        }
        let (_, refused) = own_routes(&inner.me, inner.config.exits(), &restrictions);
        log_refused_own(&refused, &restrictions, &inner.me);
        inner
            .core
            .change(|table, now| table.set_policy(Arc::new(restrictions), now));
        self.advertise_own();
    }

    /// Originates this agent's exit routes as they stand now: none while an upstream probe
    /// has them withdrawn, else those the servers' restrictions allow. The one place both
    /// the probe and the restrictions go through, so neither undoes the other.
    fn advertise_own(&self) {
        let inner = &self.inner;
        if inner.config.exits().is_empty() {
            return;
        }
        let withdrawn = inner
            .withdrawn
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_some();
        let own = if withdrawn {
            Vec::new()
        } else {
            let restrictions = inner.restrictions.lock().unwrap_or_else(|e| e.into_inner());
            own_routes(&inner.me, inner.config.exits(), &*restrictions).0
        };
        let mut failed = None;
        inner.core.change(|table, now| {
            table.originate(own, now).unwrap_or_else(|e| {
                failed = Some(e);
                crate::Output::default()
            })
        });
        if let Some(e) = failed {
            tracing::error!("this agent's exit routes cannot be advertised: {e}");
        }
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
        let first = self
            .inner
            .withdrawn
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .replace(reason.to_owned())
            .is_none();
        if first {
            self.advertise_own();
        }
        first
    }

    /// Advertises this exit's own routes again after [`MeshRuntime::withdraw_exits`] (those
    /// the servers' restrictions allow); answers false when they were not withdrawn.
    pub fn restore_exits(&self) -> bool {
        let was_withdrawn = self
            .inner
            .withdrawn
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
            .is_some();
        if was_withdrawn {
            self.advertise_own();
        }
        was_withdrawn
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
        let dials =
            std::mem::take(&mut *self.inner.dials.lock().unwrap_or_else(|e| e.into_inner()));
        for task in tasks.into_iter().chain(dials.into_values()) {
            task.abort();
        }
        self.inner.endpoint.close();
    }
}

/// Says in the log which of this agent's exit routes it does not advertise, and why.
fn log_refused_own(
    refused: &[crate::advert::Destination],
    restrictions: &Restrictions,
    me: &AgentId,
) {
    if refused.is_empty() {
        return;
    }
    let allowed: Vec<String> = restrictions
        .list(me)
        .unwrap_or_default()
        .iter()
        .map(ToString::to_string)
        .collect();
    for dest in refused {
        tracing::warn!(
            %dest,
            allowed = %allowed.join(", "),
            "exit route not advertised: the servers restrict what this agent may announce"
        );
    }
}

impl Drop for MeshRuntime {
    fn drop(&mut self) {
        self.shutdown();
    }
}
