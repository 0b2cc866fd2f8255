//! Flows: one bidirectional QUIC stream per TCP connection, opened with a [`FlowOpen`] header
//! and answered OPEN-OK or OPEN-ERR before any byte of the connection. Bytes then move with
//! QUIC's flow control, so a slow reader slows its sender instead of filling memory.

use std::time::Duration;

use quinn::{RecvStream, SendStream};

use super::connection::PeerConnection;
use super::error::FlowError;
use super::frames::{flow_frame_len, FlowOpen, OpenErrorKind, OpenReply};

/// An open flow. Write the connection's bytes to `send` and read the other direction from
/// `recv`; [`Flow::into_io`] joins them for `tokio::io::copy_bidirectional`.
#[derive(Debug)]
pub struct Flow {
    pub send: SendStream,
    pub recv: RecvStream,
}

impl Flow {
    pub fn into_io(self) -> tokio::io::Join<RecvStream, SendStream> {
        tokio::io::join(self.recv, self.send)
    }
}

/// A flow the peer opened whose header has not been read yet.
#[derive(Debug)]
pub struct IncomingFlow {
    peer: PeerConnection,
    send: SendStream,
    recv: RecvStream,
    header_timeout: Duration,
}

impl IncomingFlow {
    pub(crate) fn new(
        peer: PeerConnection,
        send: SendStream,
        recv: RecvStream,
        header_timeout: Duration,
    ) -> Self {
        Self {
            peer,
            send,
            recv,
            header_timeout,
        }
    }

    /// Reads what the opener asks for. A garbage header disconnects the peer (with a log line).
    pub async fn read_request(mut self) -> Result<FlowRequest, FlowError> {
        let body = tokio::time::timeout(
            self.header_timeout,
            read_flow_frame(&self.peer, &mut self.recv),
        )
        .await
        .map_err(|_| FlowError::HeaderTimeout {
            peer: self.peer.peer().clone(),
            timeout: self.header_timeout,
        })??;
        let open = FlowOpen::decode(&body).map_err(|e| self.peer.flow_garbage(e))?;
        Ok(FlowRequest {
            open,
            peer: self.peer,
            send: self.send,
            recv: self.recv,
        })
    }
}

/// A flow request awaiting its answer: an exit dials `open.dest` and answers with
/// [`FlowRequest::accept`] or [`FlowRequest::refuse`]; a transit opens the next hop
/// (`open.route[0]`, with the rest of the route) and passes the answer back.
#[derive(Debug)]
pub struct FlowRequest {
    pub open: FlowOpen,
    peer: PeerConnection,
    send: SendStream,
    recv: RecvStream,
}

impl FlowRequest {
    /// The peer that asked.
    pub fn from_peer(&self) -> &PeerConnection {
        &self.peer
    }

    /// Answers OPEN-OK; the flow then carries bytes both ways.
    pub async fn accept(mut self) -> Result<Flow, FlowError> {
        self.answer(&OpenReply::Ok).await?;
        Ok(Flow {
            send: self.send,
            recv: self.recv,
        })
    }

    /// Answers OPEN-ERR and ends the flow.
    pub async fn refuse(mut self, kind: OpenErrorKind, reason: &str) -> Result<(), FlowError> {
        let reply = OpenReply::Err {
            kind,
            reason: reason.to_owned(),
        };
        self.answer(&reply).await?;
        // Finishing keeps the reply in flight after the streams are dropped.
        let _ = self.send.finish();
        let _ = self.recv.stop(quinn::VarInt::from_u32(0));
        Ok(())
    }

    async fn answer(&mut self, reply: &OpenReply) -> Result<(), FlowError> {
        let frame = reply.encode().map_err(FlowError::BadOpen)?;
        self.send
            .write_all(&frame)
            .await
            .map_err(|e| self.peer.flow_write_error(e))
    }
}

/// Reads one length-prefixed flow frame body.
pub(crate) async fn read_flow_frame(
    peer: &PeerConnection,
    recv: &mut RecvStream,
) -> Result<Vec<u8>, FlowError> {
    let mut head = [0u8; 2];
    recv.read_exact(&mut head)
        .await
        .map_err(|e| peer.flow_read_error(e))?;
    let len = flow_frame_len(head).map_err(|e| peer.flow_garbage(e))?;
    let mut body = vec![0u8; len];
    recv.read_exact(&mut body)
        .await
        .map_err(|e| peer.flow_read_error(e))?;
    Ok(body)
}
