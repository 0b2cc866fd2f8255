//! What can go wrong between two agents, one error type per concern.

use std::net::SocketAddr;
use std::time::Duration;

use quinn::{ConnectionError, VarInt};

use super::frames::{FrameError, OpenErrorKind};
use super::settings::SettingsError;
use crate::advert::AgentId;

/// Application close code: the peer sent bytes that are not the mesh protocol.
pub const CLOSE_GARBAGE: VarInt = VarInt::from_u32(1);
/// Application close code: the agent dialed itself.
pub const CLOSE_SELF: VarInt = VarInt::from_u32(2);
/// Application close code: the endpoint shuts down, or the runtime dropped the peer.
pub const CLOSE_NORMAL: VarInt = VarInt::from_u32(0);
/// Stream reset code for a flow cut off midway.
pub const RESET_FLOW: VarInt = VarInt::from_u32(1);

/// Why the endpoint could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum EndpointError {
    #[error(transparent)]
    Settings(#[from] SettingsError),
    #[error("the mesh TLS configuration cannot be used for QUIC: {0}")]
    Tls(String),
    #[error("cannot listen for mesh peers on UDP {addr}: {source} (is another agent using the port? set --mesh-listen)")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

/// Why a connection to a peer was not set up.
#[derive(Debug, thiserror::Error)]
pub enum PeeringError {
    #[error("cannot dial mesh peer {addr}: {source}")]
    Connect {
        addr: SocketAddr,
        #[source]
        source: quinn::ConnectError,
    },
    #[error("the handshake with mesh peer {addr} failed: {source} (a peer must hold an unrevoked agent certificate of this cluster)")]
    Handshake {
        addr: SocketAddr,
        #[source]
        source: ConnectionError,
    },
    #[error("mesh peer {addr} presented a certificate that names no agent")]
    NoAgentName { addr: SocketAddr },
    #[error(
        "mesh peer {addr} is this agent itself ({name}); remove its own address from the peers"
    )]
    SelfPeering { addr: SocketAddr, name: AgentId },
    #[error("mesh peer {addr} ({peer}) did not greet on the control stream within {timeout:?}")]
    GreetingTimeout {
        addr: SocketAddr,
        peer: AgentId,
        timeout: Duration,
    },
    #[error("mesh peer {addr} ({peer}) broke the control stream greeting: {why}")]
    Greeting {
        addr: SocketAddr,
        peer: AgentId,
        why: String,
    },
}

/// Why the control stream to a peer stopped carrying messages. After any of these the
/// connection is closed.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("the connection to {peer} is gone: {source}")]
    Connection {
        peer: AgentId,
        #[source]
        source: ConnectionError,
    },
    #[error("{peer} sent garbage on the control stream and was disconnected: {source}")]
    Garbage {
        peer: AgentId,
        #[source]
        source: FrameError,
    },
    #[error("{peer} closed the control stream: {why}")]
    Stream { peer: AgentId, why: String },
    #[error("a message for {peer} was not sent: {source}")]
    Encode {
        peer: AgentId,
        #[source]
        source: crate::AdvertError,
    },
}

/// Why a flow could not be opened, or broke.
#[derive(Debug, thiserror::Error)]
pub enum FlowError {
    #[error("the connection to {peer} is gone: {source}")]
    Connection {
        peer: AgentId,
        #[source]
        source: ConnectionError,
    },
    #[error("{peer} refused the open ({kind}): {reason}")]
    Refused {
        peer: AgentId,
        kind: OpenErrorKind,
        reason: String,
    },
    #[error("{peer} sent a garbage flow frame and was disconnected: {source}")]
    Garbage {
        peer: AgentId,
        #[source]
        source: FrameError,
    },
    #[error("a flow to {peer} was reset or stopped: {why}")]
    Stream { peer: AgentId, why: String },
    #[error("{peer} sent no flow header within {timeout:?}")]
    HeaderTimeout { peer: AgentId, timeout: Duration },
    #[error("bad flow open: {0}")]
    BadOpen(#[source] FrameError),
}
