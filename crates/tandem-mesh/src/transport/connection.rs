//! One live, authenticated connection to a peer agent: its control stream for route messages
//! and the flows it carries.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use quinn::{ConnectionError, ReadError, ReadExactError, RecvStream, SendStream, WriteError};
use tokio::sync::Mutex;

use super::error::{ControlError, FlowError, CLOSE_GARBAGE, CLOSE_NORMAL};
use super::flow::{read_flow_frame, Flow, IncomingFlow};
use super::frames::{encode_control_frame, ControlDecoder, FlowOpen, FrameError, OpenReply};
use crate::advert::{AgentId, Message};

/// Bytes a mesh connection, or all of an agent's, carried each way.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Traffic {
    pub sent: u64,
    pub received: u64,
}

impl std::ops::Add for Traffic {
    type Output = Traffic;

    fn add(self, other: Traffic) -> Traffic {
        Traffic {
            sent: self.sent.saturating_add(other.sent),
            received: self.received.saturating_add(other.received),
        }
    }
}

/// The largest read from the control stream at once.
const CONTROL_READ_CHUNK: usize = 64 * 1024;

/// A connection to a peer agent whose certificate was verified. Cheap to clone; clones share
/// the connection and its control stream.
#[derive(Clone)]
pub struct PeerConnection {
    inner: Arc<Inner>,
}

struct Inner {
    peer: AgentId,
    connection: quinn::Connection,
    control_send: Mutex<SendStream>,
    control_recv: Mutex<ControlReader>,
    header_timeout: Duration,
}

struct ControlReader {
    stream: RecvStream,
    decoder: ControlDecoder,
}

impl std::fmt::Debug for PeerConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PeerConnection")
            .field("peer", &self.inner.peer)
            .field("remote", &self.inner.connection.remote_address())
            .finish_non_exhaustive()
    }
}

impl PeerConnection {
    pub(crate) fn new(
        peer: AgentId,
        connection: quinn::Connection,
        control: (SendStream, RecvStream),
        header_timeout: Duration,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                peer,
                connection,
                control_send: Mutex::new(control.0),
                control_recv: Mutex::new(ControlReader {
                    stream: control.1,
                    decoder: ControlDecoder::new(),
                }),
                header_timeout,
            }),
        }
    }

    /// The peer's agent name, as its certificate proves it.
    pub fn peer(&self) -> &AgentId {
        &self.inner.peer
    }

    pub fn remote_address(&self) -> SocketAddr {
        self.inner.connection.remote_address()
    }

    /// UDP bytes sent and received on this connection so far: relayed traffic, QUIC's own
    /// overhead, keep-alives and route messages, as on the wire. Still readable once closed.
    pub fn traffic(&self) -> Traffic {
        let stats = self.inner.connection.stats();
        Traffic {
            sent: stats.udp_tx.bytes,
            received: stats.udp_rx.bytes,
        }
    }

    /// The current round-trip time estimate; an open's acknowledgement timeout derives from it.
    pub fn rtt(&self) -> Duration {
        self.inner.connection.rtt()
    }

    /// Sends one route message on the control stream, in order with the others.
    pub async fn send(&self, message: &Message) -> Result<(), ControlError> {
        let frame = encode_control_frame(message).map_err(|source| ControlError::Encode {
            peer: self.peer().clone(),
            source,
        })?;
        let mut send = self.inner.control_send.lock().await;
        send.write_all(&frame)
            .await
            .map_err(|e| self.write_error(e))
    }

    /// The next route message from the peer. Cancel-safe: bytes read before a cancellation stay
    /// buffered for the next call. A peer that sends garbage is disconnected (with a log line)
    /// and every later call fails.
    pub async fn recv(&self) -> Result<Message, ControlError> {
        let mut reader = self.inner.control_recv.lock().await;
        loop {
            match reader.decoder.next_message() {
                Ok(Some(message)) => return Ok(message),
                Ok(None) => {}
                Err(source) => return Err(self.control_garbage(source)),
            }
            match reader.stream.read_chunk(CONTROL_READ_CHUNK, true).await {
                Ok(Some(chunk)) => reader.decoder.extend(&chunk.bytes),
                Ok(None) => {
                    self.close("the control stream was finished");
                    return Err(ControlError::Stream {
                        peer: self.peer().clone(),
                        why: "finished".into(),
                    });
                }
                Err(ReadError::ConnectionLost(source)) => {
                    return Err(ControlError::Connection {
                        peer: self.peer().clone(),
                        source,
                    })
                }
                Err(other) => {
                    self.close("the control stream broke");
                    return Err(ControlError::Stream {
                        peer: self.peer().clone(),
                        why: other.to_string(),
                    });
                }
            }
        }
    }

    /// Opens a flow to `dest` through the peer, with `route` the agents after the peer (empty
    /// when the peer is the exit), and waits for the exit's answer relayed back hop by hop.
    /// Returns the flow on OPEN-OK; the caller bounds the wait (from [`Self::rtt`]).
    pub async fn open_flow(&self, dest: &str, route: Vec<AgentId>) -> Result<Flow, FlowError> {
        let open = FlowOpen::new(dest, route).map_err(FlowError::BadOpen)?;
        let frame = open.encode().map_err(FlowError::BadOpen)?;
        let (mut send, mut recv) = self
            .inner
            .connection
            .open_bi()
            .await
            .map_err(|source| self.connection_gone(source))?;
        send.write_all(&frame)
            .await
            .map_err(|e| self.flow_write_error(e))?;
        let body = read_flow_frame(self, &mut recv).await?;
        match OpenReply::decode(&body) {
            Ok(OpenReply::Ok) => Ok(Flow { send, recv }),
            Ok(OpenReply::Err { kind, reason }) => Err(FlowError::Refused {
                peer: self.peer().clone(),
                kind,
                reason,
            }),
            Err(source) => Err(self.flow_garbage(source)),
        }
    }

    /// The next flow the peer opened; read its request with [`IncomingFlow::read_request`]
    /// (in a task of its own, so one slow opener holds up no other).
    pub async fn accept_flow(&self) -> Result<IncomingFlow, FlowError> {
        let (send, recv) = self
            .inner
            .connection
            .accept_bi()
            .await
            .map_err(|source| self.connection_gone(source))?;
        Ok(IncomingFlow::new(
            self.clone(),
            send,
            recv,
            self.inner.header_timeout,
        ))
    }

    /// Resolves when the connection is gone: the peer was silent past the idle timeout, closed
    /// it, or it was closed here. The runtime then calls `RouteTable::peer_down`.
    pub async fn closed(&self) -> ConnectionError {
        self.inner.connection.closed().await
    }

    /// Why the connection is gone, if it is.
    pub fn close_reason(&self) -> Option<ConnectionError> {
        self.inner.connection.close_reason()
    }

    /// Closes the connection now; every flow on it fails at once on both sides.
    pub fn close(&self, reason: &str) {
        self.inner.connection.close(CLOSE_NORMAL, reason.as_bytes());
    }

    fn disconnect_garbage(&self, what: &str, source: &FrameError) {
        tracing::warn!(
            peer = %self.peer(),
            remote = %self.remote_address(),
            "mesh peer sent garbage on {what}, disconnecting: {source}"
        );
        self.inner
            .connection
            .close(CLOSE_GARBAGE, b"protocol violation");
    }

    fn control_garbage(&self, source: FrameError) -> ControlError {
        self.disconnect_garbage("the control stream", &source);
        ControlError::Garbage {
            peer: self.peer().clone(),
            source,
        }
    }

    pub(crate) fn flow_garbage(&self, source: FrameError) -> FlowError {
        self.disconnect_garbage("a flow", &source);
        FlowError::Garbage {
            peer: self.peer().clone(),
            source,
        }
    }

    fn write_error(&self, error: WriteError) -> ControlError {
        match error {
            WriteError::ConnectionLost(source) => ControlError::Connection {
                peer: self.peer().clone(),
                source,
            },
            other => {
                self.close("the control stream broke");
                ControlError::Stream {
                    peer: self.peer().clone(),
                    why: other.to_string(),
                }
            }
        }
    }

    pub(crate) fn connection_gone(&self, source: ConnectionError) -> FlowError {
        FlowError::Connection {
            peer: self.peer().clone(),
            source,
        }
    }

    pub(crate) fn flow_write_error(&self, error: WriteError) -> FlowError {
        match error {
            WriteError::ConnectionLost(source) => self.connection_gone(source),
            other => FlowError::Stream {
                peer: self.peer().clone(),
                why: other.to_string(),
            },
        }
    }

    pub(crate) fn flow_read_error(&self, error: ReadExactError) -> FlowError {
        match error {
            ReadExactError::ReadError(ReadError::ConnectionLost(source)) => {
                self.connection_gone(source)
            }
            ReadExactError::FinishedEarly(_) => {
                self.flow_garbage(FrameError::Truncated("the stream ended inside a frame"))
            }
            ReadExactError::ReadError(other) => FlowError::Stream {
                peer: self.peer().clone(),
                why: other.to_string(),
            },
        }
    }
}
