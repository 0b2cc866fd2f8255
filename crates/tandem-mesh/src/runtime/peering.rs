//! Peers come and go: dial the configured ones and dial again with backoff when a connection
//! ends, take the ones that dial in, and give each connection its tasks (messages in, messages
//! out, flows in).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

use super::config::split_host_port;
use super::Inner;
use crate::advert::{AgentId, Message};
use crate::transport::PeerConnection;

/// Keeps dialing `addr` for as long as the runtime runs. An address whose agent is already
/// connected (it dialed this agent from the address it listens on, and both kept that
/// connection) counts as connected and is not dialed again until that connection ends.
pub(super) async fn dial_loop(inner: Arc<Inner>, addr: String) {
    let mut attempt: u32 = 0;
    loop {
        match connect(&inner, &addr).await {
            Ok(peer) => {
                attempt = 0;
                inner.core.set_dial(&addr, |d| {
                    d.peer = Some(peer.clone());
                    d.connected = true;
                    d.last_error = None;
                });
                // Wait until no connection to the peer is left, whichever side dialed it.
                while let Some(live) = inner.core.connection(&peer) {
                    let reason = live.closed().await;
                    tracing::debug!(%peer, %addr, "mesh connection ended: {reason}");
                }
                inner.core.set_dial(&addr, |d| {
                    d.connected = false;
                    d.last_error = Some("connection lost".into());
                });
            }
            Err(why) => {
                tracing::warn!(%addr, "mesh peer not reached: {why}");
                inner.core.set_dial(&addr, |d| {
                    d.connected = false;
                    d.last_error = Some(why);
                });
            }
        }
        let Some(delay) = inner.config.reconnect.delay(attempt, rand::random::<f64>()) else {
            tracing::error!(%addr, retries = attempt, "giving up on mesh peer (max_retries)");
            return;
        };
        attempt = attempt.saturating_add(1);
        tokio::time::sleep(delay).await;
    }
}

/// Connects to the agent at `addr`, or finds it connected already; names the peer.
async fn connect(inner: &Arc<Inner>, addr: &str) -> Result<AgentId, String> {
    let (host, port) = split_host_port(addr).ok_or_else(|| format!("{addr:?} is not host:port"))?;
    let target = tokio::net::lookup_host((host, port))
        .await
        .map_err(|e| format!("cannot resolve {host}: {e}"))?
        .next()
        .ok_or_else(|| format!("{host} has no address"))?;
    if let Some(peer) = inner.core.peer_at(target) {
        return Ok(peer);
    }
    match inner.endpoint.dial(target).await {
        Ok(conn) => {
            let peer = conn.peer().clone();
            attach(inner, conn, true);
            Ok(peer)
        }
        // Both agents dialed at once and the peer kept its own connection, which arrived here.
        Err(e) => inner.core.peer_at(target).ok_or_else(|| e.to_string()),
    }
}

/// Takes every peer that dials in.
pub(super) async fn accept_loop(inner: Arc<Inner>) {
    while let Some(conn) = inner.endpoint.accept().await {
        attach(&inner, conn, false);
    }
}

/// Registers a connection with the table and starts its tasks.
fn attach(inner: &Arc<Inner>, conn: PeerConnection, dialed_here: bool) {
    let (outbox, queue) = mpsc::unbounded_channel();
    let Some(conn_id) = inner.core.connected(&conn, dialed_here, outbox) else {
        return;
    };
    tracing::info!(peer = %conn.peer(), remote = %conn.remote_address(), dialed_here, "mesh peer up");
    tokio::spawn(write_messages(conn.clone(), queue));
    tokio::spawn(accept_flows(inner.clone(), conn.clone()));
    tokio::spawn(read_messages(inner.clone(), conn, conn_id));
}

async fn write_messages(conn: PeerConnection, mut queue: mpsc::UnboundedReceiver<Message>) {
    while let Some(message) = queue.recv().await {
        if let Err(e) = conn.send(&message).await {
            tracing::debug!(peer = %conn.peer(), "a mesh message was not sent: {e}");
            conn.close("the control stream broke");
            return;
        }
    }
}

async fn read_messages(inner: Arc<Inner>, conn: PeerConnection, conn_id: u64) {
    let peer = conn.peer().clone();
    loop {
        match conn.recv().await {
            Ok(message) => {
                let mut refused = None;
                inner.core.change(|table, now| {
                    table.receive(&peer, message, now).unwrap_or_else(|e| {
                        refused = Some(e);
                        crate::Output::default()
                    })
                });
                if let Some(e) = refused {
                    tracing::warn!(%peer, "mesh message refused: {e}");
                }
            }
            Err(e) => {
                tracing::debug!(%peer, "mesh control stream ended: {e}");
                break;
            }
        }
    }
    // The transport closes the connection on every control error; make sure, then go down.
    conn.close("the control stream ended");
    inner.core.disconnected(&peer, conn_id);
}

async fn accept_flows(inner: Arc<Inner>, conn: PeerConnection) {
    while let Ok(incoming) = conn.accept_flow().await {
        let inner = inner.clone();
        tokio::spawn(async move {
            super::flows::serve(&inner.core, &inner.exits, incoming).await;
        });
    }
}

/// Re-advertises own routes every `advertise_interval` and calls `expire` at the table's
/// next deadline.
pub(super) async fn clock_loop(inner: Arc<Inner>) {
    let interval = inner.config.advertise_interval;
    let mut next_refresh = tokio::time::Instant::now() + interval;
    loop {
        let moved = inner.core.deadline_moved.notified();
        let deadline = inner.core.lock().table.next_deadline();
        let wake = deadline
            .map(|ms| inner.core.instant_of(ms))
            .map_or(next_refresh, |at| at.min(next_refresh));
        tokio::select! {
            () = tokio::time::sleep_until(wake) => {}
            () = moved => continue,
        }
        let now = tokio::time::Instant::now();
        if now >= next_refresh {
            inner.core.change(|table, now_ms| table.refresh(now_ms));
            next_refresh = now + interval;
        }
        if deadline.is_some_and(|ms| inner.core.instant_of(ms) <= now) {
            inner.core.change(|table, now_ms| table.expire(now_ms));
        }
        // A deadline that did not move after expire would spin; let the clock advance.
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}
