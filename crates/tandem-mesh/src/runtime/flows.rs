//! Flows other agents open through this one: an exit dials the destination it advertises and
//! answers OPEN-OK or OPEN-ERR; a transit opens the next hop and passes its answer back.

use std::net::IpAddr;
use std::time::Duration;

use ipnet::IpNet;
use tokio::net::TcpStream;

use super::config::split_host_port;
use super::core::Core;
use super::resolve::ExitResolver;
use super::splice;
use crate::advert::DomainPattern;
use crate::transport::{FlowError, FlowRequest, IncomingFlow, OpenErrorKind};

/// How long a transit waits for the next hop's answer; the opener gives up sooner (its open
/// timeout) and tries another path, this only bounds the relay's own wait.
const RELAY_OPEN_TIMEOUT: Duration = Duration::from_secs(5);

/// What this agent exits to, and how it dials.
#[derive(Clone, Debug)]
pub(super) struct Exits {
    pub routes: Vec<IpNet>,
    pub domains: Vec<DomainPattern>,
    pub dial_timeout: Duration,
    pub resolver: ExitResolver,
}

impl Exits {
    /// Whether `host` falls under a route this agent advertises.
    pub fn allows(&self, host: &str) -> bool {
        match host.parse::<IpAddr>() {
            Ok(addr) => self.routes.iter().any(|net| net.contains(&addr)),
            Err(_) => {
                let name = host.strip_suffix('.').unwrap_or(host).to_ascii_lowercase();
                self.domains.iter().any(|pattern| pattern.matches(&name))
            }
        }
    }

    /// Dials `dest` (`host:port`) for a flow that ends here: refused unless advertised; names
    /// resolved with the exit's resolver; resolving and the TCP handshake bounded by the dial
    /// timeout.
    pub async fn dial(&self, dest: &str) -> Result<TcpStream, (OpenErrorKind, String)> {
        let Some((host, port)) = split_host_port(dest) else {
            return Err((OpenErrorKind::Failed, format!("{dest:?} is not host:port")));
        };
        if !self.allows(host) {
            return Err((
                OpenErrorKind::NotAllowed,
                format!("this exit does not advertise {host}"),
            ));
        }
        let connect = async {
            let addrs = self
                .resolver
                .resolve(host, port)
                .await
                .map_err(|why| (OpenErrorKind::HostUnreachable, why))?;
            let mut last = (
                OpenErrorKind::HostUnreachable,
                format!("{host} has no address"),
            );
            for addr in addrs {
                match TcpStream::connect(addr).await {
                    Ok(tcp) => return Ok(tcp),
                    Err(e) => last = (OpenErrorKind::from_io(&e), format!("{addr}: {e}")),
                }
            }
            Err(last)
        };
        match tokio::time::timeout(self.dial_timeout, connect).await {
            Ok(outcome) => outcome,
            Err(_) => Err((
                OpenErrorKind::TimedOut,
                format!("{dest} did not answer within {:?}", self.dial_timeout),
            )),
        }
    }
}

/// Serves one flow a peer opened.
pub(super) async fn serve(core: &Core, exits: &Exits, incoming: IncomingFlow) {
    let request = match incoming.read_request().await {
        Ok(request) => request,
        Err(e) => {
            tracing::debug!("a mesh flow request was not read: {e}");
            return;
        }
    };
    if request.open.route.is_empty() {
        exit(exits, request).await;
    } else {
        relay(core, request).await;
    }
}

async fn exit(exits: &Exits, request: FlowRequest) {
    let from = request.from_peer().peer().clone();
    let dest = request.open.dest.clone();
    match exits.dial(&dest).await {
        Ok(tcp) => match request.accept().await {
            Ok(flow) => splice::flow_to_tcp(flow, tcp).await,
            Err(e) => tracing::debug!(%from, %dest, "the opener left before OPEN-OK: {e}"),
        },
        Err((kind, reason)) => {
            tracing::info!(%from, %dest, %kind, "exit refused a flow: {reason}");
            let _ = request.refuse(kind, &reason).await;
        }
    }
}

async fn relay(core: &Core, mut request: FlowRequest) {
    let from = request.from_peer().peer().clone();
    let dest = request.open.dest.clone();
    let mut route = std::mem::take(&mut request.open.route);
    let next = route.remove(0);
    let Some(conn) = core.connection(&next) else {
        let reason = format!("transit has no connection to {next}");
        tracing::info!(%from, %dest, "{reason}");
        let _ = request.refuse(OpenErrorKind::NoRoute, &reason).await;
        return;
    };
    let opened = tokio::time::timeout(RELAY_OPEN_TIMEOUT, conn.open_flow(&dest, route)).await;
    match opened {
        Ok(Ok(onward)) => match request.accept().await {
            Ok(back) => splice::flow_to_flow(back, onward).await,
            Err(e) => {
                tracing::debug!(%from, %dest, "the opener left before OPEN-OK: {e}");
                let mut onward = onward;
                splice::reset_flow(&mut onward.send, &mut onward.recv);
            }
        },
        Ok(Err(FlowError::Refused { kind, reason, .. })) => {
            let _ = request.refuse(kind, &reason).await;
        }
        Ok(Err(e)) => {
            let _ = request
                .refuse(OpenErrorKind::NoRoute, &format!("via {next}: {e}"))
                .await;
        }
        Err(_) => {
            let reason = format!("{next} did not answer within {RELAY_OPEN_TIMEOUT:?}");
            let _ = request.refuse(OpenErrorKind::TimedOut, &reason).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_exit_allows_only_what_it_advertises() {
        let exits = Exits {
            routes: vec!["10.0.0.0/8".parse().expect("net")],
            domains: vec![DomainPattern::parse("*.internal.example").expect("pattern")],
            dial_timeout: Duration::from_secs(1),
            resolver: ExitResolver::System,
        };
        assert!(exits.allows("10.1.2.3"));
        assert!(!exits.allows("192.168.0.1"));
        assert!(exits.allows("DB.internal.example."));
        assert!(!exits.allows("internal.example"));
        assert!(!exits.allows("example.com"));
    }

    #[tokio::test]
    async fn an_exit_with_dns_servers_dials_what_they_answer() {
        let server = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = server.local_addr().expect("addr").port();
        let dns = super::super::resolve::spawn_dns_responder(
            "db.internal.example",
            std::net::Ipv4Addr::LOCALHOST,
        )
        .await;
        let exits = Exits {
            routes: vec![],
            domains: vec![DomainPattern::parse("*.internal.example").expect("pattern")],
            dial_timeout: Duration::from_secs(5),
            resolver: ExitResolver::new(&[super::super::resolve::DnsServer(dns)]),
        };
        let dialed = exits
            .dial(&format!("db.internal.example:{port}"))
            .await
            .expect("dialed through the exit's own DNS server");
        let (_accepted, from) = server.accept().await.expect("accept");
        assert_eq!(dialed.local_addr().expect("addr"), from);
        let (kind, why) = exits
            .dial(&format!("nope.internal.example:{port}"))
            .await
            .expect_err("unknown to the DNS server");
        assert_eq!(kind, OpenErrorKind::HostUnreachable);
        assert!(why.contains("exit's DNS servers"), "{why}");
    }
}
