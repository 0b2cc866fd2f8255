//! A TLS listener for `axum::serve`: accepts TCP connections and completes each TLS handshake in
//! its own task, so a slow or hostile peer never holds up the others.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

/// How long a peer may take to complete its handshake unless told otherwise.
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// At most this many handshakes run at once; beyond it new connections wait in the kernel's
/// accept queue.
const MAX_CONCURRENT_HANDSHAKES: usize = 1024;

/// TCP listener plus TLS acceptor, usable as `axum::serve(TlsListener::new(tcp, acceptor), app)`.
///
/// Connections whose handshake fails (no client certificate, a certificate from another CA,
/// plain HTTP, garbage, or a timeout) are logged with the peer address and dropped.
pub struct TlsListener {
    tcp: TcpListener,
    acceptor: TlsAcceptor,
    handshake_timeout: Duration,
    // Finished handshakes come back through the set: it is the channel from the handshake tasks
    // to `accept`, and dropping the listener aborts handshakes still in flight.
    handshakes: JoinSet<Option<(TlsStream<TcpStream>, SocketAddr)>>,
}

impl TlsListener {
    pub fn new(tcp: TcpListener, acceptor: TlsAcceptor) -> Self {
        Self {
            tcp,
            acceptor,
            handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
            handshakes: JoinSet::new(),
        }
    }

    /// Gives each peer `timeout` to complete its handshake instead of
    /// [`DEFAULT_HANDSHAKE_TIMEOUT`].
    pub fn with_handshake_timeout(mut self, timeout: Duration) -> Self {
        self.handshake_timeout = timeout;
        self
    }

    fn start_handshake(&mut self, tcp: TcpStream, peer: SocketAddr) {
        let acceptor = self.acceptor.clone();
        let timeout = self.handshake_timeout;
        self.handshakes.spawn(async move {
            match tokio::time::timeout(timeout, acceptor.accept(tcp)).await {
                Ok(Ok(tls)) => Some((tls, peer)),
                Ok(Err(error)) => {
                    log_refused(peer, &error);
                    None
                }
                Err(_) => {
                    tracing::debug!(%peer, ?timeout, "cluster TLS: handshake timed out; dropped");
                    None
                }
            }
        });
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            let room = self.handshakes.len() < MAX_CONCURRENT_HANDSHAKES;
            tokio::select! {
                accepted = self.tcp.accept(), if room => match accepted {
                    Ok((tcp, peer)) => self.start_handshake(tcp, peer),
                    Err(error) => handle_accept_error(error).await,
                },
                Some(finished) = self.handshakes.join_next() => match finished {
                    Ok(Some(connection)) => return connection,
                    Ok(None) => {}
                    Err(error) if error.is_panic() => {
                        tracing::error!(%error, "cluster TLS: a handshake task panicked");
                    }
                    Err(_) => {}
                },
            }
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.tcp.local_addr()
    }
}

impl std::fmt::Debug for TlsListener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsListener")
            .field("local_addr", &self.tcp.local_addr().ok())
            .field("handshake_timeout", &self.handshake_timeout)
            .field("handshakes_in_flight", &self.handshakes.len())
            .finish_non_exhaustive()
    }
}

/// A refused certificate is worth a warning (a node with the wrong secret, or a stranger);
/// anything else (plain HTTP, port scans, resets) only a debug line.
fn log_refused(peer: SocketAddr, error: &io::Error) {
    let tls_error = error
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>());
    match tls_error {
        Some(
            tls @ (rustls::Error::InvalidCertificate(_)
            | rustls::Error::NoCertificatesPresented
            | rustls::Error::InvalidCertRevocationList(_)),
        ) => {
            tracing::warn!(
                %peer,
                error = %tls,
                "cluster TLS: peer certificate refused (a node with another cluster secret or CA?); \
                 connection dropped"
            );
        }
        _ => tracing::debug!(%peer, %error, "cluster TLS: handshake failed; connection dropped"),
    }
}

/// As axum's own TCP listener does: per-connection errors are skipped; others (such as running
/// out of file descriptors) are logged and retried after a pause.
async fn handle_accept_error(error: io::Error) {
    if matches!(
        error.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    ) {
        return;
    }
    tracing::error!(%error, "cluster TLS: accept failed; retrying in 1 s");
    tokio::time::sleep(Duration::from_secs(1)).await;
}
