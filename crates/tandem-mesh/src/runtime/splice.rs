//! Bytes both ways between two ends of a connection, and what an ingress holds of a flow.
//!
//! A clean end in one direction is passed on as a clean end (QUIC FIN, TCP shutdown); an error
//! in either direction resets BOTH ends, so that nobody mistakes a broken connection for a
//! complete one (a dropped quinn send stream would look finished to the far side).

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use quinn::{RecvStream, SendStream};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, BufReader, ReadBuf};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::TcpStream;

use crate::transport::{Flow, RESET_FLOW};

/// Bytes read from a TCP connection at a time: large reads mean fewer, fuller writes into the
/// QUIC stream, each of which takes the connection's lock.
pub(crate) const TCP_READ_BUFFER: usize = 64 * 1024;

/// Copies a TCP side to `writer` until a clean end, then shuts `writer` down (a FIN).
async fn pump_tcp<R, W>(reader: R, writer: &mut W) -> io::Result<u64>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin + ?Sized,
{
    let mut reader = BufReader::with_capacity(TCP_READ_BUFFER, reader);
    let copied = tokio::io::copy_buf(&mut reader, writer).await?;
    writer.shutdown().await?;
    Ok(copied)
}

/// Where a flow's received chunks go: the next hop's flow, or the destination's TCP socket.
trait ChunkSink {
    async fn put(&mut self, chunk: Bytes) -> io::Result<()>;
    /// A clean end (QUIC FIN, TCP shutdown).
    async fn end(&mut self) -> io::Result<()>;
}

impl ChunkSink for SendStream {
    /// The chunk is handed to quinn as it is: a transit copies no relayed byte itself.
    async fn put(&mut self, chunk: Bytes) -> io::Result<()> {
        self.write_chunk(chunk).await.map_err(io::Error::from)
    }

    async fn end(&mut self) -> io::Result<()> {
        self.finish().map_err(io::Error::other)
    }
}

impl ChunkSink for OwnedWriteHalf {
    async fn put(&mut self, chunk: Bytes) -> io::Result<()> {
        self.write_all(&chunk).await
    }

    async fn end(&mut self) -> io::Result<()> {
        self.shutdown().await
    }
}

/// Copies a flow's received bytes to `sink` until a clean end, then ends `sink` cleanly. The
/// chunks come as quinn holds them, with no copy into a buffer of ours.
async fn pump_flow(recv: &mut RecvStream, sink: &mut impl ChunkSink) -> io::Result<u64> {
    let mut copied = 0;
    while let Some(chunk) = recv.read_chunk(usize::MAX, true).await? {
        copied += chunk.bytes.len() as u64;
        sink.put(chunk.bytes).await?;
    }
    sink.end().await?;
    Ok(copied)
}

/// Cuts a flow off: its send side reset, its receive side stopped.
pub fn reset_flow(send: &mut SendStream, recv: &mut RecvStream) {
    let _ = send.reset(RESET_FLOW);
    let _ = recv.stop(RESET_FLOW);
}

/// Splices two flows (a transit between the previous and the next hop).
pub async fn flow_to_flow(mut a: Flow, mut b: Flow) {
    let outcome = tokio::try_join!(
        pump_flow(&mut a.recv, &mut b.send),
        pump_flow(&mut b.recv, &mut a.send)
    );
    if let Err(e) = outcome {
        tracing::debug!("a relayed flow broke, resetting both sides: {e}");
        reset_flow(&mut a.send, &mut a.recv);
        reset_flow(&mut b.send, &mut b.recv);
    }
}

/// Splices a flow and the TCP connection to its destination (an exit, or an ingress that is
/// its own exit).
pub async fn flow_to_tcp(mut flow: Flow, tcp: TcpStream) {
    let (mut tcp_read, mut tcp_write) = tcp.into_split();
    let outcome = tokio::try_join!(
        pump_flow(&mut flow.recv, &mut tcp_write),
        pump_tcp(&mut tcp_read, &mut flow.send)
    );
    if let Err(e) = outcome {
        tracing::debug!("an exit flow broke, resetting both sides: {e}");
        reset_flow(&mut flow.send, &mut flow.recv);
        // A zero linger makes the close an RST: the destination sees a broken connection.
        if let Ok(tcp) = tcp_read.reunite(tcp_write) {
            let _ = tcp.set_zero_linger();
        }
    }
}

/// A flow as an ingress holds it: bytes both ways, and a drop without a shutdown (the client
/// went away or broke) resets the flow instead of ending it cleanly.
#[derive(Debug)]
pub struct FlowStream {
    flow: Flow,
    shut_down: bool,
}

impl FlowStream {
    pub fn new(flow: Flow) -> Self {
        Self {
            flow,
            shut_down: false,
        }
    }
}

impl AsyncRead for FlowStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        AsyncRead::poll_read(Pin::new(&mut self.get_mut().flow.recv), cx, buf)
    }
}

impl AsyncWrite for FlowStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        AsyncWrite::poll_write(Pin::new(&mut self.get_mut().flow.send), cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        AsyncWrite::poll_flush(Pin::new(&mut self.get_mut().flow.send), cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.shut_down = true;
        AsyncWrite::poll_shutdown(Pin::new(&mut this.flow.send), cx)
    }
}

impl Drop for FlowStream {
    fn drop(&mut self) {
        if !self.shut_down {
            reset_flow(&mut self.flow.send, &mut self.flow.recv);
        }
    }
}
