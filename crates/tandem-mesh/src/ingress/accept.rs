//! The accept loop both ingresses share: a cap on connections carried at once, and a task per
//! connection owned by the loop so that stopping the loop cuts them all.
//!
//! At the cap, a new client does not simply bounce: the oldest client still in its handshake
//! is cut off to make room. Idle or half-open clients (10 000 of them, say) can then only push
//! each other out, never starve a real client, whose handshake takes a round trip. Clients
//! past their handshake are carried and never cut to make room; when all of them are, a new
//! client is closed at once.

use std::collections::VecDeque;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::task::{AbortHandle, JoinSet};
use tokio::time::Instant;

use super::relay::reset;
use super::Ingress;

/// Pause after a failed `accept` (e.g. out of file descriptors), so the loop does not spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// At most one log line per this interval for each kind of cut-off: a flood of clients must
/// not become a flood of log lines.
const THROTTLED_LOG_INTERVAL: Duration = Duration::from_secs(1);

/// Handed to each client's task: it says when the client finished its handshake, from which
/// point the client is never cut off to make room for another.
#[derive(Clone, Debug, Default)]
pub(super) struct Handshake(Arc<AtomicBool>);

impl Handshake {
    pub(super) fn done(&self) {
        self.0.store(true, Ordering::Relaxed);
    }

    fn is_done(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

/// The clients in accept order that may still be in their handshake; the front is the oldest.
/// Entries of clients that finished (or left) are dropped lazily, so each costs O(1) overall.
#[derive(Default)]
struct Handshaking {
    clients: VecDeque<(AbortHandle, Handshake)>,
}

impl Handshaking {
    fn push(&mut self, task: AbortHandle, handshake: Handshake, max_connections: usize) {
        self.clients.push_back((task, handshake));
        // Long-lived clients at the front would keep finished ones behind them forever.
        if self.clients.len() > 2 * max_connections.max(1) {
            self.clients
                .retain(|(task, handshake)| !task.is_finished() && !handshake.is_done());
        }
    }

    /// Cuts off the oldest client still in its handshake; false when there is none.
    fn cut_oldest(&mut self) -> bool {
        while let Some((task, handshake)) = self.clients.pop_front() {
            if !task.is_finished() && !handshake.is_done() {
                task.abort();
                return true;
            }
        }
        false
    }
}

/// Starts accepting on `listener`; `handle` serves one client connection and calls
/// [`Handshake::done`] once the client has said what it wants.
pub(super) fn spawn<F, Fut>(
    listener: TcpListener,
    kind: &'static str,
    max_connections: usize,
    handle: F,
) -> Ingress
where
    F: Fn(TcpStream, SocketAddr, Handshake) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let local_addr = listener.local_addr().ok();
    tracing::info!(kind, listen = ?local_addr, max_connections, "ingress listening");
    let task = tokio::spawn(accept_loop(listener, kind, max_connections, handle));
    Ingress { local_addr, task }
}

async fn accept_loop<F, Fut>(
    listener: TcpListener,
    kind: &'static str,
    max_connections: usize,
    handle: F,
) where
    F: Fn(TcpStream, SocketAddr, Handshake) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let mut clients = JoinSet::new();
    let mut handshaking = Handshaking::default();
    let refusals = ThrottledLog::new(
        "ingress at its connection cap, every client past its handshake: new connection closed",
    );
    let cut_offs = ThrottledLog::new("ingress at its connection cap: the oldest client still in its handshake was cut off to make room");
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    // Count only live connections: finished ones may not be reaped yet.
                    while let Some(done) = clients.try_join_next() {
                        log_task_end(kind, done);
                    }
                    if clients.len() >= max_connections {
                        if handshaking.cut_oldest() {
                            cut_offs.note(kind, peer);
                        } else {
                            refusals.note(kind, peer);
                            reset(&stream);
                            continue;
                        }
                    }
                    // Small writes (handshake replies, interactive traffic) go out at once.
                    let _ = stream.set_nodelay(true);
                    let handshake = Handshake::default();
                    let task = clients.spawn(handle(stream, peer, handshake.clone()));
                    handshaking.push(task, handshake, max_connections);
                }
                Err(error) => {
                    tracing::warn!(kind, %error, "ingress accept failed");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                }
            },
            Some(done) = clients.join_next(), if !clients.is_empty() => log_task_end(kind, done),
        }
    }
}

fn log_task_end(kind: &'static str, done: Result<(), tokio::task::JoinError>) {
    if let Err(error) = done {
        if error.is_panic() {
            tracing::error!(kind, %error, "ingress connection task panicked");
        }
    }
}

/// Logs one kind of cut-off: the first at once, then a count at most once per interval.
/// Shared between tasks, so the clients' own tasks can use it too.
#[derive(Debug)]
pub(super) struct ThrottledLog {
    message: &'static str,
    state: Mutex<ThrottleState>,
}

#[derive(Debug, Default)]
struct ThrottleState {
    last_logged: Option<Instant>,
    suppressed: u64,
}

impl ThrottledLog {
    pub(super) fn new(message: &'static str) -> Self {
        Self {
            message,
            state: Mutex::default(),
        }
    }

    pub(super) fn note(&self, kind: &'static str, peer: SocketAddr) {
        let now = Instant::now();
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let due = state
            .last_logged
            .is_none_or(|last| now.duration_since(last) >= THROTTLED_LOG_INTERVAL);
        if !due {
            state.suppressed += 1;
            return;
        }
        tracing::warn!(
            kind,
            %peer,
            since_last_line = state.suppressed,
            "{}",
            self.message
        );
        state.last_logged = Some(now);
        state.suppressed = 0;
    }
}
