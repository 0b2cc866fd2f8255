//! The accept loop both ingresses share: a cap on connections carried at once, and a task per
//! connection owned by the loop so that stopping the loop cuts them all.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::relay::reset;
use super::Ingress;

/// Pause after a failed `accept` (e.g. out of file descriptors), so the loop does not spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// At most one log line per this interval about connections refused over the cap: a flood of
/// clients must not become a flood of log lines.
const REFUSAL_LOG_INTERVAL: Duration = Duration::from_secs(1);

/// Starts accepting on `listener`; `handle` serves one client connection.
pub(super) fn spawn<F, Fut>(
    listener: TcpListener,
    kind: &'static str,
    max_connections: usize,
    handle: F,
) -> Ingress
where
    F: Fn(TcpStream, SocketAddr) -> Fut + Send + 'static,
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
    F: Fn(TcpStream, SocketAddr) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let mut clients = JoinSet::new();
    let mut refusals = RefusalLog::default();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    // Count only live connections: finished ones may not be reaped yet.
                    while let Some(done) = clients.try_join_next() {
                        log_task_end(kind, done);
                    }
                    if clients.len() >= max_connections {
                        refusals.note(kind, peer, max_connections);
                        reset(&stream);
                        continue;
                    }
                    // Small writes (handshake replies, interactive traffic) go out at once.
                    let _ = stream.set_nodelay(true);
                    clients.spawn(handle(stream, peer));
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

/// Logs refusals over the cap: the first at once, then a count at most once per interval.
#[derive(Default)]
struct RefusalLog {
    last_logged: Option<Instant>,
    suppressed: u64,
}

impl RefusalLog {
    fn note(&mut self, kind: &'static str, peer: SocketAddr, max_connections: usize) {
        let now = Instant::now();
        let due = self
            .last_logged
            .is_none_or(|last| now.duration_since(last) >= REFUSAL_LOG_INTERVAL);
        if !due {
            self.suppressed += 1;
            return;
        }
        tracing::warn!(
            kind,
            %peer,
            max_connections,
            refused_since_last_line = self.suppressed,
            "ingress at its connection cap: new connection closed"
        );
        self.last_logged = Some(now);
        self.suppressed = 0;
    }
}
