//! Copying bytes between a client connection and its stream through the mesh.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::TcpStream;

use crate::dial::{DialError, MeshDialer, MeshStream};
use crate::transport::OpenErrorKind;

/// Asks the dialer for `host:port`, giving up after `limit` as if the mesh had timed out.
pub(super) async fn dial_within(
    dialer: &dyn MeshDialer,
    host: &str,
    port: u16,
    limit: Duration,
) -> Result<Box<dyn MeshStream>, DialError> {
    match tokio::time::timeout(limit, dialer.dial(host, port)).await {
        Ok(result) => result,
        Err(_) => Err(DialError {
            kind: OpenErrorKind::TimedOut,
            reason: format!("no stream through the mesh within {limit:?}"),
        }),
    }
}

/// Copies both ways until both sides have finished, or until either fails.
///
/// A clean end on one side (EOF) is passed on as a shutdown of the other's write half, so
/// half-closing protocols work. A failure on either side ends both at once: the mesh stream
/// is dropped and the client connection is reset, so a reset on one side is never left
/// half-open on the other, and a client whose download broke sees an error, not a clean end.
pub(super) async fn relay(
    kind: &'static str,
    peer: SocketAddr,
    mut client: TcpStream,
    mut mesh: Box<dyn MeshStream>,
) {
    let buffer = crate::runtime::TCP_READ_BUFFER;
    match tokio::io::copy_bidirectional_with_sizes(&mut client, &mut mesh, buffer, buffer).await {
        Ok((up, down)) => {
            tracing::debug!(kind, %peer, bytes_up = up, bytes_down = down, "connection closed");
        }
        Err(error) => {
            tracing::debug!(kind, %peer, %error, "connection failed: both sides closed");
            drop(mesh);
            reset(&client);
        }
    }
}

/// Makes the coming close of `stream` a TCP reset (RST) instead of an orderly FIN, so the
/// client knows at once that the connection failed rather than finished.
pub(super) fn reset(stream: &TcpStream) {
    // A zero linger never blocks on close; if the option cannot be set, the drop is a FIN,
    // which still closes the connection.
    if let Err(error) = stream.set_zero_linger() {
        tracing::debug!(%error, "could not set zero linger; closing normally");
    }
}
