//! TCP port-forwards: every connection to `listen` is carried through the mesh to `to`.
//!
//! Spelled `--forward 127.0.0.1:5432=db.internal:5432` on the command line and
//! `forward = [{listen = "127.0.0.1:5432", to = "db.internal:5432"}]` in the agent's TOML. The
//! target stays a name: the exit resolves it.

use std::fmt;
use std::net::{Ipv6Addr, SocketAddr};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::net::{TcpListener, TcpStream};

use super::accept::{self, Handshake};
use super::relay::{dial_within, relay, reset};
use super::{Ingress, IngressLimits};
use crate::dial::MeshDialer;

/// The longest host name accepted, as SOCKS5 carries it (one length byte).
const MAX_HOST_LEN: usize = 255;

/// Why a forward was not understood.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ForwardSpecError {
    #[error("forward {0:?}: expected LISTEN=HOST:PORT, e.g. 127.0.0.1:5432=db.internal:5432")]
    Shape(String),
    #[error("forward listen address {0:?}: expected IP:PORT, e.g. 127.0.0.1:5432")]
    Listen(String),
    #[error(
        "forward target {given:?}: {why}; expected HOST:PORT, e.g. db.internal:5432 or [fd00::1]:5432"
    )]
    Target { given: String, why: &'static str },
}

/// Where a forward's connections go: a host name or IP address and a port, dialed through the
/// mesh. Written `host:port`, with an IPv6 address in brackets.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ForwardTarget {
    host: String,
    port: u16,
}

impl ForwardTarget {
    /// A target from its parts; the host is a name or an IP address (IPv6 without brackets).
    pub fn new(host: &str, port: u16) -> Result<Self, ForwardSpecError> {
        let given = || format!("{host}:{port}");
        check_host(host).map_err(|why| ForwardSpecError::Target {
            given: given(),
            why,
        })?;
        if port == 0 {
            return Err(ForwardSpecError::Target {
                given: given(),
                why: "port 0 cannot be dialed",
            });
        }
        Ok(Self {
            host: host.to_owned(),
            port,
        })
    }

    /// The name or address as the dialer gets it (an IPv6 address without brackets).
    pub fn host(&self) -> &str {
        &self.host
    }

    pub fn port(&self) -> u16 {
        self.port
    }
}

impl FromStr for ForwardTarget {
    type Err = ForwardSpecError;

    fn from_str(given: &str) -> Result<Self, Self::Err> {
        let fail = |why| ForwardSpecError::Target {
            given: given.to_owned(),
            why,
        };
        let (host, port) = given.rsplit_once(':').ok_or_else(|| fail("no port"))?;
        let host = unbracket(host).map_err(fail)?;
        let port = port
            .parse::<u16>()
            .map_err(|_| fail("the port is not a number from 1 to 65535"))?;
        Self::new(host, port).map_err(|_| {
            fail(if port == 0 {
                "port 0 cannot be dialed"
            } else {
                "the host is empty, longer than 255 bytes, or has spaces or control characters"
            })
        })
    }
}

/// `[v6]` → `v6`; a bare name or IPv4 address as it is. A bare IPv6 address is refused: its
/// last group could not be told from the port.
fn unbracket(host: &str) -> Result<&str, &'static str> {
    match host.strip_prefix('[') {
        Some(rest) => {
            let inner = rest.strip_suffix(']').ok_or("an unclosed [")?;
            inner
                .parse::<Ipv6Addr>()
                .map_err(|_| "not an IPv6 address in the brackets")?;
            Ok(inner)
        }
        None if host.contains(':') => Err("an IPv6 address needs brackets, e.g. [fd00::1]:5432"),
        None => Ok(host),
    }
}

/// A host name (or address) a dialer can be given: printable ASCII (IDNs in their punycode
/// form), no spaces, at most 255 bytes.
fn check_host(host: &str) -> Result<(), &'static str> {
    if host.is_empty() {
        return Err("the host is empty");
    }
    if host.len() > MAX_HOST_LEN {
        return Err("the host is longer than 255 bytes");
    }
    if !host.bytes().all(|b| b.is_ascii_graphic()) {
        return Err("the host has spaces, control or non-ASCII characters");
    }
    Ok(())
}

impl fmt::Display for ForwardTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

impl TryFrom<String> for ForwardTarget {
    type Error = ForwardSpecError;

    fn try_from(value: String) -> Result<Self, Self::Error> {
        value.parse()
    }
}

impl From<ForwardTarget> for String {
    fn from(target: ForwardTarget) -> Self {
        target.to_string()
    }
}

/// One port-forward: `{listen = "127.0.0.1:5432", to = "db.internal:5432"}` in TOML,
/// `127.0.0.1:5432=db.internal:5432` on the command line.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ForwardSpec {
    /// The local address to listen on (an IP address: binding to a name would be ambiguous).
    pub listen: SocketAddr,
    /// Where its connections go through the mesh.
    pub to: ForwardTarget,
}

impl FromStr for ForwardSpec {
    type Err = ForwardSpecError;

    /// `LISTEN=HOST:PORT`.
    fn from_str(given: &str) -> Result<Self, Self::Err> {
        let (listen, to) = given
            .split_once('=')
            .ok_or_else(|| ForwardSpecError::Shape(given.to_owned()))?;
        let listen = listen
            .parse::<SocketAddr>()
            .map_err(|_| ForwardSpecError::Listen(listen.to_owned()))?;
        Ok(Self {
            listen,
            to: to.parse()?,
        })
    }
}

impl fmt::Display for ForwardSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}={}", self.listen, self.to)
    }
}

/// Serves a port-forward on `listener`: each connection is opened through `dialer` to `to`.
pub fn serve_forward(
    listener: TcpListener,
    to: ForwardTarget,
    dialer: Arc<dyn MeshDialer>,
    limits: IngressLimits,
) -> Ingress {
    let to = Arc::new(to);
    accept::spawn(
        listener,
        "forward",
        limits.max_connections,
        move |stream, peer, handshake: Handshake| {
            // A port-forward has no handshake: its clients are carried from the first byte.
            handshake.done();
            forward_client(
                stream,
                peer,
                to.clone(),
                dialer.clone(),
                limits.dial_timeout,
            )
        },
    )
}

async fn forward_client(
    client: TcpStream,
    peer: SocketAddr,
    to: Arc<ForwardTarget>,
    dialer: Arc<dyn MeshDialer>,
    dial_timeout: Duration,
) {
    match dial_within(dialer.as_ref(), to.host(), to.port(), dial_timeout).await {
        Ok(mesh) => relay("forward", peer, client, mesh).await,
        Err(error) => {
            tracing::info!(
                %peer, to = %to, kind = ?error.kind, reason = %error.reason,
                "forward: no stream through the mesh; client connection reset"
            );
            // A port-forward has no way to say why; a reset at least says "failed" at once,
            // where a FIN could pass for a server that closed after accepting.
            reset(&client);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(s: &str) -> Result<ForwardSpec, ForwardSpecError> {
        s.parse()
    }

    #[test]
    fn a_name_target_parses() {
        let forward = spec("127.0.0.1:5432=db.internal:5432").expect("parse");
        assert_eq!(forward.listen, "127.0.0.1:5432".parse().expect("addr"));
        assert_eq!(forward.to.host(), "db.internal");
        assert_eq!(forward.to.port(), 5432);
        assert_eq!(forward.to_string(), "127.0.0.1:5432=db.internal:5432");
    }

    #[test]
    fn ipv6_addresses_take_brackets_on_both_sides() {
        let forward = spec("[::1]:8443=[fd00::1]:443").expect("parse");
        assert_eq!(forward.listen, "[::1]:8443".parse().expect("addr"));
        assert_eq!(forward.to.host(), "fd00::1");
        assert_eq!(forward.to.port(), 443);
        assert_eq!(forward.to_string(), "[::1]:8443=[fd00::1]:443");
    }

    #[test]
    fn malformed_forwards_are_refused_with_the_reason() {
        let cases = [
            ("127.0.0.1:5432", "expected LISTEN=HOST:PORT"),
            ("localhost:5432=db:5432", "listen address"),
            ("127.0.0.1:5432=db.internal", "no port"),
            ("127.0.0.1:5432=db.internal:0", "port 0"),
            ("127.0.0.1:5432=db.internal:70000", "not a number"),
            ("127.0.0.1:5432=:5432", "host is empty"),
            ("127.0.0.1:5432=fd00::1:5432", "needs brackets"),
            ("127.0.0.1:5432=[fd00::1:5432", "unclosed"),
            ("127.0.0.1:5432=[db.internal]:5432", "not an IPv6"),
            ("127.0.0.1:5432=db internal:5432", "spaces"),
        ];
        for (given, why) in cases {
            let error = spec(given).expect_err(given).to_string();
            assert!(error.contains(why), "{given}: {error}");
        }
    }

    #[test]
    fn a_host_over_255_bytes_is_refused() {
        let long = format!("127.0.0.1:1={}:1", "a".repeat(256));
        assert!(spec(&long).is_err());
        let longest = format!("127.0.0.1:1={}:1", "a".repeat(255));
        assert!(spec(&longest).is_ok());
    }

    #[test]
    fn forwards_read_from_toml() {
        #[derive(Deserialize)]
        struct Config {
            forward: Vec<ForwardSpec>,
        }
        let config: Config = toml::from_str(
            r#"forward = [
                {listen = "127.0.0.1:5432", to = "db.internal:5432"},
                {listen = "127.0.0.1:8443", to = "[fd00::1]:443"},
            ]"#,
        )
        .expect("toml");
        assert_eq!(config.forward.len(), 2);
        assert_eq!(
            config.forward[0],
            spec("127.0.0.1:5432=db.internal:5432").expect("spec")
        );
        assert_eq!(config.forward[1].to.host(), "fd00::1");
    }

    #[test]
    fn a_bad_target_in_toml_names_the_problem() {
        let error = toml::from_str::<ForwardSpec>("listen = \"127.0.0.1:1\"\nto = \"db.internal\"")
            .expect_err("no port");
        assert!(error.to_string().contains("no port"), "{error}");
    }
}
