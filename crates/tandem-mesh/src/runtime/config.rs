//! What a runtime is started with, checked before anything listens.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use ipnet::IpNet;

use super::resolve::DnsServer;
use crate::advert::{Destination, DomainPattern, RouteSpec, DEFAULT_WEIGHT, MAX_PATH_LEN};
use crate::policy::Restrictions;
use crate::table::TableConfig;
use crate::transport::{Backoff, BackoffError, SettingsError, TransportSettings};

/// How often an exit re-advertises its routes unless told otherwise.
pub const DEFAULT_ADVERTISE_INTERVAL: Duration = Duration::from_secs(30);
/// How long an exit waits for a TCP connection to a destination.
pub const DEFAULT_EXIT_DIAL_TIMEOUT: Duration = Duration::from_secs(5);

/// A mesh runtime's settings.
#[derive(Clone, Debug, PartialEq)]
pub struct MeshConfig {
    /// UDP address to listen on for peers.
    pub listen: SocketAddr,
    /// Peers to dial and keep dialing, `host:port` (a name is resolved at every attempt).
    pub peers: Vec<String>,
    /// CIDRs this agent exits to.
    pub exit_routes: Vec<IpNet>,
    /// Domain patterns this agent exits to (resolved here, see `exit_dns`).
    pub exit_domains: Vec<DomainPattern>,
    /// The DNS servers this exit resolves names with; empty: the system resolver.
    pub exit_dns: Vec<DnsServer>,
    /// The weight of this agent's exit routes (higher is preferred: primary and backup exits).
    pub exit_weight: u32,
    pub table: TableConfig,
    /// How often own routes are re-advertised; well below `table.route_ttl_ms`.
    pub advertise_interval: Duration,
    pub reconnect: Backoff,
    pub transport: TransportSettings,
    /// How long an exit waits for the destination's TCP handshake.
    pub exit_dial_timeout: Duration,
    /// This agent takes connections in (SOCKS5 or port-forwards): its health needs a route.
    pub ingress: bool,
    /// What the servers let each origin announce, as known at the start (this agent's own
    /// exit routes included); [`super::MeshRuntime::restrict`] changes it later.
    pub restrictions: Restrictions,
}

impl MeshConfig {
    /// A runtime listening on `listen` that dials nobody and exits nowhere.
    pub fn new(listen: SocketAddr) -> Self {
        Self {
            listen,
            peers: Vec::new(),
            exit_routes: Vec::new(),
            exit_domains: Vec::new(),
            exit_dns: Vec::new(),
            exit_weight: DEFAULT_WEIGHT,
            table: TableConfig::default(),
            advertise_interval: DEFAULT_ADVERTISE_INTERVAL,
            reconnect: Backoff::default(),
            transport: TransportSettings::default(),
            exit_dial_timeout: DEFAULT_EXIT_DIAL_TIMEOUT,
            ingress: false,
            restrictions: Restrictions::none(),
        }
    }

    /// The routes this agent originates.
    pub fn exits(&self) -> Vec<RouteSpec> {
        let prefixes = self
            .exit_routes
            .iter()
            .map(|net| Destination::Prefix(net.trunc()));
        let domains = self.exit_domains.iter().cloned().map(Destination::Domain);
        let mut dests: Vec<Destination> = prefixes.chain(domains).collect();
        dests.sort();
        dests.dedup();
        dests
            .into_iter()
            .map(|dest| RouteSpec::new(dest, self.exit_weight))
            .collect()
    }

    /// This agent's roles, for its health.
    pub fn roles(&self) -> MeshRoles {
        let exit = !self.exit_routes.is_empty() || !self.exit_domains.is_empty();
        MeshRoles {
            ingress: self.ingress,
            exit,
            transit: !self.ingress && !exit,
        }
    }

    /// Refuses settings the runtime cannot work with, naming the setting.
    pub fn check(&self) -> Result<(), MeshConfigError> {
        if let Some(peer) = self.peers.iter().find(|p| split_host_port(p).is_none()) {
            return Err(MeshConfigError::Peer(peer.clone()));
        }
        let hops = self.table.max_hops;
        if hops == 0 || hops > MAX_PATH_LEN {
            return Err(MeshConfigError::MaxHops(hops));
        }
        let ttl = Duration::from_millis(self.table.route_ttl_ms);
        if self.advertise_interval.is_zero() || self.advertise_interval * 2 > ttl {
            return Err(MeshConfigError::AdvertiseInterval {
                interval: self.advertise_interval,
                ttl,
            });
        }
        if self.exit_weight == 0 {
            return Err(MeshConfigError::Weight);
        }
        if self.exit_dial_timeout.is_zero() {
            return Err(MeshConfigError::ExitDialTimeout);
        }
        self.reconnect.check()?;
        self.transport.check()?;
        Ok(())
    }
}

/// What an agent does in the mesh; a transit is neither ingress nor exit.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct MeshRoles {
    pub ingress: bool,
    pub transit: bool,
    pub exit: bool,
}

/// A mesh setting out of its range.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum MeshConfigError {
    #[error("mesh peer {0:?} is not host:port (e.g. transit-a:4433)")]
    Peer(String),
    #[error("mesh max_hops {0} must be between 1 and {MAX_PATH_LEN}")]
    MaxHops(usize),
    #[error("mesh advertise_interval {interval:?} must be above zero and at most half of route_ttl {ttl:?}, so that a refresh arrives before the TTL drops a route")]
    AdvertiseInterval { interval: Duration, ttl: Duration },
    #[error("exit_weight must be above zero")]
    Weight,
    #[error("the exit dial timeout must be above zero")]
    ExitDialTimeout,
    #[error(transparent)]
    Reconnect(#[from] BackoffError),
    #[error(transparent)]
    Transport(#[from] SettingsError),
}

/// Splits `host:port` (an IPv6 address in brackets) into its host (brackets removed) and port.
pub fn split_host_port(text: &str) -> Option<(&str, u16)> {
    let text = text.trim();
    let (host, port) = match text.strip_prefix('[') {
        Some(rest) => {
            let (host, port) = rest.split_once("]:")?;
            host.parse::<std::net::Ipv6Addr>().ok()?;
            (host, port)
        }
        None => {
            let (host, port) = text.rsplit_once(':')?;
            if host.contains(':') {
                return None;
            }
            (host, port)
        }
    };
    if host.is_empty() {
        return None;
    }
    Some((host, port.parse().ok()?))
}

/// `host:port` as a flow names it: an IPv6 address in brackets.
pub fn join_host_port(host: &str, port: u16) -> String {
    match host.parse::<IpAddr>() {
        Ok(IpAddr::V6(v6)) => format!("[{v6}]:{port}"),
        _ => format!("{host}:{port}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> MeshConfig {
        MeshConfig::new("127.0.0.1:0".parse().expect("addr"))
    }

    #[test]
    fn host_port_splits_names_v4_and_bracketed_v6() {
        assert_eq!(split_host_port("transit-a:4433"), Some(("transit-a", 4433)));
        assert_eq!(split_host_port("10.0.0.1:80"), Some(("10.0.0.1", 80)));
        assert_eq!(split_host_port("[::1]:443"), Some(("::1", 443)));
        assert_eq!(split_host_port("::1:443"), None);
        assert_eq!(split_host_port("[nope]:443"), None);
        assert_eq!(split_host_port(":80"), None);
        assert_eq!(split_host_port("host:99999"), None);
        assert_eq!(split_host_port("host"), None);
        assert_eq!(join_host_port("::1", 443), "[::1]:443");
        assert_eq!(join_host_port("db.internal", 5432), "db.internal:5432");
    }

    #[test]
    fn exits_become_routes_with_the_weight_each_once() {
        let mut c = config();
        c.exit_routes = vec!["10.1.2.3/8".parse().expect("net")];
        c.exit_domains = vec![
            DomainPattern::parse("*.internal.example").expect("pattern"),
            DomainPattern::parse("*.Internal.example.").expect("pattern"),
        ];
        c.exit_weight = 50;
        let routes = c.exits();
        let shown: Vec<String> = routes.iter().map(|r| r.dest.to_string()).collect();
        assert_eq!(shown, ["10.0.0.0/8", "*.internal.example"]);
        assert!(routes.iter().all(|r| r.weight == 50));
    }

    #[test]
    fn roles_follow_from_what_the_agent_does() {
        let mut c = config();
        assert_eq!(
            c.roles(),
            MeshRoles {
                transit: true,
                ..MeshRoles::default()
            }
        );
        c.exit_routes = vec!["10.0.0.0/8".parse().expect("net")];
        c.ingress = true;
        assert_eq!(
            c.roles(),
            MeshRoles {
                ingress: true,
                exit: true,
                transit: false
            }
        );
    }

    #[test]
    fn bad_settings_name_what_is_wrong() {
        assert_eq!(config().check(), Ok(()));
        let mut c = config();
        c.peers = vec!["transit-a".into()];
        assert_eq!(c.check(), Err(MeshConfigError::Peer("transit-a".into())));
        let mut c = config();
        c.advertise_interval = Duration::from_secs(60);
        assert!(matches!(
            c.check(),
            Err(MeshConfigError::AdvertiseInterval { .. })
        ));
        let mut c = config();
        c.table.max_hops = 0;
        assert_eq!(c.check(), Err(MeshConfigError::MaxHops(0)));
        let mut c = config();
        c.reconnect.jitter = 2.0;
        assert!(matches!(c.check(), Err(MeshConfigError::Reconnect(_))));
    }
}
