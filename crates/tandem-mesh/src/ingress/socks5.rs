//! The SOCKS5 ingress (RFC 1928): CONNECT to IPv4, IPv6 and domain-name targets, with no
//! authentication or with username/password (RFC 1929).
//!
//! The greeting, method negotiation and request are parsed with fast-socks5's explicit
//! protocol state machine (`Socks5ServerProtocol`), which hands over the requested target
//! without dialing or resolving it. The target then goes to the [`MeshDialer`] as it came: a
//! domain name stays unresolved, so the exit resolves it. The reply is written after the
//! dialer has answered, so a client learns of a failure at once and with a precise code (see
//! [`reply_code`]); BIND and UDP ASSOCIATE get "command not supported".
//!
//! Every variable field in the protocol has a one-byte length, so a hostile client cannot make
//! the parser read or allocate more than 255 bytes at a time; one that sends garbage is closed
//! (with a reply where the protocol has one), and one that stalls is closed after the
//! handshake timeout.

use std::fmt;
use std::future::Future;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use fast_socks5::server::{states, Socks5ServerProtocol, SocksServerError};
use fast_socks5::util::target_addr::TargetAddr;
use fast_socks5::{ReplyError, Socks5Command};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};

use super::accept::{self, Handshake, ThrottledLog};
use super::relay::{dial_within, relay};
use super::userpass::{self, UserPassword, UserPasswordError};
use super::{Ingress, IngressLimits};
use crate::dial::MeshDialer;
use crate::transport::OpenErrorKind;

/// Where the SOCKS5 ingress listens unless configured otherwise: loopback only, so the proxy
/// is not open to the network by accident.
pub const DEFAULT_SOCKS5_LISTEN: &str = "127.0.0.1:1080";

/// Decides whether a username and password may use the proxy. The agent's accepts a
/// configured user and password, or a Tandem token whose claims allow it; a token signed with a
/// key not seen yet makes it fetch the key set first, hence a future.
pub type CredentialCheck = Arc<dyn Fn(&str, &str) -> CheckFuture + Send + Sync>;

/// What a [`CredentialCheck`] answers: whether the client may use the proxy.
pub type CheckFuture = Pin<Box<dyn Future<Output = bool> + Send>>;

/// How SOCKS5 clients authenticate.
#[derive(Clone)]
pub enum Socks5Auth {
    /// Method 0x00: anyone who can reach the listener may connect.
    NoAuth,
    /// Method 0x02 only: a client that does not offer it is refused (method 0xFF).
    Password(CredentialCheck),
}

impl Socks5Auth {
    /// A check that answers at once.
    pub fn password(check: impl Fn(&str, &str) -> bool + Send + Sync + 'static) -> Self {
        Self::Password(Arc::new(move |user, password| {
            let accepted = check(user, password);
            Box::pin(std::future::ready(accepted))
        }))
    }

    /// A check that may wait (e.g. for a key set).
    pub fn password_async(check: CredentialCheck) -> Self {
        Self::Password(check)
    }
}

impl fmt::Debug for Socks5Auth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoAuth => f.write_str("NoAuth"),
            Self::Password(_) => f.write_str("Password(..)"),
        }
    }
}

/// Why a client's handshake ended without a request to serve; each closes its connection.
#[derive(Debug, thiserror::Error)]
pub enum HandshakeError {
    /// Garbage, a wrong version, no acceptable method, an unknown command or address type, or
    /// a connection that ended early (fast-socks5 has answered those it can answer).
    #[error("socks5: {0}")]
    Protocol(#[from] SocksServerError),
    #[error("socks5: {0}")]
    UserPassword(#[from] UserPasswordError),
    #[error("socks5: no complete request within {0:?}")]
    TimedOut(Duration),
}

/// The SOCKS5 reply code for a dialer's refusal.
///
/// - `NoRoute` → 0x03 "network unreachable", for addresses and domain names alike: no route
///   is a fact of the mesh's routing table, as ENETUNREACH is of a host's, and curl and
///   browsers show it as such.
/// - `TimedOut` → 0x06 "TTL expired", the code fast-socks5 and curl use for a connect that
///   timed out; 0x04 would blame the host when it may be a path.
/// - the others map to the code of the same name; `Failed` → 0x01 "general failure".
pub fn reply_code(kind: OpenErrorKind) -> u8 {
    reply_for(kind).as_u8()
}

fn reply_for(kind: OpenErrorKind) -> ReplyError {
    match kind {
        OpenErrorKind::NoRoute | OpenErrorKind::NetworkUnreachable => {
            ReplyError::NetworkUnreachable
        }
        OpenErrorKind::NotAllowed => ReplyError::ConnectionNotAllowed,
        OpenErrorKind::ConnectionRefused => ReplyError::ConnectionRefused,
        OpenErrorKind::HostUnreachable => ReplyError::HostUnreachable,
        OpenErrorKind::TimedOut => ReplyError::ConnectionTimeout,
        OpenErrorKind::Failed => ReplyError::GeneralFailure,
    }
}

/// Serves SOCKS5 on `listener`, opening every connection through `dialer`.
pub fn serve_socks5(
    listener: TcpListener,
    dialer: Arc<dyn MeshDialer>,
    auth: Socks5Auth,
    limits: IngressLimits,
) -> Ingress {
    let silent = Arc::new(ThrottledLog::new(
        "socks5 client cut off: no complete request within the handshake timeout",
    ));
    accept::spawn(
        listener,
        "socks5",
        limits.max_connections,
        move |stream, peer, handshake| {
            let client = Client {
                peer,
                handshake,
                silent: silent.clone(),
            };
            serve_client(stream, client, dialer.clone(), auth.clone(), limits)
        },
    )
}

/// One client as the accept loop sees it.
struct Client {
    peer: SocketAddr,
    handshake: Handshake,
    /// Where handshake timeouts are logged, throttled: a flood of idle clients is one line a
    /// second.
    silent: Arc<ThrottledLog>,
}

/// A parsed request: the protocol state to answer with, the command and the target.
type Request<T> = (
    Socks5ServerProtocol<T, states::CommandRead>,
    Socks5Command,
    TargetAddr,
);

async fn serve_client(
    stream: TcpStream,
    client: Client,
    dialer: Arc<dyn MeshDialer>,
    auth: Socks5Auth,
    limits: IngressLimits,
) {
    let peer = client.peer;
    let (proto, command, target) = match handshake_within(stream, &auth, limits).await {
        Ok(request) => request,
        Err(HandshakeError::TimedOut(_)) => {
            client.silent.note("socks5", peer);
            return;
        }
        Err(error) => {
            log_handshake_error(peer, &error);
            return;
        }
    };
    client.handshake.done();
    if command != Socks5Command::TCPConnect {
        tracing::debug!(%peer, ?command, "socks5 command not supported");
        answer(peer, proto, ReplyError::CommandNotSupported).await;
        return;
    }
    connect(peer, proto, target, dialer.as_ref(), limits.dial_timeout).await;
}

/// The handshake under the handshake timeout; on timeout the stream is dropped with it.
async fn handshake_within<T>(
    stream: T,
    auth: &Socks5Auth,
    limits: IngressLimits,
) -> Result<Request<T>, HandshakeError>
where
    T: AsyncRead + AsyncWrite + Unpin,
{
    tokio::time::timeout(limits.handshake_timeout, handshake(stream, auth))
        .await
        .map_err(|_| HandshakeError::TimedOut(limits.handshake_timeout))?
}

/// Greeting, authentication and request. Nothing here dials or resolves anything.
async fn handshake<T>(stream: T, auth: &Socks5Auth) -> Result<Request<T>, HandshakeError>
where
    T: AsyncRead + AsyncWrite + Unpin,
{
    let proto = match auth {
        Socks5Auth::NoAuth => Socks5ServerProtocol::accept_no_auth(stream).await?,
        Socks5Auth::Password(check) => {
            let started = Socks5ServerProtocol::start(stream)
                .negotiate_auth(&[UserPassword])
                .await?;
            Socks5ServerProtocol::finish_auth(userpass::authenticate(started, check).await?)
        }
    };
    Ok(proto.read_command().await?)
}

fn log_handshake_error(peer: SocketAddr, error: &HandshakeError) {
    match error {
        // Worth an operator's attention: someone tried credentials that did not work.
        HandshakeError::UserPassword(UserPasswordError::Refused { .. }) => {
            tracing::info!(%peer, %error, "socks5 client refused: connection closed");
        }
        _ => tracing::debug!(%peer, %error, "socks5 handshake failed: connection closed"),
    }
}

/// Asks the dialer for `target` and answers the client: success and a relay, or the error.
async fn connect(
    peer: SocketAddr,
    proto: Socks5ServerProtocol<TcpStream, states::CommandRead>,
    target: TargetAddr,
    dialer: &dyn MeshDialer,
    dial_timeout: Duration,
) {
    let (host, port) = target.into_string_and_port();
    match dial_within(dialer, &host, port, dial_timeout).await {
        Ok(mesh) => match proto.reply_success(bound_addr()).await {
            Ok(client) => relay("socks5", peer, client, mesh).await,
            Err(error) => tracing::debug!(%peer, %error, "socks5 client gone before the reply"),
        },
        Err(error) => {
            tracing::info!(
                %peer, host, port, kind = ?error.kind, reason = %error.reason,
                "socks5 connect failed"
            );
            answer(peer, proto, reply_for(error.kind)).await;
        }
    }
}

/// BND.ADDR and BND.PORT of a success reply. The stream's far end is an exit's socket this
/// agent does not know, so the reply says 0.0.0.0:0; CONNECT clients ignore it.
fn bound_addr() -> SocketAddr {
    SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0))
}

/// Writes an error reply; the connection closes when `proto` is dropped right after.
async fn answer<T>(
    peer: SocketAddr,
    proto: Socks5ServerProtocol<T, states::CommandRead>,
    reply: ReplyError,
) where
    T: AsyncRead + AsyncWrite + Unpin,
{
    if let Err(error) = proto.reply_error(&reply).await {
        tracing::debug!(%peer, %error, "socks5 client gone before the error reply");
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};

    use super::*;

    fn limits() -> IngressLimits {
        IngressLimits {
            handshake_timeout: Duration::from_secs(5),
            ..IngressLimits::default()
        }
    }

    /// Feeds `input` (then EOF) to the handshake; returns its result and what it answered.
    async fn handshake_on(
        input: &[u8],
        auth: Socks5Auth,
    ) -> (Result<(Socks5Command, TargetAddr), String>, Vec<u8>) {
        let (mut client, server) = tokio::io::duplex(4096);
        client.write_all(input).await.expect("write");
        client.shutdown().await.expect("shutdown");
        let result = handshake_within::<DuplexStream>(server, &auth, limits())
            .await
            .map(|(_, command, target)| (command, target))
            .map_err(|e| e.to_string());
        let mut answer = Vec::new();
        client.read_to_end(&mut answer).await.expect("read");
        (result, answer)
    }

    #[test]
    fn reply_codes_follow_the_documented_mapping() {
        let expected = [
            (OpenErrorKind::NoRoute, 0x03),
            (OpenErrorKind::NotAllowed, 0x02),
            (OpenErrorKind::ConnectionRefused, 0x05),
            (OpenErrorKind::HostUnreachable, 0x04),
            (OpenErrorKind::NetworkUnreachable, 0x03),
            (OpenErrorKind::TimedOut, 0x06),
            (OpenErrorKind::Failed, 0x01),
        ];
        for (kind, code) in expected {
            assert_eq!(reply_code(kind), code, "{kind:?}");
        }
    }

    #[tokio::test]
    async fn a_domain_target_is_handed_over_unresolved() {
        let mut input = vec![5, 1, 0, 5, 1, 0, 3, 20];
        input.extend_from_slice(b"db.internal.example.");
        input.extend_from_slice(&5432u16.to_be_bytes());
        let (result, answer) = handshake_on(&input, Socks5Auth::NoAuth).await;
        let (command, target) = result.expect("request");
        assert_eq!(command, Socks5Command::TCPConnect);
        assert_eq!(
            target,
            TargetAddr::Domain("db.internal.example.".into(), 5432)
        );
        // Only the method choice: the request's reply waits for the dialer.
        assert_eq!(answer, [5, 0]);
    }

    #[tokio::test]
    async fn an_ipv6_target_is_parsed() {
        let mut input = vec![5, 1, 0, 5, 1, 0, 4];
        input.extend_from_slice(&std::net::Ipv6Addr::LOCALHOST.octets());
        input.extend_from_slice(&80u16.to_be_bytes());
        let (result, _) = handshake_on(&input, Socks5Auth::NoAuth).await;
        let (_, target) = result.expect("request");
        assert_eq!(target.into_string_and_port(), ("::1".to_string(), 80));
    }

    #[tokio::test]
    async fn a_wrong_version_is_cut_off_without_an_answer() {
        let (result, answer) = handshake_on(&[4, 1, 0], Socks5Auth::NoAuth).await;
        assert!(result.is_err());
        assert!(answer.is_empty());
    }

    #[tokio::test]
    async fn a_truncated_greeting_is_an_error() {
        let (result, answer) = handshake_on(&[5, 3, 0], Socks5Auth::NoAuth).await;
        assert!(result.is_err());
        assert!(answer.is_empty());
    }

    #[tokio::test]
    async fn a_client_without_password_is_refused_when_one_is_required() {
        let auth = Socks5Auth::password(|_: &str, _: &str| true);
        let (result, answer) = handshake_on(&[5, 1, 0], auth).await;
        assert!(result.is_err());
        assert_eq!(answer, [5, 0xff]);
    }

    #[tokio::test]
    async fn an_unknown_address_type_is_answered_0x08() {
        let (result, answer) = handshake_on(&[5, 1, 0, 5, 1, 0, 9, 0, 0], Socks5Auth::NoAuth).await;
        assert!(result.is_err());
        assert_eq!(answer[..2], [5, 0]);
        assert_eq!(answer[2..4], [5, 0x08]);
    }

    #[tokio::test]
    async fn a_silent_client_times_out() {
        let (_client, server) = tokio::io::duplex(64);
        let short = IngressLimits {
            handshake_timeout: Duration::from_millis(50),
            ..IngressLimits::default()
        };
        let result = handshake_within(server, &Socks5Auth::NoAuth, short).await;
        assert!(matches!(result, Err(HandshakeError::TimedOut(_))));
    }
}
