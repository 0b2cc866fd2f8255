//! One QUIC endpoint per agent: it listens for peers and dials them from the same UDP socket.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use quinn::{Connection, Endpoint, EndpointConfig, Incoming, RecvStream, SendStream, TokioRuntime};
use rustls::pki_types::CertificateDer;
use socket2::{Domain, Protocol, Socket, Type};
use tandem_tls::{agent_dns_name, peer_agent_name, AgentTls, ANY_AGENT_SERVER_NAME};
use tokio::sync::{mpsc, Mutex};
use tokio::task::JoinHandle;

use super::connection::PeerConnection;
use super::error::{EndpointError, PeeringError, CLOSE_GARBAGE, CLOSE_NORMAL, CLOSE_SELF};
use super::frames::CONTROL_GREETING;
use super::settings::TransportSettings;
use crate::advert::AgentId;

/// Peers whose handshake completed but that `accept` has not taken yet.
const ACCEPT_QUEUE: usize = 64;

/// This agent's mesh endpoint.
pub struct MeshEndpoint {
    endpoint: Endpoint,
    me: AgentId,
    client_config: quinn::ClientConfig,
    settings: TransportSettings,
    accepted: Mutex<mpsc::Receiver<PeerConnection>>,
    acceptor: JoinHandle<()>,
}

impl std::fmt::Debug for MeshEndpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MeshEndpoint")
            .field("me", &self.me)
            .field("local", &self.endpoint.local_addr().ok())
            .finish_non_exhaustive()
    }
}

/// The endpoint's UDP socket, bound to `addr` with kernel buffers of `buffer` bytes each way
/// where the kernel allows them (`net.core.rmem_max` and `wmem_max` cap what it grants).
fn udp_socket(addr: SocketAddr, buffer: u32) -> std::io::Result<std::net::UdpSocket> {
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    let wanted = buffer as usize;
    // A smaller buffer than asked for still works; it only drops more under bursts.
    let _ = socket.set_recv_buffer_size(wanted);
    let _ = socket.set_send_buffer_size(wanted);
    // Linux reports twice what it reserves (the bookkeeping overhead): halve to compare.
    let granted = socket.recv_buffer_size().unwrap_or(0) / 2;
    if granted < wanted {
        tracing::warn!(
            wanted,
            granted,
            "the kernel gave the mesh's UDP socket a smaller receive buffer than asked for; \
             raise net.core.rmem_max and net.core.wmem_max (sysctl) to at least {wanted} \
             so bursts of packets are not dropped"
        );
    }
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    Ok(socket.into())
}

impl MeshEndpoint {
    /// Listens on UDP `addr` (see [`super::DEFAULT_MESH_LISTEN`]) with the agent's TLS identity.
    /// Must be called within a tokio runtime.
    pub fn bind(
        addr: SocketAddr,
        tls: &AgentTls,
        settings: TransportSettings,
    ) -> Result<Self, EndpointError> {
        let transport = settings.quic()?;
        let me = AgentId::new(tls.name())
            .map_err(|e| EndpointError::Tls(format!("the agent certificate's name: {e}")))?;
        let server_crypto = QuicServerConfig::try_from(tls.server_config())
            .map_err(|e| EndpointError::Tls(e.to_string()))?;
        let mut server_config = quinn::ServerConfig::with_crypto(Arc::new(server_crypto));
        server_config.transport_config(transport.clone());
        let client_crypto = QuicClientConfig::try_from(tls.client_config())
            .map_err(|e| EndpointError::Tls(e.to_string()))?;
        let mut client_config = quinn::ClientConfig::new(Arc::new(client_crypto));
        client_config.transport_config(transport);

        let socket = udp_socket(addr, settings.udp_buffer)
            .map_err(|source| EndpointError::Bind { addr, source })?;
        let endpoint = Endpoint::new(
            EndpointConfig::default(),
            Some(server_config),
            socket,
            Arc::new(TokioRuntime),
        )
        .map_err(|source| EndpointError::Bind { addr, source })?;
        let (queue, accepted) = mpsc::channel(ACCEPT_QUEUE);
        let acceptor = tokio::spawn(accept_loop(
            endpoint.clone(),
            me.clone(),
            settings.header_timeout,
            queue,
        ));
        Ok(Self {
            endpoint,
            me,
            client_config,
            settings,
            accepted: Mutex::new(accepted),
            acceptor,
        })
    }

    /// This agent's name.
    pub fn me(&self) -> &AgentId {
        &self.me
    }

    /// The UDP address the endpoint listens on (with the port chosen, if 0 was given).
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.endpoint.local_addr()
    }

    /// Dials a peer known only by its address: any unrevoked agent of the cluster is accepted,
    /// and the returned connection names the agent its certificate proves.
    pub async fn dial(&self, addr: SocketAddr) -> Result<PeerConnection, PeeringError> {
        self.dial_as(addr, ANY_AGENT_SERVER_NAME).await
    }

    /// Dials a peer that must be agent `expected` (its certificate must name it).
    pub async fn dial_agent(
        &self,
        addr: SocketAddr,
        expected: &AgentId,
    ) -> Result<PeerConnection, PeeringError> {
        self.dial_as(addr, &agent_dns_name(expected.as_str())).await
    }

    async fn dial_as(
        &self,
        addr: SocketAddr,
        server_name: &str,
    ) -> Result<PeerConnection, PeeringError> {
        let connecting = self
            .endpoint
            .connect_with(self.client_config.clone(), addr, server_name)
            .map_err(|source| PeeringError::Connect { addr, source })?;
        // Bounded by the idle timeout: a handshake with a silent address gives up in seconds.
        let connection = connecting
            .await
            .map_err(|source| PeeringError::Handshake { addr, source })?;
        let peer = verified_peer(&connection, &self.me)?;
        let timeout = self.settings.header_timeout;
        let greeting = async {
            let (mut send, mut recv) = connection.open_bi().await.map_err(|e| e.to_string())?;
            send.write_all(CONTROL_GREETING)
                .await
                .map_err(|e| e.to_string())?;
            read_greeting(&mut recv).await?;
            Ok::<_, String>((send, recv))
        };
        let control = greet(&connection, &peer, timeout, greeting).await?;
        Ok(PeerConnection::new(peer, connection, control, timeout))
    }

    /// The next peer that dialed this agent and passed the handshake and greeting; `None` once
    /// the endpoint is closed. Refused handshakes are logged and never returned.
    pub async fn accept(&self) -> Option<PeerConnection> {
        self.accepted.lock().await.recv().await
    }

    /// Closes every connection at once (peers see the close immediately, not after their idle
    /// timeout) and stops listening.
    pub fn close(&self) {
        self.acceptor.abort();
        self.endpoint.close(CLOSE_NORMAL, b"agent shutting down");
    }
}

impl Drop for MeshEndpoint {
    fn drop(&mut self) {
        self.acceptor.abort();
    }
}

async fn accept_loop(
    endpoint: Endpoint,
    me: AgentId,
    header_timeout: Duration,
    queue: mpsc::Sender<PeerConnection>,
) {
    while let Some(incoming) = endpoint.accept().await {
        let me = me.clone();
        let queue = queue.clone();
        tokio::spawn(async move {
            let remote = incoming.remote_address();
            match accept_one(incoming, &me, header_timeout).await {
                Ok(peer) => {
                    tracing::info!(peer = %peer.peer(), %remote, "mesh peer connected");
                    // A full queue holds the handshake here rather than dropping the peer.
                    let _ = queue.send(peer).await;
                }
                Err(e) => tracing::warn!(%remote, "mesh peer refused: {e}"),
            }
        });
    }
}

async fn accept_one(
    incoming: Incoming,
    me: &AgentId,
    header_timeout: Duration,
) -> Result<PeerConnection, PeeringError> {
    let addr = incoming.remote_address();
    let connection = incoming
        .await
        .map_err(|source| PeeringError::Handshake { addr, source })?;
    let peer = verified_peer(&connection, me)?;
    let greeting = async {
        let (mut send, mut recv) = connection.accept_bi().await.map_err(|e| e.to_string())?;
        read_greeting(&mut recv).await?;
        send.write_all(CONTROL_GREETING)
            .await
            .map_err(|e| e.to_string())?;
        Ok::<_, String>((send, recv))
    };
    let control = greet(&connection, &peer, header_timeout, greeting).await?;
    Ok(PeerConnection::new(
        peer,
        connection,
        control,
        header_timeout,
    ))
}

/// The agent the handshake verified; refuses this agent itself.
fn verified_peer(connection: &Connection, me: &AgentId) -> Result<AgentId, PeeringError> {
    let addr = connection.remote_address();
    let name = connection
        .peer_identity()
        .and_then(|identity| identity.downcast::<Vec<CertificateDer<'static>>>().ok())
        .and_then(|certs| peer_agent_name(&certs))
        .and_then(|name| AgentId::new(name).ok());
    let Some(peer) = name else {
        connection.close(CLOSE_GARBAGE, b"no agent name");
        return Err(PeeringError::NoAgentName { addr });
    };
    if &peer == me {
        connection.close(CLOSE_SELF, b"an agent does not peer with itself");
        return Err(PeeringError::SelfPeering { addr, name: peer });
    }
    Ok(peer)
}

async fn greet(
    connection: &Connection,
    peer: &AgentId,
    timeout: Duration,
    greeting: impl std::future::Future<Output = Result<(SendStream, RecvStream), String>>,
) -> Result<(SendStream, RecvStream), PeeringError> {
    let addr = connection.remote_address();
    let outcome = tokio::time::timeout(timeout, greeting).await;
    // A peer that refused our certificate closes the connection after the handshake seemed
    // done on this side: that is a refused handshake, not a broken greeting.
    if let (Err(_) | Ok(Err(_)), Some(source)) = (&outcome, connection.close_reason()) {
        return Err(PeeringError::Handshake { addr, source });
    }
    match outcome {
        Ok(Ok(control)) => Ok(control),
        Ok(Err(why)) => {
            connection.close(CLOSE_GARBAGE, b"bad greeting");
            Err(PeeringError::Greeting {
                addr,
                peer: peer.clone(),
                why,
            })
        }
        Err(_) => {
            connection.close(CLOSE_GARBAGE, b"no greeting");
            Err(PeeringError::GreetingTimeout {
                addr,
                peer: peer.clone(),
                timeout,
            })
        }
    }
}

async fn read_greeting(recv: &mut RecvStream) -> Result<(), String> {
    let mut greeting = [0u8; CONTROL_GREETING.len()];
    recv.read_exact(&mut greeting)
        .await
        .map_err(|e| e.to_string())?;
    if &greeting != CONTROL_GREETING {
        return Err(super::frames::FrameError::BadGreeting(greeting.to_vec()).to_string());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kernel_cap(name: &str) -> usize {
        std::fs::read_to_string(format!("/proc/sys/net/core/{name}"))
            .expect("a Linux kernel's socket buffer cap")
            .trim()
            .parse()
            .expect("a number")
    }

    #[test]
    fn the_udp_socket_gets_the_buffers_asked_for_up_to_the_kernels_cap() {
        let wanted = 2 * 1024 * 1024;
        let socket = udp_socket("127.0.0.1:0".parse().expect("an address"), wanted as u32)
            .expect("a socket");
        let socket = Socket::from(socket);
        let recv = socket.recv_buffer_size().expect("SO_RCVBUF") / 2;
        let send = socket.send_buffer_size().expect("SO_SNDBUF") / 2;
        assert!(
            recv >= wanted.min(kernel_cap("rmem_max")),
            "receive buffer {recv}"
        );
        assert!(
            send >= wanted.min(kernel_cap("wmem_max")),
            "send buffer {send}"
        );
    }
}
