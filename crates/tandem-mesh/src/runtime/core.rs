//! The runtime's state: the route table, the live connection per peer with its ordered outbox,
//! and the configured peers' dial state. Every change of the table goes through here, under
//! one lock held only for the (synchronous) call, and its output is queued to the peers'
//! outboxes before the lock is released, so that each peer hears messages in table order.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::{mpsc, Notify};
use tokio::time::Instant;

use crate::advert::{AgentId, Message};
use crate::output::Output;
use crate::table::RouteTable;
use crate::transport::{PeerConnection, Traffic};

/// The live connection to one peer.
pub(super) struct PeerLink {
    pub conn: PeerConnection,
    pub conn_id: u64,
    /// This agent dialed it (else the peer did).
    pub dialed_here: bool,
    pub outbox: mpsc::UnboundedSender<Message>,
    /// Unix milliseconds when it connected.
    pub since_ms: u64,
}

/// A configured peer address and how dialing it goes.
#[derive(Clone, Debug, Default)]
pub(super) struct DialState {
    pub peer: Option<AgentId>,
    pub connected: bool,
    /// Unix milliseconds of the last change.
    pub since_ms: u64,
    pub last_error: Option<String>,
}

pub(super) struct State {
    pub table: RouteTable,
    pub peers: BTreeMap<AgentId, PeerLink>,
    pub dials: BTreeMap<String, DialState>,
    /// How often a destination's chosen path changed since the start (a path chosen, given up
    /// or replaced): `/healthz` shows it so that flapping can be seen and tested.
    pub route_changes: u64,
    /// What the connections that are gone carried; the live ones add their own.
    pub traffic_of_closed: Traffic,
    next_conn_id: u64,
}

/// The state and the monotonic clock the table reads.
pub(super) struct Core {
    state: Mutex<State>,
    start: Instant,
    /// Poked after every table change: the next deadline may have moved.
    pub deadline_moved: Notify,
}

pub(crate) fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

impl Core {
    pub fn new(table: RouteTable, dials: impl IntoIterator<Item = String>) -> Self {
        let since_ms = unix_ms();
        let dials = dials
            .into_iter()
            .map(|addr| {
                let state = DialState {
                    since_ms,
                    ..DialState::default()
                };
                (addr, state)
            })
            .collect();
        Self {
            state: Mutex::new(State {
                table,
                peers: BTreeMap::new(),
                dials,
                route_changes: 0,
                traffic_of_closed: Traffic::default(),
                next_conn_id: 0,
            }),
            start: Instant::now(),
            deadline_moved: Notify::new(),
        }
    }

    /// Milliseconds on the runtime's monotonic clock.
    pub fn now_ms(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// The instant a table deadline (in `now_ms` terms) falls on.
    pub fn instant_of(&self, ms: u64) -> Instant {
        self.start + Duration::from_millis(ms)
    }

    pub fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs `change` on the table and sends what it outputs at once.
    pub fn change(&self, change: impl FnOnce(&mut RouteTable, u64) -> Output) {
        let now = self.now_ms();
        let mut state = self.lock();
        let output = change(&mut state.table, now);
        state.send(output);
        drop(state);
        self.deadline_moved.notify_one();
    }

    /// A new connection to `conn.peer()`. Returns its id, or `None` when an existing
    /// connection to the same peer is kept instead (then the new one is closed). A redial by
    /// the same side replaces the old connection (its dialer lost it); with one dialed by each
    /// side, the one dialed by the agent with the lower name wins on both sides, so that two
    /// agents that dial each other settle on the same connection.
    pub fn connected(
        &self,
        conn: &PeerConnection,
        dialed_here: bool,
        outbox: mpsc::UnboundedSender<Message>,
    ) -> Option<u64> {
        let peer = conn.peer().clone();
        let now = self.now_ms();
        let mut state = self.lock();
        let me_lower = state.table.me() < &peer;
        if let Some(old) = state.peers.get(&peer) {
            let new_wins = old.dialed_here == dialed_here || dialed_here == me_lower;
            if old.conn.close_reason().is_none() && !new_wins {
                drop(state);
                conn.close("a connection to this peer already exists");
                return None;
            }
            old.conn.close("replaced by a newer connection");
            let output = state.table.peer_down(&peer, now);
            state.remove_link(&peer);
            state.send(output);
        }
        state.next_conn_id += 1;
        let conn_id = state.next_conn_id;
        state.peers.insert(
            peer.clone(),
            PeerLink {
                conn: conn.clone(),
                conn_id,
                dialed_here,
                outbox,
                since_ms: unix_ms(),
            },
        );
        let output = state.table.peer_up(peer, now);
        state.send(output);
        drop(state);
        self.deadline_moved.notify_one();
        Some(conn_id)
    }

    /// Connection `conn_id` to `peer` is gone; the peer is down unless a newer one replaced it.
    pub fn disconnected(&self, peer: &AgentId, conn_id: u64) {
        let now = self.now_ms();
        let mut state = self.lock();
        if state.peers.get(peer).map(|l| l.conn_id) != Some(conn_id) {
            return;
        }
        state.remove_link(peer);
        let output = state.table.peer_down(peer, now);
        state.send(output);
        drop(state);
        tracing::info!(%peer, "mesh peer down");
        self.deadline_moved.notify_one();
    }

    /// Closes the live connection to `peer` now and takes it down, as when the connection
    /// breaks. False when there is none.
    pub fn disconnect(&self, peer: &AgentId, reason: &str) -> bool {
        let now = self.now_ms();
        let mut state = self.lock();
        let Some(link) = state.remove_link(peer) else {
            return false;
        };
        link.conn.close(reason);
        let output = state.table.peer_down(peer, now);
        state.send(output);
        drop(state);
        tracing::info!(%peer, reason, "mesh peer disconnected");
        self.deadline_moved.notify_one();
        true
    }

    /// The live connection to `peer`.
    pub fn connection(&self, peer: &AgentId) -> Option<PeerConnection> {
        self.lock().peers.get(peer).map(|l| l.conn.clone())
    }

    /// The connected peer whose connection comes from `addr`, if any.
    pub fn peer_at(&self, addr: SocketAddr) -> Option<AgentId> {
        let state = self.lock();
        let mut links = state.peers.iter();
        links
            .find(|(_, link)| {
                link.conn.remote_address() == addr && link.conn.close_reason().is_none()
            })
            .map(|(peer, _)| peer.clone())
    }

    /// Starts showing `addr` as a peer address that is dialed.
    pub fn add_dial(&self, addr: &str) {
        let state = DialState {
            since_ms: unix_ms(),
            ..DialState::default()
        };
        self.lock().dials.insert(addr.to_owned(), state);
    }

    /// `addr` is dialed no more.
    pub fn remove_dial(&self, addr: &str) {
        self.lock().dials.remove(addr);
    }

    pub fn set_dial(&self, addr: &str, update: impl FnOnce(&mut DialState)) {
        let mut state = self.lock();
        if let Some(dial) = state.dials.get_mut(addr) {
            update(dial);
            dial.since_ms = unix_ms();
        }
    }
}

impl State {
    /// Takes the link to `peer` out, keeping what its connection carried in the totals.
    pub fn remove_link(&mut self, peer: &AgentId) -> Option<PeerLink> {
        let link = self.peers.remove(peer)?;
        self.traffic_of_closed = self.traffic_of_closed + link.conn.traffic();
        Some(link)
    }

    /// What every connection, gone or live, has carried.
    pub fn traffic(&self) -> Traffic {
        self.peers
            .values()
            .fold(self.traffic_of_closed, |total, link| {
                total + link.conn.traffic()
            })
    }

    /// Counts the choices that changed and queues every outgoing message to its peer's outbox,
    /// in order.
    pub fn send(&mut self, output: Output) {
        for change in &output.changes {
            self.route_changes = self.route_changes.saturating_add(1);
            // Rare by design (failover, hold-down), so worth a line at the default level.
            tracing::info!(
                dest = %change.dest,
                previous = ?change.previous,
                current = ?change.current,
                "mesh route choice changed"
            );
        }
        for outgoing in output.outgoing {
            match self.peers.get(&outgoing.to) {
                Some(link) => {
                    // A closed outbox means the connection is going; its peer_down follows.
                    let _ = link.outbox.send(outgoing.message);
                }
                None => tracing::debug!(peer = %outgoing.to, "no outbox for a mesh message"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::advert::RouteSpec;
    use crate::policy::AllowAll;
    use crate::proof::NamedProofs;
    use crate::table::TableConfig;

    fn agent(name: &str) -> AgentId {
        AgentId::new(name).expect("valid test name")
    }

    fn exit_routes(cidr: &str) -> Vec<RouteSpec> {
        vec![RouteSpec::new(
            cidr.parse().expect("valid test prefix"),
            100,
        )]
    }

    #[test]
    fn every_change_of_a_chosen_path_is_counted_and_nothing_else() {
        let table = RouteTable::new(
            agent("exit-a"),
            TableConfig::default(),
            Arc::new(AllowAll),
            Arc::new(NamedProofs {
                me: agent("exit-a"),
            }),
            1,
        );
        let core = Core::new(table, Vec::new());
        let originate = |cidr: &str| {
            core.change(|table, now| {
                table
                    .originate(exit_routes(cidr), now)
                    .expect("routes accepted")
            })
        };
        originate("10.20.0.0/16");
        assert_eq!(core.lock().route_changes, 1, "the first choice");
        // A refresh changes no choice; a peer without paths neither.
        core.change(|table, now| table.refresh(now));
        core.change(|table, now| table.peer_up(agent("t-1"), now));
        assert_eq!(core.lock().route_changes, 1);
        // One destination given up, another chosen.
        originate("10.30.0.0/16");
        assert_eq!(core.lock().route_changes, 3);
    }
}
