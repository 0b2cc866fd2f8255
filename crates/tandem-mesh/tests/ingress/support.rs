//! A stand-in mesh dialer over local TCP, an echo target that counts its connections, and a
//! raw SOCKS5 client.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use tandem_mesh::dial::{DialError, DialFuture, MeshDialer, MeshStream};
use tandem_mesh::ingress::{
    serve_forward, serve_socks5, ForwardTarget, Ingress, IngressLimits, Socks5Auth,
};
use tandem_mesh::transport::OpenErrorKind;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};

/// The deadline every wait in these tests has: generous, never a fixed sleep.
pub const DEADLINE: Duration = Duration::from_secs(5);

/// Waits for `future`, failing the test past [`DEADLINE`].
pub async fn within<T>(what: &str, future: impl Future<Output = T>) -> T {
    tokio::time::timeout(DEADLINE, future)
        .await
        .unwrap_or_else(|_| panic!("{what}: not within {DEADLINE:?}"))
}

/// A TCP server that echoes every connection's bytes back, counts the connections it
/// accepted, and reports each one's end.
pub struct EchoTarget {
    pub addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
    ended: tokio::sync::Mutex<mpsc::UnboundedReceiver<()>>,
}

impl EchoTarget {
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind echo");
        let addr = listener.local_addr().expect("echo addr");
        let accepted = Arc::new(AtomicUsize::new(0));
        let (ended_tx, ended) = mpsc::unbounded_channel();
        let counter = accepted.clone();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                counter.fetch_add(1, Ordering::SeqCst);
                let ended_tx = ended_tx.clone();
                tokio::spawn(async move {
                    echo(tcp).await;
                    let _ = ended_tx.send(());
                });
            }
        });
        Self {
            addr,
            accepted,
            ended: tokio::sync::Mutex::new(ended),
        }
    }

    /// Connections the target has seen: through the stand-in, or around it.
    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }

    /// Waits until one of the target's connections has ended.
    pub async fn one_ended(&self) {
        within("a target connection ends", async {
            self.ended.lock().await.recv().await.expect("echo running");
        })
        .await;
    }
}

async fn echo(mut tcp: TcpStream) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        match tcp.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                if tcp.write_all(&buf[..n]).await.is_err() {
                    return;
                }
            }
        }
    }
}

/// What the stand-in does for a host.
#[derive(Clone, Copy, Debug)]
pub enum Route {
    /// A stream to this address (the echo target).
    To(SocketAddr),
    /// A stream to this address that fails with a reset when the test calls
    /// [`StandIn::break_streams`].
    Breakable(SocketAddr),
    /// The mesh refuses the open.
    Refuse(OpenErrorKind),
    /// The open never completes.
    Hang,
}

/// A [`MeshDialer`] over local TCP: hosts it has a route for go to the echo target, the rest
/// get `NoRoute`. It counts every dial.
#[derive(Default)]
pub struct StandIn {
    routes: HashMap<String, Route>,
    dials: Mutex<Vec<(String, u16)>>,
    breakers: Mutex<Vec<oneshot::Sender<()>>>,
}

impl StandIn {
    pub fn with(routes: &[(&str, Route)]) -> Arc<Self> {
        Arc::new(Self {
            routes: routes
                .iter()
                .map(|(host, route)| (host.to_string(), *route))
                .collect(),
            ..Self::default()
        })
    }

    /// Every `(host, port)` asked for, in order.
    pub fn dials(&self) -> Vec<(String, u16)> {
        self.dials.lock().expect("dials").clone()
    }

    pub fn dial_count(&self) -> usize {
        self.dials.lock().expect("dials").len()
    }

    /// Makes every [`Route::Breakable`] stream handed out so far fail with a reset.
    pub fn break_streams(&self) {
        for breaker in self.breakers.lock().expect("breakers").drain(..) {
            let _ = breaker.send(());
        }
    }

    async fn open(&self, host: String, port: u16) -> Result<Box<dyn MeshStream>, DialError> {
        let route = self.routes.get(&host).copied();
        self.dials.lock().expect("dials").push((host, port));
        match route {
            Some(Route::To(addr)) => Ok(Box::new(connect(addr).await?)),
            Some(Route::Breakable(addr)) => {
                let (breaker, broken) = oneshot::channel();
                self.breakers.lock().expect("breakers").push(breaker);
                Ok(Box::new(Breakable {
                    inner: connect(addr).await?,
                    broken: Some(broken),
                }))
            }
            Some(Route::Refuse(kind)) => Err(refusal(kind)),
            Some(Route::Hang) => std::future::pending().await,
            None => Err(refusal(OpenErrorKind::NoRoute)),
        }
    }
}

impl MeshDialer for StandIn {
    fn dial<'a>(&'a self, host: &'a str, port: u16) -> DialFuture<'a> {
        Box::pin(self.open(host.to_string(), port))
    }
}

async fn connect(addr: SocketAddr) -> Result<TcpStream, DialError> {
    TcpStream::connect(addr).await.map_err(|e| DialError {
        kind: OpenErrorKind::from_io(&e),
        reason: e.to_string(),
    })
}

fn refusal(kind: OpenErrorKind) -> DialError {
    DialError {
        kind,
        reason: format!("stand-in refuses with {kind:?}"),
    }
}

/// A mesh stream whose reads fail once its breaker fires, as a stream whose path died does.
struct Breakable {
    inner: TcpStream,
    broken: Option<oneshot::Receiver<()>>,
}

impl AsyncRead for Breakable {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let fired = match self.broken.as_mut() {
            Some(broken) => Pin::new(broken).poll(cx).is_ready(),
            None => true,
        };
        if fired {
            self.broken = None;
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::ConnectionReset,
                "the stream's path died",
            )));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for Breakable {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Limits with short timeouts where a test needs them, defaults otherwise.
pub fn limits() -> IngressLimits {
    IngressLimits::default()
}

/// A SOCKS5 ingress on a free loopback port.
pub async fn socks5(
    dialer: Arc<StandIn>,
    auth: Socks5Auth,
    limits: IngressLimits,
) -> (Ingress, SocketAddr) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind socks5");
    let ingress = serve_socks5(listener, dialer, auth, limits);
    let addr = ingress.local_addr().expect("socks5 addr");
    (ingress, addr)
}

/// A port-forward on a free loopback port to `to`.
pub async fn forward(dialer: Arc<StandIn>, to: &str) -> (Ingress, SocketAddr) {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind forward");
    let to: ForwardTarget = to.parse().expect("target");
    let ingress = serve_forward(listener, to, dialer, limits());
    let addr = ingress.local_addr().expect("forward addr");
    (ingress, addr)
}

/// A SOCKS5 target as the request spells it.
pub enum Target<'a> {
    Domain(&'a str, u16),
    Ip(SocketAddr),
}

/// `VER CMD RSV ATYP DST.ADDR DST.PORT`.
pub fn request(command: u8, target: Target<'_>) -> Vec<u8> {
    let mut bytes = vec![5, command, 0];
    let port = match target {
        Target::Domain(name, port) => {
            bytes.push(3);
            bytes.push(u8::try_from(name.len()).expect("short name"));
            bytes.extend_from_slice(name.as_bytes());
            port
        }
        Target::Ip(SocketAddr::V4(addr)) => {
            bytes.push(1);
            bytes.extend_from_slice(&addr.ip().octets());
            addr.port()
        }
        Target::Ip(SocketAddr::V6(addr)) => {
            bytes.push(4);
            bytes.extend_from_slice(&addr.ip().octets());
            addr.port()
        }
    };
    bytes.extend_from_slice(&port.to_be_bytes());
    bytes
}

pub const CONNECT: u8 = 1;
pub const BIND: u8 = 2;
pub const UDP_ASSOCIATE: u8 = 3;

/// Connects to the proxy and negotiates "no authentication".
pub async fn greeted(proxy: SocketAddr) -> TcpStream {
    let mut client = TcpStream::connect(proxy).await.expect("connect proxy");
    client.write_all(&[5, 1, 0]).await.expect("greeting");
    let mut choice = [0u8; 2];
    within("method choice", client.read_exact(&mut choice))
        .await
        .expect("method choice");
    assert_eq!(choice, [5, 0]);
    client
}

/// Sends a request and returns the reply code, having read the whole reply.
pub async fn ask(client: &mut TcpStream, request: &[u8]) -> u8 {
    client.write_all(request).await.expect("request");
    within("reply", read_reply(client)).await.expect("reply")
}

async fn read_reply(client: &mut TcpStream) -> io::Result<u8> {
    let mut head = [0u8; 4];
    client.read_exact(&mut head).await?;
    assert_eq!(head[0], 5, "reply version");
    let address_len = match head[3] {
        1 => 4,
        4 => 16,
        3 => usize::from(client.read_u8().await?),
        other => panic!("reply address type {other}"),
    };
    let mut rest = vec![0u8; address_len + 2];
    client.read_exact(&mut rest).await?;
    Ok(head[1])
}

/// A CONNECT through the proxy without authentication: the client stream and the reply code.
pub async fn socks_connect(proxy: SocketAddr, target: Target<'_>) -> (TcpStream, u8) {
    let mut client = greeted(proxy).await;
    let code = ask(&mut client, &request(CONNECT, target)).await;
    (client, code)
}

/// Writes `bytes` and reads them back.
pub async fn round_trip<S: AsyncRead + AsyncWrite + Unpin>(stream: &mut S, bytes: &[u8]) {
    stream.write_all(bytes).await.expect("write");
    let mut back = vec![0u8; bytes.len()];
    within("echo", stream.read_exact(&mut back))
        .await
        .expect("read echo");
    assert_eq!(back, bytes);
}

/// How a connection ended, from the client's side.
#[derive(Debug, PartialEq, Eq)]
pub enum Ended {
    /// An orderly close (FIN).
    Closed,
    /// A reset.
    Reset,
}

/// Reads until the server ends the connection (discarding any bytes); fails past the deadline.
pub async fn ended(client: &mut TcpStream) -> Ended {
    within("the server closes the connection", async {
        let mut buf = [0u8; 1024];
        loop {
            match client.read(&mut buf).await {
                Ok(0) => return Ended::Closed,
                Ok(_) => continue,
                Err(e) if e.kind() == io::ErrorKind::ConnectionReset => return Ended::Reset,
                Err(e) => panic!("unexpected read error {e}"),
            }
        }
    })
    .await
}
