//! How an exit turns a destination's name into addresses: the system resolver (tokio's
//! `lookup_host`, so /etc/hosts and /etc/resolv.conf apply), or only the DNS servers given with
//! `exit_dns` (Hickory DNS's resolver, which asks them over UDP, and TCP for long answers).

use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;

use hickory_resolver::config::{
    NameServerConfig, NameServerConfigGroup, ResolveHosts, ResolverConfig,
};
use hickory_resolver::name_server::TokioConnectionProvider;
use hickory_resolver::proto::xfer::Protocol;
use hickory_resolver::TokioResolver;

/// The DNS port, when an `exit_dns` entry gives only an address.
pub const DNS_PORT: u16 = 53;

/// A DNS server an exit asks: `IP` (port 53) or `IP:PORT`, `[IPv6]:PORT` for IPv6 with a port.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DnsServer(pub SocketAddr);

impl FromStr for DnsServer {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let text = text.trim();
        if let Ok(ip) = text.parse::<IpAddr>() {
            return Ok(DnsServer(SocketAddr::new(ip, DNS_PORT)));
        }
        text.parse::<SocketAddr>().map(DnsServer).map_err(|_| {
            format!("DNS server {text:?} is not IP or IP:PORT, like 10.0.0.2 or 10.0.0.2:5353")
        })
    }
}

impl std::fmt::Display for DnsServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl<'de> serde::Deserialize<'de> for DnsServer {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

/// Where an exit's names are resolved.
#[derive(Clone)]
pub(super) enum ExitResolver {
    System,
    /// Only these servers; the hosts file is not read, so what they answer is what is dialed.
    Servers(Box<TokioResolver>),
}

impl std::fmt::Debug for ExitResolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::System => f.write_str("System"),
            Self::Servers(resolver) => f
                .debug_tuple("Servers")
                .field(&resolver.config().name_servers().len())
                .finish(),
        }
    }
}

impl ExitResolver {
    /// The system resolver when `servers` is empty, else a resolver asking only them.
    pub fn new(servers: &[DnsServer]) -> Self {
        if servers.is_empty() {
            return Self::System;
        }
        let group: Vec<NameServerConfig> = servers
            .iter()
            .flat_map(|server| {
                [Protocol::Udp, Protocol::Tcp]
                    .map(|protocol| NameServerConfig::new(server.0, protocol))
            })
            .collect();
        let config = ResolverConfig::from_parts(None, vec![], NameServerConfigGroup::from(group));
        let mut builder =
            TokioResolver::builder_with_config(config, TokioConnectionProvider::default());
        builder.options_mut().use_hosts_file = ResolveHosts::Never;
        Self::Servers(Box::new(builder.build()))
    }

    /// The addresses of `host` (an IP address is its own), each with `port`.
    pub async fn resolve(&self, host: &str, port: u16) -> Result<Vec<SocketAddr>, String> {
        if let Ok(ip) = host.parse::<IpAddr>() {
            return Ok(vec![SocketAddr::new(ip, port)]);
        }
        match self {
            Self::System => tokio::net::lookup_host((host, port))
                .await
                .map(|addrs| addrs.collect())
                .map_err(|e| format!("cannot resolve {host}: {e}")),
            Self::Servers(resolver) => {
                // A trailing dot: the name is absolute, no search domain is tried.
                let absolute = format!("{}.", host.trim_end_matches('.'));
                resolver
                    .lookup_ip(absolute.as_str())
                    .await
                    .map(|found| found.iter().map(|ip| SocketAddr::new(ip, port)).collect())
                    .map_err(|e| format!("cannot resolve {host} with the exit's DNS servers: {e}"))
            }
        }
    }
}

/// A DNS server for tests, on 127.0.0.1 over UDP, that knows one name: it answers its A query
/// with `ip`, any other query for it with no records, and every other name with NXDOMAIN.
#[cfg(test)]
pub(super) async fn spawn_dns_responder(name: &str, ip: std::net::Ipv4Addr) -> SocketAddr {
    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0")
        .await
        .expect("bind a UDP port");
    let addr = socket.local_addr().expect("local address");
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    tokio::spawn(async move {
        let mut buf = [0u8; 512];
        while let Ok((len, from)) = socket.recv_from(&mut buf).await {
            if let Some(answer) = dns_answer(&buf[..len], &name, ip) {
                let _ = socket.send_to(&answer, from).await;
            }
        }
    });
    addr
}

/// The answer to one query (header, one question), or `None` for what is not one.
#[cfg(test)]
fn dns_answer(query: &[u8], known: &str, ip: std::net::Ipv4Addr) -> Option<Vec<u8>> {
    let mut at = 12;
    let mut labels = Vec::new();
    loop {
        let len = usize::from(*query.get(at)?);
        at += 1;
        if len == 0 {
            break;
        }
        labels.push(String::from_utf8_lossy(query.get(at..at + len)?).to_ascii_lowercase());
        at += len;
    }
    let qtype = u16::from_be_bytes([*query.get(at)?, *query.get(at + 1)?]);
    let question_end = at + 4;
    let question = query.get(12..question_end)?;
    let is_known = labels.join(".") == known;
    let answers = u16::from(is_known && qtype == 1);
    // Id, then QR + AA + RD + RA, and NXDOMAIN for names it does not know.
    let mut answer = vec![query[0], query[1], 0x85, if is_known { 0x80 } else { 0x83 }];
    for count in [1, answers, 0, 0] {
        answer.extend_from_slice(&u16::to_be_bytes(count));
    }
    answer.extend_from_slice(question);
    if answers == 1 {
        // A pointer to the question's name, type A, class IN, TTL 60 s, 4 bytes of address.
        answer.extend_from_slice(&[0xC0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4]);
        answer.extend_from_slice(&ip.octets());
    }
    Some(answer)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dns_servers_take_an_address_with_or_without_a_port() {
        let parse = |text: &str| text.parse::<DnsServer>().map(|s| s.0.to_string());
        assert_eq!(parse("10.0.0.2"), Ok("10.0.0.2:53".into()));
        assert_eq!(parse(" 10.0.0.2:5353 "), Ok("10.0.0.2:5353".into()));
        assert_eq!(parse("fd00::53"), Ok("[fd00::53]:53".into()));
        assert_eq!(parse("[fd00::53]:5353"), Ok("[fd00::53]:5353".into()));
        assert!(parse("dns.example")
            .unwrap_err()
            .contains("not IP or IP:PORT"));
        assert!(parse("10.0.0.2:99999").is_err());
    }

    #[tokio::test]
    async fn the_given_servers_answer_names_the_system_does_not_know() {
        let server = spawn_dns_responder("db.only-here.test", [10, 9, 8, 7].into()).await;
        let resolver = ExitResolver::new(&[DnsServer(server)]);
        assert_eq!(
            resolver.resolve("DB.only-here.test", 5432).await,
            Ok(vec!["10.9.8.7:5432".parse().expect("addr")])
        );
        let unknown = resolver.resolve("other.only-here.test", 5432).await;
        assert!(unknown.unwrap_err().contains("with the exit's DNS servers"));
        assert!(ExitResolver::System
            .resolve("db.only-here.test", 5432)
            .await
            .is_err());
    }

    #[tokio::test]
    async fn an_address_needs_no_resolver() {
        let resolver = ExitResolver::new(&["127.0.0.1:9".parse().expect("server")]);
        assert_eq!(
            resolver.resolve("10.1.2.3", 80).await,
            Ok(vec!["10.1.2.3:80".parse().expect("addr")])
        );
    }
}
