//! The mesh's transport: QUIC (quinn) between agents with mutual TLS from their enrolment
//! credentials ([`tandem_tls::AgentTls`]). This is the I/O half; the route table decides.
//!
//! - [`endpoint`]: one [`MeshEndpoint`] per agent, listening and dialing on one UDP socket.
//! - [`connection`]: a [`PeerConnection`] — the peer's verified name, its ordered control
//!   stream of route messages, its flows, and `closed()` when it dies.
//! - [`flow`]: one QUIC stream per TCP connection, acknowledged end to end by the exit.
//! - [`frames`]: the bytes on those streams, as pure encoders and decoders.
//! - [`settings`]: keep-alive 1 s and idle timeout 3 s by default, so a silent peer is dead in
//!   about 3 s; windows that bound memory per flow and per peer.
//! - [`backoff`]: when to dial a lost peer again.

pub mod backoff;
pub mod connection;
pub mod endpoint;
pub mod error;
pub mod flow;
pub mod frames;
pub mod settings;

pub use backoff::{Backoff, BackoffError};
pub use connection::{PeerConnection, Traffic};
pub use endpoint::MeshEndpoint;
pub use error::{
    ControlError, EndpointError, FlowError, PeeringError, CLOSE_GARBAGE, CLOSE_NORMAL, CLOSE_SELF,
    RESET_FLOW,
};
pub use flow::{Flow, FlowRequest, IncomingFlow};
pub use frames::{FlowOpen, FrameError, OpenErrorKind, OpenReply};
/// The stream and error types a [`PeerConnection`] hands out.
pub use quinn::{ConnectionError, RecvStream, SendStream};
pub use settings::{SettingsError, TransportSettings, DEFAULT_MESH_LISTEN};
