//! The seam between the mesh's ingresses (SOCKS5, port-forwards) and its runtime: an ingress
//! asks for a connection to `host:port` through the mesh and gets a byte stream, or the reason
//! there is none. It never dials the destination itself: with no route, the answer is an error.

use std::future::Future;
use std::pin::Pin;

use tokio::io::{AsyncRead, AsyncWrite};

use crate::transport::OpenErrorKind;

/// A byte stream through the mesh to a destination.
pub trait MeshStream: AsyncRead + AsyncWrite + Send + Unpin {}

impl<T: AsyncRead + AsyncWrite + Send + Unpin> MeshStream for T {}

/// Why no stream was opened.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{kind:?}: {reason}")]
pub struct DialError {
    pub kind: OpenErrorKind,
    pub reason: String,
}

/// The future [`MeshDialer::dial`] answers.
pub type DialFuture<'a> =
    Pin<Box<dyn Future<Output = Result<Box<dyn MeshStream>, DialError>> + Send + 'a>>;

/// Opens streams through the mesh: implemented by the runtime (which picks the path, tries the
/// next one when an open is not acknowledged in time, and never dials around the mesh), and by
/// tests with stand-ins.
pub trait MeshDialer: Send + Sync {
    /// A stream to `host:port`; `host` is a name or an IP address.
    fn dial<'a>(&'a self, host: &'a str, port: u16) -> DialFuture<'a>;
}
