//! The path-vector protocol on the wire: advertisements, withdrawals, their version envelope,
//! their limits, and the checks every received message must pass before the table looks at it.
//!
//! A message is JSON in an envelope `{"version": 2, "message": {"advertise": {...}}}`. The
//! version is read first, so a peer speaking another version gets a clear refusal, not a parse
//! error about some field.
//!
//! An advertisement carries its origin's [`OriginProof`]: the origin signs what it announces
//! (origin, sequence number, routes, TTL) and relays pass the proof on untouched, so no agent
//! can announce routes in another's name or change what the origin said. The path is not
//! signed: each relay appends itself. A withdrawal only takes a path away from the peer that
//! sent it, so it needs no proof.

use std::collections::BTreeSet;
use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

/// The protocol version this build speaks (2: advertisements carry their origin's proof).
pub const PROTOCOL_VERSION: u16 = 2;
/// The largest encoded message accepted or produced.
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024;
/// The most routes one message may carry.
pub const MAX_ROUTES: usize = 1024;
/// The longest path any message may carry, whatever `max_hops` says.
pub const MAX_PATH_LEN: usize = 64;
/// The longest TTL an advertisement may ask for (one day).
pub const MAX_TTL_MS: u64 = 24 * 60 * 60 * 1000;
/// The weight of a route that names none.
pub const DEFAULT_WEIGHT: u32 = 100;
/// How far agents' clocks may disagree: an advertisement is refused once its issue time plus
/// its TTL lies this far in the past, or when it was issued this far in the future.
pub const MAX_CLOCK_SKEW_MS: u64 = 60_000;

const MAX_DOMAIN_LEN: usize = 253;
const MAX_LABEL_LEN: usize = 63;

/// Why a message, a name or a destination was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AdvertError {
    #[error("{0}")]
    BadName(String),
    #[error("{input:?} is neither a CIDR, an address nor a domain pattern: {why}")]
    BadDestination { input: String, why: String },
    #[error("the message is empty")]
    EmptyMessage,
    #[error("the message is {len} bytes long; the limit is {max}")]
    TooLarge { len: usize, max: usize },
    #[error("the message is not a mesh message: {0}")]
    Garbage(String),
    #[error("protocol version {got} is not supported (this agent speaks {supported}); run the same release on both agents")]
    UnsupportedVersion { got: u16, supported: u16 },
    #[error("the message from origin {origin} lists no routes")]
    NoRoutes { origin: AgentId },
    #[error("the message lists {count} routes; the limit is {max}")]
    TooManyRoutes { count: usize, max: usize },
    #[error("route {dest} is listed twice")]
    DuplicateRoute { dest: Destination },
    #[error("path [{path}] must start at the origin {origin}")]
    PathNotFromOrigin { path: String, origin: AgentId },
    #[error("path [{path}] must end at the peer {sender} that sent it")]
    PathNotFromSender { path: String, sender: AgentId },
    #[error("loop: path [{path}] already holds {agent}")]
    Loop { path: String, agent: AgentId },
    #[error("path [{path}] has {hops} hops; the limit (max_hops) is {max}")]
    TooManyHops {
        path: String,
        hops: usize,
        max: usize,
    },
    #[error("ttl_ms {ttl_ms} must be between 1 and {max}")]
    BadTtl { ttl_ms: u64, max: u64 },
    #[error("origin {origin} may not announce {dest} (refused by the announce policy)")]
    NotAllowed { origin: AgentId, dest: Destination },
    #[error("{peer} is not a connected peer (a message came before peer_up or after peer_down)")]
    NotAPeer { peer: AgentId },
    #[error("the advertisement of {origin} at seq {seq} is not signed by {origin}: {why}")]
    BadProof {
        origin: AgentId,
        seq: u64,
        why: String,
    },
    #[error("the advertisement of {origin} at seq {seq} announces routes that {origin} no longer announces at seq {newest} (a replay)")]
    Superseded {
        origin: AgentId,
        seq: u64,
        newest: u64,
    },
    #[error("the advertisement of {origin} at seq {seq} has outlived its TTL (a replay, or this agent's clock is ahead)")]
    Expired { origin: AgentId, seq: u64 },
    #[error("the advertisement of {origin} at seq {seq} was issued {ahead_ms} ms in the future; the clocks of the two agents disagree, check their time synchronisation")]
    IssuedInTheFuture {
        origin: AgentId,
        seq: u64,
        ahead_ms: u64,
    },
}

/// An agent's name, checked like every agent name in the registry.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct AgentId(String);

impl AgentId {
    pub fn new(name: impl Into<String>) -> Result<Self, AdvertError> {
        let name = name.into();
        tandem_registry::check_name("agent name", &name).map_err(AdvertError::BadName)?;
        Ok(Self(name))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for AgentId {
    type Error = AdvertError;
    fn try_from(name: String) -> Result<Self, Self::Error> {
        Self::new(name)
    }
}

impl From<AgentId> for String {
    fn from(id: AgentId) -> Self {
        id.0
    }
}

impl fmt::Display for AgentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A domain an exit can reach: one name, or every name under a suffix (`*.internal.example`
/// matches `db.internal.example` and `a.b.internal.example`, not `internal.example`).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum DomainPattern {
    Exact(String),
    /// Holds the suffix without the leading `*.`.
    Wildcard(String),
}

impl DomainPattern {
    pub fn parse(input: &str) -> Result<Self, AdvertError> {
        let bad = |why: String| AdvertError::BadDestination {
            input: input.to_owned(),
            why,
        };
        let lower = input
            .strip_suffix('.')
            .unwrap_or(input)
            .to_ascii_lowercase();
        match lower.strip_prefix("*.") {
            Some(suffix) => check_domain_name(suffix)
                .map(|()| Self::Wildcard(suffix.to_owned()))
                .map_err(bad),
            None => check_domain_name(&lower)
                .map(|()| Self::Exact(lower))
                .map_err(bad),
        }
    }

    /// Whether `name` (already lower case, without a trailing dot) falls under this pattern.
    pub fn matches(&self, name: &str) -> bool {
        match self {
            Self::Exact(exact) => exact == name,
            Self::Wildcard(suffix) => is_under(name, suffix),
        }
    }
}

/// `name` is a strict subdomain of `suffix`.
pub(crate) fn is_under(name: &str, suffix: &str) -> bool {
    name.strip_suffix(suffix)
        .is_some_and(|head| head.len() > 1 && head.ends_with('.'))
}

impl fmt::Display for DomainPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Exact(name) => f.write_str(name),
            Self::Wildcard(suffix) => write!(f, "*.{suffix}"),
        }
    }
}

fn check_domain_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > MAX_DOMAIN_LEN {
        return Err(format!("a domain is 1 to {MAX_DOMAIN_LEN} characters long"));
    }
    for label in name.split('.') {
        check_label(label)?;
    }
    Ok(())
}

fn check_label(label: &str) -> Result<(), String> {
    if label.is_empty() || label.len() > MAX_LABEL_LEN {
        return Err(format!(
            "label {label:?} must be 1 to {MAX_LABEL_LEN} characters long"
        ));
    }
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_');
    if !label.chars().all(allowed) || label.starts_with('-') || label.ends_with('-') {
        return Err(format!(
            "label {label:?} may hold only letters, digits, '-' and '_', and may not start or end with '-'"
        ));
    }
    Ok(())
}

/// Where a route leads: a CIDR (host bits cleared) or a domain pattern. Written as one string:
/// `10.0.0.0/8`, `10.1.2.3` (a /32), `db.internal.example`, `*.internal.example`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum Destination {
    Prefix(IpNet),
    Domain(DomainPattern),
}

impl Destination {
    /// Whether every name or address `other` stands for also falls under `self`.
    pub fn covers(&self, other: &Destination) -> bool {
        use DomainPattern::{Exact, Wildcard};
        match (self, other) {
            (Self::Prefix(outer), Self::Prefix(inner)) => outer.contains(inner),
            (Self::Domain(Exact(a)), Self::Domain(Exact(b))) => a == b,
            (Self::Domain(Wildcard(suffix)), Self::Domain(Exact(name))) => is_under(name, suffix),
            (Self::Domain(Wildcard(outer)), Self::Domain(Wildcard(inner))) => {
                inner == outer || is_under(inner, outer)
            }
            _ => false,
        }
    }
}

impl FromStr for Destination {
    type Err = AdvertError;
    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let input = input.trim();
        if let Ok(net) = input.parse::<IpNet>() {
            return Ok(Self::Prefix(net.trunc()));
        }
        if let Ok(addr) = input.parse::<IpAddr>() {
            return Ok(Self::Prefix(IpNet::from(addr)));
        }
        DomainPattern::parse(input).map(Self::Domain)
    }
}

impl TryFrom<String> for Destination {
    type Error = AdvertError;
    fn try_from(input: String) -> Result<Self, Self::Error> {
        input.parse()
    }
}

impl From<Destination> for String {
    fn from(dest: Destination) -> Self {
        dest.to_string()
    }
}

impl fmt::Display for Destination {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Prefix(net) => write!(f, "{net}"),
            Self::Domain(pattern) => write!(f, "{pattern}"),
        }
    }
}

/// One route an origin announces; a higher weight is preferred (primary and backup exits).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouteSpec {
    pub dest: Destination,
    #[serde(default = "default_weight")]
    pub weight: u32,
}

impl RouteSpec {
    pub fn new(dest: Destination, weight: u32) -> Self {
        Self { dest, weight }
    }
}

fn default_weight() -> u32 {
    DEFAULT_WEIGHT
}

/// An origin's complete set of routes at `seq`. A newer advertisement over the same path
/// replaces the set, so a route left out is withdrawn.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Advertisement {
    pub origin: AgentId,
    /// The origin's sequence number; relays never change it.
    pub seq: u64,
    /// Origin first; every relay appends its own id, so the last id is the sender.
    pub path: Vec<AgentId>,
    pub routes: Vec<RouteSpec>,
    pub ttl_ms: u64,
    /// When the origin signed it, in Unix milliseconds by its clock: no copy is taken after
    /// `issued_ms + ttl_ms` (give or take [`MAX_CLOCK_SKEW_MS`]), whoever repeats it.
    pub issued_ms: u64,
    /// The origin's signature of [`Advertisement::statement`].
    pub proof: OriginProof,
}

impl Advertisement {
    /// What the origin signs: everything but the path, which relays extend.
    pub fn statement(&self) -> Vec<u8> {
        statement(
            &self.origin,
            self.seq,
            &self.routes,
            self.ttl_ms,
            self.issued_ms,
        )
    }

    /// Refuses an advertisement that has outlived its TTL or comes from the future, by the
    /// receiver's clock `unix_now_ms`.
    pub fn check_issued(&self, unix_now_ms: u64) -> Result<(), AdvertError> {
        let ahead_ms = self.issued_ms.saturating_sub(unix_now_ms);
        if ahead_ms > MAX_CLOCK_SKEW_MS {
            return Err(AdvertError::IssuedInTheFuture {
                origin: self.origin.clone(),
                seq: self.seq,
                ahead_ms,
            });
        }
        let lives_until = self
            .issued_ms
            .saturating_add(self.ttl_ms)
            .saturating_add(MAX_CLOCK_SKEW_MS);
        if lives_until < unix_now_ms {
            return Err(AdvertError::Expired {
                origin: self.origin.clone(),
                seq: self.seq,
            });
        }
        Ok(())
    }
}

/// The bytes an origin signs for its routes at `seq`: tagged, so that a signature made for
/// anything else never passes as an advertisement, and with the routes in one order, so that
/// relays may list them in theirs.
pub fn statement(
    origin: &AgentId,
    seq: u64,
    routes: &[RouteSpec],
    ttl_ms: u64,
    issued_ms: u64,
) -> Vec<u8> {
    #[derive(Serialize)]
    struct Statement<'a> {
        statement: &'static str,
        origin: &'a AgentId,
        seq: u64,
        routes: Vec<&'a RouteSpec>,
        ttl_ms: u64,
        issued_ms: u64,
    }
    let mut routes: Vec<&RouteSpec> = routes.iter().collect();
    routes.sort_by(|a, b| a.dest.cmp(&b.dest));
    let statement = Statement {
        statement: "tandem mesh advertisement v2",
        origin,
        seq,
        routes,
        ttl_ms,
        issued_ms,
    };
    // Names, destinations and numbers always serialise.
    serde_json::to_vec(&statement).unwrap_or_default()
}

/// An origin's proof that it announced an advertisement: its agent certificate (DER) and its
/// signature of the advertisement's statement, both base64 on the wire.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OriginProof {
    #[serde(with = "base64_bytes")]
    pub certificate: Vec<u8>,
    #[serde(with = "base64_bytes")]
    pub signature: Vec<u8>,
}

mod base64_bytes {
    use base64::engine::general_purpose::STANDARD;
    use base64::Engine;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&STANDARD.encode(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(deserializer)?;
        STANDARD
            .decode(text.as_bytes())
            .map_err(serde::de::Error::custom)
    }
}

/// The relay at the end of `path` no longer carries `origin`'s routes: the path it named is
/// gone. `seq` is the origin's sequence number the relay last passed on.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Withdrawal {
    pub origin: AgentId,
    pub seq: u64,
    pub path: Vec<AgentId>,
}

/// A message between two peers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Message {
    Advertise(Advertisement),
    Withdraw(Withdrawal),
}

#[derive(Serialize, Deserialize)]
struct Envelope {
    version: u16,
    message: Message,
}

#[derive(Deserialize)]
struct VersionProbe {
    version: u16,
}

/// Encodes a message in the current version; refuses one that would exceed the size limit.
pub fn encode(message: &Message) -> Result<Vec<u8>, AdvertError> {
    let envelope = Envelope {
        version: PROTOCOL_VERSION,
        message: message.clone(),
    };
    let bytes = serde_json::to_vec(&envelope).map_err(|e| AdvertError::Garbage(e.to_string()))?;
    check_size(bytes.len())?;
    Ok(bytes)
}

/// Decodes a message from a peer: size first, then version, then the body (names and
/// destinations are checked as they are parsed).
pub fn decode(bytes: &[u8]) -> Result<Message, AdvertError> {
    check_size(bytes.len())?;
    let probe: VersionProbe =
        serde_json::from_slice(bytes).map_err(|e| AdvertError::Garbage(e.to_string()))?;
    if probe.version != PROTOCOL_VERSION {
        return Err(AdvertError::UnsupportedVersion {
            got: probe.version,
            supported: PROTOCOL_VERSION,
        });
    }
    let envelope: Envelope =
        serde_json::from_slice(bytes).map_err(|e| AdvertError::Garbage(e.to_string()))?;
    Ok(envelope.message)
}

fn check_size(len: usize) -> Result<(), AdvertError> {
    if len == 0 {
        return Err(AdvertError::EmptyMessage);
    }
    if len > MAX_MESSAGE_BYTES {
        return Err(AdvertError::TooLarge {
            len,
            max: MAX_MESSAGE_BYTES,
        });
    }
    Ok(())
}

/// Who is checking a received message: this agent, the peer it came from, and the hop limit.
#[derive(Clone, Copy, Debug)]
pub struct Receiver<'a> {
    pub me: &'a AgentId,
    pub sender: &'a AgentId,
    pub max_hops: usize,
}

impl Advertisement {
    /// The checks that need no table: routes present, unique and few enough; a path from the
    /// origin to the sender without loops and within `max_hops`; a sane TTL.
    pub fn check(&self, receiver: Receiver<'_>) -> Result<(), AdvertError> {
        check_routes(&self.origin, self.routes.iter().map(|r| &r.dest))?;
        check_path(&self.origin, &self.path, receiver)?;
        if self.ttl_ms == 0 || self.ttl_ms > MAX_TTL_MS {
            return Err(AdvertError::BadTtl {
                ttl_ms: self.ttl_ms,
                max: MAX_TTL_MS,
            });
        }
        Ok(())
    }
}

impl Withdrawal {
    pub fn check(&self, receiver: Receiver<'_>) -> Result<(), AdvertError> {
        check_path(&self.origin, &self.path, receiver)
    }
}

pub(crate) fn check_routes<'a>(
    origin: &AgentId,
    dests: impl ExactSizeIterator<Item = &'a Destination>,
) -> Result<(), AdvertError> {
    let count = dests.len();
    if count == 0 {
        return Err(AdvertError::NoRoutes {
            origin: origin.clone(),
        });
    }
    if count > MAX_ROUTES {
        return Err(AdvertError::TooManyRoutes {
            count,
            max: MAX_ROUTES,
        });
    }
    let mut seen = BTreeSet::new();
    for dest in dests {
        if !seen.insert(dest) {
            return Err(AdvertError::DuplicateRoute { dest: dest.clone() });
        }
    }
    Ok(())
}

fn check_path(
    origin: &AgentId,
    path: &[AgentId],
    receiver: Receiver<'_>,
) -> Result<(), AdvertError> {
    let shown = || show_path(path);
    if path.first() != Some(origin) {
        return Err(AdvertError::PathNotFromOrigin {
            path: shown(),
            origin: origin.clone(),
        });
    }
    if path.last() != Some(receiver.sender) {
        return Err(AdvertError::PathNotFromSender {
            path: shown(),
            sender: receiver.sender.clone(),
        });
    }
    let max = receiver.max_hops.min(MAX_PATH_LEN);
    if path.len() > max {
        return Err(AdvertError::TooManyHops {
            path: shown(),
            hops: path.len(),
            max,
        });
    }
    if let Some(agent) = first_repeat(path, receiver.me) {
        return Err(AdvertError::Loop {
            path: shown(),
            agent: agent.clone(),
        });
    }
    Ok(())
}

/// The first id on the path that is `me` or appears twice.
fn first_repeat<'a>(path: &'a [AgentId], me: &AgentId) -> Option<&'a AgentId> {
    let mut seen = BTreeSet::new();
    path.iter().find(|id| *id == me || !seen.insert(*id))
}

pub(crate) fn show_path(path: &[AgentId]) -> String {
    let names: Vec<&str> = path.iter().map(AgentId::as_str).collect();
    names.join(" > ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(name: &str) -> AgentId {
        AgentId::new(name).expect("valid test name")
    }

    fn dest(s: &str) -> Destination {
        s.parse().expect("valid test destination")
    }

    fn advert(path: &[&str]) -> Advertisement {
        Advertisement {
            origin: id(path[0]),
            seq: 1,
            path: path.iter().map(|n| id(n)).collect(),
            routes: vec![RouteSpec::new(dest("10.0.0.0/8"), DEFAULT_WEIGHT)],
            ttl_ms: 60_000,
            issued_ms: 1_000_000,
            proof: OriginProof {
                certificate: vec![0x30, 0x82, 0xff],
                signature: b"any bytes".to_vec(),
            },
        }
    }

    fn receiver<'a>(me: &'a AgentId, sender: &'a AgentId) -> Receiver<'a> {
        Receiver {
            me,
            sender,
            max_hops: 4,
        }
    }

    #[test]
    fn messages_round_trip_through_encode_and_decode() {
        let messages = [
            Message::Advertise(advert(&["exit-a", "transit-1"])),
            Message::Withdraw(Withdrawal {
                origin: id("exit-a"),
                seq: 7,
                path: vec![id("exit-a")],
            }),
        ];
        for message in messages {
            let bytes = encode(&message).expect("encodes");
            assert_eq!(decode(&bytes).expect("decodes"), message);
        }
    }

    #[test]
    fn garbage_oversized_and_unknown_version_messages_are_refused() {
        assert_eq!(decode(b""), Err(AdvertError::EmptyMessage));
        assert!(matches!(
            decode(b"\x00\xffnot json"),
            Err(AdvertError::Garbage(_))
        ));
        assert!(matches!(
            decode(b"{\"version\":2}"),
            Err(AdvertError::Garbage(_))
        ));
        let huge = vec![b' '; MAX_MESSAGE_BYTES + 1];
        assert!(matches!(decode(&huge), Err(AdvertError::TooLarge { .. })));
        for other in [1, 3] {
            let message = format!(r#"{{"version":{other},"message":{{"something_new":{{}}}}}}"#);
            assert_eq!(
                decode(message.as_bytes()),
                Err(AdvertError::UnsupportedVersion {
                    got: other,
                    supported: PROTOCOL_VERSION
                })
            );
        }
    }

    #[test]
    fn bad_names_and_destinations_in_a_message_are_refused_while_decoding() {
        let bad_name =
            br#"{"version":2,"message":{"withdraw":{"origin":"../etc","seq":1,"path":["../etc"]}}}"#;
        assert!(matches!(decode(bad_name), Err(AdvertError::Garbage(_))));
        let bad_dest = br#"{"version":2,"message":{"advertise":{"origin":"a","seq":1,"path":["a"],"routes":[{"dest":"*.bad..name"}],"ttl_ms":1,"proof":{"certificate":"","signature":""}}}}"#;
        assert!(matches!(decode(bad_dest), Err(AdvertError::Garbage(_))));
        let bad_proof = br#"{"version":2,"message":{"advertise":{"origin":"a","seq":1,"path":["a"],"routes":[{"dest":"10.0.0.0/8"}],"ttl_ms":1,"proof":{"certificate":"not base64!","signature":""}}}}"#;
        assert!(matches!(decode(bad_proof), Err(AdvertError::Garbage(_))));
    }

    #[test]
    fn the_statement_covers_everything_but_the_path() {
        let signed = advert(&["exit-a"]);
        let mut relayed = signed.clone();
        relayed.path.push(id("transit-1"));
        assert_eq!(relayed.statement(), signed.statement());
        let changes: [fn(&mut Advertisement); 5] = [
            |a| a.origin = AgentId::new("exit-b").expect("valid"),
            |a| a.seq += 1,
            |a| a.routes[0].weight += 1,
            |a| a.ttl_ms += 1,
            |a| a.issued_ms += 1,
        ];
        for change in changes {
            let mut changed = signed.clone();
            change(&mut changed);
            assert_ne!(changed.statement(), signed.statement());
        }
    }

    #[test]
    fn an_advert_lives_its_ttl_from_its_issue_time_give_or_take_the_clock_skew() {
        let advert = advert(&["exit-a"]);
        let (issued, ttl) = (advert.issued_ms, advert.ttl_ms);
        assert_eq!(advert.check_issued(issued), Ok(()));
        assert_eq!(advert.check_issued(issued - MAX_CLOCK_SKEW_MS), Ok(()));
        assert_eq!(
            advert.check_issued(issued + ttl + MAX_CLOCK_SKEW_MS),
            Ok(())
        );
        assert!(matches!(
            advert.check_issued(issued + ttl + MAX_CLOCK_SKEW_MS + 1),
            Err(AdvertError::Expired { .. })
        ));
        assert!(matches!(
            advert.check_issued(issued - MAX_CLOCK_SKEW_MS - 1),
            Err(AdvertError::IssuedInTheFuture { ahead_ms, .. }) if ahead_ms == MAX_CLOCK_SKEW_MS + 1
        ));
    }

    #[test]
    fn an_oversized_message_is_refused_before_it_is_sent() {
        let mut big = advert(&["exit-a"]);
        big.routes = (0..4000u32)
            .map(|i| RouteSpec::new(dest(&format!("10.{}.{}.0/24", i / 256, i % 256)), 1))
            .collect();
        assert!(matches!(
            encode(&Message::Advertise(big)),
            Err(AdvertError::TooLarge { .. })
        ));
    }

    #[test]
    fn destinations_parse_normalise_and_print() {
        assert_eq!(dest("10.1.2.3/8").to_string(), "10.0.0.0/8");
        assert_eq!(dest("10.1.2.3").to_string(), "10.1.2.3/32");
        assert_eq!(dest("::1").to_string(), "::1/128");
        assert_eq!(
            dest("DB.Internal.Example.").to_string(),
            "db.internal.example"
        );
        assert_eq!(dest("*.Internal.example").to_string(), "*.internal.example");
        for bad in ["", "*.", "*", "a..b", "-a.b", "a b", "*.*.x", "a/b"] {
            assert!(
                bad.parse::<Destination>().is_err(),
                "{bad:?} should be refused"
            );
        }
    }

    #[test]
    fn wildcards_match_strict_subdomains_at_any_depth() {
        let wild = DomainPattern::parse("*.internal.example").expect("valid");
        assert!(wild.matches("db.internal.example"));
        assert!(wild.matches("a.b.internal.example"));
        assert!(!wild.matches("internal.example"));
        assert!(!wild.matches("xinternal.example"));
        assert!(dest("*.example").covers(&dest("*.internal.example")));
        assert!(!dest("*.internal.example").covers(&dest("*.example")));
        assert!(dest("10.0.0.0/8").covers(&dest("10.1.0.0/16")));
        assert!(!dest("10.1.0.0/16").covers(&dest("10.0.0.0/8")));
    }

    #[test]
    fn agent_ids_are_checked_like_registry_names() {
        assert!(AgentId::new("transit-1").is_ok());
        assert!(AgentId::new("").is_err());
        assert!(AgentId::new("-x").is_err());
        assert!(AgentId::new("a/b").is_err());
    }

    #[test]
    fn a_path_with_our_id_or_a_repeat_is_a_loop() {
        let (me, sender) = (id("ingress"), id("transit-1"));
        let through_us = advert(&["exit-a", "ingress", "transit-1"]);
        assert!(matches!(
            through_us.check(receiver(&me, &sender)),
            Err(AdvertError::Loop { agent, .. }) if agent == me
        ));
        let repeat = advert(&["exit-a", "transit-2", "exit-a", "transit-1"]);
        assert!(matches!(
            repeat.check(receiver(&me, &sender)),
            Err(AdvertError::Loop { .. })
        ));
    }

    #[test]
    fn paths_must_run_from_the_origin_to_the_sender_within_max_hops() {
        let (me, sender) = (id("ingress"), id("transit-1"));
        let mut wrong_origin = advert(&["exit-a", "transit-1"]);
        wrong_origin.origin = id("exit-b");
        assert!(matches!(
            wrong_origin.check(receiver(&me, &sender)),
            Err(AdvertError::PathNotFromOrigin { .. })
        ));
        let wrong_sender = advert(&["exit-a", "transit-2"]);
        assert!(matches!(
            wrong_sender.check(receiver(&me, &sender)),
            Err(AdvertError::PathNotFromSender { .. })
        ));
        let long = advert(&["exit-a", "t-1", "t-2", "t-3", "transit-1"]);
        assert!(matches!(
            long.check(receiver(&me, &sender)),
            Err(AdvertError::TooManyHops {
                hops: 5,
                max: 4,
                ..
            })
        ));
        let mut empty_path = advert(&["exit-a"]);
        empty_path.path.clear();
        assert!(empty_path.check(receiver(&me, &sender)).is_err());
    }

    #[test]
    fn empty_duplicate_and_badly_timed_adverts_are_refused() {
        let (me, sender) = (id("ingress"), id("transit-1"));
        let mut empty = advert(&["exit-a", "transit-1"]);
        empty.routes.clear();
        assert!(matches!(
            empty.check(receiver(&me, &sender)),
            Err(AdvertError::NoRoutes { .. })
        ));
        let mut twice = advert(&["exit-a", "transit-1"]);
        twice.routes.push(RouteSpec::new(dest("10.0.0.0/8"), 5));
        assert!(matches!(
            twice.check(receiver(&me, &sender)),
            Err(AdvertError::DuplicateRoute { .. })
        ));
        let mut forever = advert(&["exit-a", "transit-1"]);
        forever.ttl_ms = 0;
        assert!(matches!(
            forever.check(receiver(&me, &sender)),
            Err(AdvertError::BadTtl { .. })
        ));
    }
}
