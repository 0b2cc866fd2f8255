//! One agent's route table: every path it has heard, the path chosen per destination, and
//! what it last relayed per origin. Inputs are messages, peer events, this agent's own exits
//! and the time; each call returns an [`Output`] and never touches a socket or a clock.
//!
//! The runtime's promises: messages from one peer are handed in the order the peer sent them
//! (one ordered stream per peer); `now_ms` never goes backwards; every outgoing message is
//! sent at once; [`RouteTable::expire`] is called at [`RouteTable::next_deadline`]; the first
//! sequence number given to [`RouteTable::new`] is larger than any this agent used before a
//! restart (milliseconds since the Unix epoch at start do).
//!
//! Every advertisement must carry its origin's proof ([`OriginProofs`]); this agent signs its
//! own whenever their sequence number changes. A relay can only pass an origin's words on or
//! drop them: a withdrawal takes away the sender's whole path, and a policy refuses a path
//! whole. Against replays, the table remembers each origin's newest advertisement: an older one
//! may not carry routes the newest lacks, and no copy lives longer than the newest's TTL from
//! when this agent first heard it, however often a peer repeats it.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::sync::Arc;

use ipnet::IpNet;
use prefix_trie::joint::JointPrefixSet;

use crate::advert::{
    self, AdvertError, Advertisement, AgentId, Destination, DomainPattern, Message, OriginProof,
    Receiver, RouteSpec, Withdrawal,
};
use crate::output::{Output, SelectionChange};
use crate::path::{PathId, PathState, PathView, SelectedRoute};
use crate::policy::AnnouncePolicy;
use crate::proof::OriginProofs;
use crate::relay::{self, Relayed};
use crate::select::{self, Candidate, Rank};

/// A lost path is remembered this many route TTLs, so that its return counts as a recovery.
const LOST_MEMORY_TTLS: u64 = 10;

/// The table's settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TableConfig {
    /// The longest path accepted (origin included, this agent not).
    pub max_hops: usize,
    /// How long a recovered path must stay available before it takes the traffic back, and
    /// how long a suspected next hop stays demoted without an acknowledgement.
    pub hold_down_ms: u64,
    /// The TTL of this agent's own advertisements; refresh well within it.
    pub route_ttl_ms: u64,
}

impl Default for TableConfig {
    fn default() -> Self {
        Self {
            max_hops: 8,
            hold_down_ms: 5_000,
            route_ttl_ms: 90_000,
        }
    }
}

/// One stored path and the routes it carries.
#[derive(Clone, Debug)]
struct StoredPath {
    seq: u64,
    /// Origin first, next hop last; `[me]` for this agent's own routes.
    path: Vec<AgentId>,
    routes: BTreeMap<Destination, u32>,
    ttl_ms: u64,
    since_ms: u64,
    expires_ms: Option<u64>,
    held_until_ms: u64,
    issued_ms: u64,
    proof: OriginProof,
}

/// What a path announces, before the table stores it.
struct Heard {
    seq: u64,
    path: Vec<AgentId>,
    routes: BTreeMap<Destination, u32>,
    ttl_ms: u64,
    expires_ms: Option<u64>,
    issued_ms: u64,
    proof: OriginProof,
}

/// The newest advertisement heard from an origin, over any path.
#[derive(Clone, Debug)]
struct Newest {
    seq: u64,
    routes: BTreeMap<Destination, u32>,
    first_heard_ms: u64,
    ttl_ms: u64,
}

impl Newest {
    /// No copy of this origin's advertisements lives past this.
    fn expires_ms(&self) -> u64 {
        self.first_heard_ms.saturating_add(self.ttl_ms)
    }
}

/// The paths stored for one destination and the one chosen.
#[derive(Clone, Debug, Default)]
struct DestState {
    paths: BTreeSet<PathId>,
    selected: Option<PathId>,
}

/// What a call touched: destinations to choose again, origins to relay again.
#[derive(Default)]
struct Touched {
    dests: BTreeSet<Destination>,
    origins: BTreeSet<AgentId>,
}

/// The route table of one agent.
#[derive(Debug)]
pub struct RouteTable {
    me: AgentId,
    config: TableConfig,
    policy: Arc<dyn AnnouncePolicy>,
    proofs: Arc<dyn OriginProofs>,
    peers: BTreeSet<AgentId>,
    paths: BTreeMap<PathId, StoredPath>,
    dests: BTreeMap<Destination, DestState>,
    /// The CIDR destinations, for longest-prefix match.
    prefixes: JointPrefixSet<IpNet>,
    /// When each path was last lost.
    lost: BTreeMap<PathId, u64>,
    /// Suspected next hops and until when.
    suspects: BTreeMap<AgentId, u64>,
    relayed: BTreeMap<AgentId, Relayed>,
    /// The last advertisement over each path that the policy refused: a policy that later
    /// allows it admits it at once instead of at the origin's next refresh.
    refused: BTreeMap<PathId, Advertisement>,
    /// Each origin's newest advertisement, kept while its paths are and a while after.
    origins: BTreeMap<AgentId, Newest>,
    own_seq: u64,
    clock_ms: u64,
}

impl RouteTable {
    /// A table for agent `me`; `first_seq` must exceed every sequence number `me` used before.
    pub fn new(
        me: AgentId,
        config: TableConfig,
        policy: Arc<dyn AnnouncePolicy>,
        proofs: Arc<dyn OriginProofs>,
        first_seq: u64,
    ) -> Self {
        Self {
            me,
            config,
            policy,
            proofs,
            peers: BTreeSet::new(),
            paths: BTreeMap::new(),
            dests: BTreeMap::new(),
            prefixes: JointPrefixSet::new(),
            lost: BTreeMap::new(),
            suspects: BTreeMap::new(),
            relayed: BTreeMap::new(),
            refused: BTreeMap::new(),
            origins: BTreeMap::new(),
            own_seq: first_seq,
            clock_ms: 0,
        }
    }

    pub fn me(&self) -> &AgentId {
        &self.me
    }

    pub fn config(&self) -> &TableConfig {
        &self.config
    }

    /// The connected peers.
    pub fn peers(&self) -> impl Iterator<Item = &AgentId> {
        self.peers.iter()
    }

    // ----- inputs -----

    /// A peer connected: it hears everything this agent relays.
    pub fn peer_up(&mut self, peer: AgentId, now_ms: u64) -> Output {
        self.tick(now_ms);
        if peer == self.me {
            return Output::default();
        }
        self.peers.insert(peer);
        let mut touched = Touched::default();
        touched.origins.extend(self.relayed.keys().cloned());
        touched
            .origins
            .extend(self.paths.keys().map(|id| id.origin.clone()));
        self.finish(touched, now_ms)
    }

    /// A peer is gone: every path through it goes at once, the choice moves to the next path,
    /// and the other peers hear withdrawals (or the new path) in the same output.
    pub fn peer_down(&mut self, peer: &AgentId, now_ms: u64) -> Output {
        self.tick(now_ms);
        self.peers.remove(peer);
        self.suspects.remove(peer);
        self.refused.retain(|id, _| &id.next_hop != peer);
        for relayed in self.relayed.values_mut() {
            relayed.sent_to.remove(peer);
        }
        let mut touched = Touched::default();
        for id in self.ids_through(peer) {
            self.drop_path(&id, now_ms, &mut touched);
        }
        self.finish(touched, now_ms)
    }

    /// Any message from a peer.
    pub fn receive(
        &mut self,
        from_peer: &AgentId,
        message: Message,
        now_ms: u64,
    ) -> Result<Output, AdvertError> {
        match message {
            Message::Advertise(advert) => self.advertise(from_peer, advert, now_ms),
            Message::Withdraw(withdrawal) => self.withdraw(from_peer, withdrawal, now_ms),
        }
    }

    /// An advertisement from a peer: checked (form, origin's proof, freshness), stored beside
    /// every other path, relayed.
    pub fn advertise(
        &mut self,
        from_peer: &AgentId,
        advert: Advertisement,
        now_ms: u64,
    ) -> Result<Output, AdvertError> {
        self.tick(now_ms);
        self.check_sender(from_peer)?;
        advert.check(self.receiver(from_peer))?;
        self.check_proof(&advert)?;
        advert.check_issued(self.proofs.unix_now_ms())?;
        self.note_newest(&advert, now_ms)?;
        let id = PathId {
            origin: advert.origin.clone(),
            next_hop: from_peer.clone(),
        };
        if let Err(refused) = self.check_policy(&advert) {
            self.refused.insert(id, advert);
            return Err(refused);
        }
        self.refused.remove(&id);
        let mut touched = Touched::default();
        self.admit(id, advert, now_ms, &mut touched);
        Ok(self.finish(touched, now_ms))
    }

    /// Stores an allowed advertisement, unless it is stale or it or its origin's newest
    /// advertisement has expired.
    fn admit(&mut self, id: PathId, advert: Advertisement, now_ms: u64, touched: &mut Touched) {
        if self.is_stale(&id, &advert) || advert.check_issued(self.proofs.unix_now_ms()).is_err() {
            return;
        }
        let Some(expires_ms) = self
            .origins
            .get(&advert.origin)
            .map(Newest::expires_ms)
            .filter(|at| *at > now_ms)
        else {
            return;
        };
        let heard = Heard {
            seq: advert.seq,
            routes: route_map(&advert.routes),
            path: advert.path,
            ttl_ms: advert.ttl_ms,
            expires_ms: Some(expires_ms),
            issued_ms: advert.issued_ms,
            proof: advert.proof,
        };
        self.put_path(id, heard, now_ms, touched);
    }

    /// A withdrawal from a peer: the path it names is gone; a stale one is ignored.
    pub fn withdraw(
        &mut self,
        from_peer: &AgentId,
        withdrawal: Withdrawal,
        now_ms: u64,
    ) -> Result<Output, AdvertError> {
        self.tick(now_ms);
        self.check_sender(from_peer)?;
        withdrawal.check(self.receiver(from_peer))?;
        let id = PathId {
            origin: withdrawal.origin.clone(),
            next_hop: from_peer.clone(),
        };
        let mut touched = Touched::default();
        if self
            .refused
            .get(&id)
            .is_some_and(|advert| withdrawal.seq >= advert.seq)
        {
            self.refused.remove(&id);
        }
        if self.paths.get(&id).is_some_and(|p| withdrawal.seq >= p.seq) {
            self.drop_path(&id, now_ms, &mut touched);
        }
        Ok(self.finish(touched, now_ms))
    }

    /// This agent's exits now reach exactly `routes` (an empty list withdraws them all).
    pub fn originate(
        &mut self,
        routes: Vec<RouteSpec>,
        now_ms: u64,
    ) -> Result<Output, AdvertError> {
        self.tick(now_ms);
        let id = self.own_id();
        let mut touched = Touched::default();
        if routes.is_empty() {
            if self.paths.contains_key(&id) {
                self.drop_path(&id, now_ms, &mut touched);
            }
            return Ok(self.finish(touched, now_ms));
        }
        advert::check_routes(&self.me, routes.iter().map(|r| &r.dest))?;
        let routes = routes.into_iter().map(|r| (r.dest, r.weight)).collect();
        self.put_own(routes, now_ms, &mut touched);
        Ok(self.finish(touched, now_ms))
    }

    /// This agent's exits no longer reach `dests` (say, an upstream probe failed).
    pub fn withdraw_own(&mut self, dests: &[Destination], now_ms: u64) -> Output {
        self.tick(now_ms);
        let id = self.own_id();
        let mut touched = Touched::default();
        let Some(own) = self.paths.get(&id) else {
            return Output::default();
        };
        if !dests.iter().any(|d| own.routes.contains_key(d)) {
            return Output::default();
        }
        let kept: BTreeMap<Destination, u32> = own
            .routes
            .iter()
            .filter(|(dest, _)| !dests.contains(dest))
            .map(|(dest, weight)| (dest.clone(), *weight))
            .collect();
        if kept.is_empty() {
            self.drop_path(&id, now_ms, &mut touched);
        } else {
            self.put_own(kept, now_ms, &mut touched);
        }
        self.finish(touched, now_ms)
    }

    /// Re-advertises this agent's own routes with a new sequence number, so that the peers'
    /// TTL backstop does not drop them; call it well within `route_ttl_ms`.
    pub fn refresh(&mut self, now_ms: u64) -> Output {
        self.tick(now_ms);
        let mut touched = Touched::default();
        if let Some(own) = self.paths.get(&self.own_id()) {
            let routes = own.routes.clone();
            self.put_own(routes, now_ms, &mut touched);
        }
        self.finish(touched, now_ms)
    }

    /// Stores this agent's own `routes` under a new sequence number, signed.
    fn put_own(&mut self, routes: BTreeMap<Destination, u32>, now_ms: u64, touched: &mut Touched) {
        let seq = self.next_own_seq();
        let ttl_ms = self.config.route_ttl_ms;
        let issued_ms = self.proofs.unix_now_ms();
        let statement = advert::statement(&self.me, seq, &route_specs(&routes), ttl_ms, issued_ms);
        let proof = self.proofs.prove(&statement);
        let heard = Heard {
            seq,
            path: vec![self.me.clone()],
            routes,
            ttl_ms,
            expires_ms: None,
            issued_ms,
            proof,
        };
        self.put_path(self.own_id(), heard, now_ms, touched);
    }

    /// An open through `next_hop` was not acknowledged: its paths rank after every other
    /// until it is acknowledged or `hold_down_ms` passes, then count as recovered.
    pub fn suspect(&mut self, next_hop: &AgentId, now_ms: u64) -> Output {
        self.tick(now_ms);
        let ids = self.ids_through(next_hop);
        if next_hop == &self.me || ids.is_empty() {
            return Output::default();
        }
        self.suspects.insert(
            next_hop.clone(),
            now_ms.saturating_add(self.config.hold_down_ms),
        );
        let mut touched = Touched::default();
        for id in ids {
            self.touch_dests_of(&id, &mut touched);
        }
        self.finish(touched, now_ms)
    }

    /// An open through `next_hop` was acknowledged: a suspicion on it ends now.
    pub fn acknowledged(&mut self, next_hop: &AgentId, now_ms: u64) -> Output {
        self.tick(now_ms);
        let mut touched = Touched::default();
        if self.suspects.remove(next_hop).is_some() {
            self.recover_through(next_hop, now_ms, &mut touched);
        }
        self.finish(touched, now_ms)
    }

    /// Time passes: paths past their TTL go (the backstop), suspicions lapse, hold-downs end.
    pub fn expire(&mut self, now_ms: u64) -> Output {
        self.tick(now_ms);
        let mut touched = Touched::default();
        let expired: Vec<PathId> = self
            .paths
            .iter()
            .filter(|(_, p)| p.expires_ms.is_some_and(|at| at <= now_ms))
            .map(|(id, _)| id.clone())
            .collect();
        for id in expired {
            self.drop_path(&id, now_ms, &mut touched);
        }
        let lapsed: Vec<(AgentId, u64)> = self
            .suspects
            .iter()
            .filter(|(_, until)| **until <= now_ms)
            .map(|(hop, until)| (hop.clone(), *until))
            .collect();
        for (hop, until) in lapsed {
            self.suspects.remove(&hop);
            self.recover_through(&hop, until, &mut touched);
        }
        let memory = self.config.route_ttl_ms.saturating_mul(LOST_MEMORY_TTLS);
        self.lost
            .retain(|_, at| now_ms.saturating_sub(*at) <= memory);
        let heard_of: BTreeSet<&AgentId> = self.paths.keys().map(|id| &id.origin).collect();
        self.origins.retain(|origin, newest| {
            heard_of.contains(origin) || now_ms.saturating_sub(newest.expires_ms()) <= memory
        });
        touched.dests.extend(self.dests.keys().cloned());
        self.finish(touched, now_ms)
    }

    /// When [`RouteTable::expire`] must next be called: the first TTL, lapse of a suspicion,
    /// or end of a hold-down that would change a choice.
    pub fn next_deadline(&self) -> Option<u64> {
        let expiries = self.paths.values().filter_map(|p| p.expires_ms);
        let lapses = self.suspects.values().copied();
        let holds = self.dests.iter().filter_map(|(dest, state)| {
            select::next_change(
                state.selected.as_ref(),
                &self.candidates(dest),
                self.clock_ms,
            )
        });
        expiries.chain(lapses).chain(holds).min()
    }

    /// Lets the servers change who may announce what: a stored path with a route now refused
    /// goes at once, whole (as it would have been refused on arrival), and the last refused
    /// advertisement over a path comes in once it is allowed (unless its origin's newest
    /// advertisement expired meanwhile).
    pub fn set_policy(&mut self, policy: Arc<dyn AnnouncePolicy>, now_ms: u64) -> Output {
        self.tick(now_ms);
        self.policy = policy;
        let mut touched = Touched::default();
        let refused: Vec<PathId> = self
            .paths
            .iter()
            .filter(|(id, stored)| {
                id.origin != self.me
                    && stored
                        .routes
                        .keys()
                        .any(|dest| !self.policy.may_announce(&id.origin, dest))
            })
            .map(|(id, _)| id.clone())
            .collect();
        for id in refused {
            // Kept aside, so that a policy that widens again brings the path back.
            if let Some(advert) = self.paths.get(&id).map(|stored| advert_of(&id, stored)) {
                self.refused.insert(id.clone(), advert);
            }
            self.drop_path(&id, now_ms, &mut touched);
        }
        let allowed: Vec<PathId> = self
            .refused
            .iter()
            .filter(|(_, advert)| self.check_policy(advert).is_ok())
            .map(|(id, _)| id.clone())
            .collect();
        for id in allowed {
            if let Some(advert) = self.refused.remove(&id) {
                self.admit(id, advert, now_ms, &mut touched);
            }
        }
        self.finish(touched, now_ms)
    }

    // ----- lookups -----

    /// The chosen path for an address: the longest matching prefix, then its chosen path.
    pub fn lookup_ip(&self, addr: IpAddr) -> Option<SelectedRoute> {
        let prefix = self.prefixes.get_lpm(&IpNet::from(addr))?;
        self.selected_route(&Destination::Prefix(prefix))
    }

    /// The chosen path for a name: an exact pattern first, then wildcards from the longest
    /// suffix to the shortest.
    pub fn lookup_domain(&self, name: &str) -> Option<SelectedRoute> {
        self.match_domain(name)
            .and_then(|dest| self.selected_route(&dest))
    }

    /// The destination a name matches, as [`RouteTable::lookup_domain`] finds it.
    pub fn match_domain(&self, name: &str) -> Option<Destination> {
        let name = name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase();
        let exact = Destination::Domain(DomainPattern::Exact(name.clone()));
        if self.dests.contains_key(&exact) {
            return Some(exact);
        }
        let mut rest = name.as_str();
        while let Some((_, suffix)) = rest.split_once('.') {
            let wildcard = Destination::Domain(DomainPattern::Wildcard(suffix.to_owned()));
            if self.dests.contains_key(&wildcard) {
                return Some(wildcard);
            }
            rest = suffix;
        }
        None
    }

    /// The destination an address matches (its longest matching prefix).
    pub fn match_ip(&self, addr: IpAddr) -> Option<Destination> {
        self.prefixes
            .get_lpm(&IpNet::from(addr))
            .map(Destination::Prefix)
    }

    /// Every stored path for `dest`, the chosen one first, then the others best first: the
    /// order in which an ingress tries them when an open fails.
    pub fn paths_for(&self, dest: &Destination, now_ms: u64) -> Vec<PathView> {
        let Some(state) = self.dests.get(dest) else {
            return Vec::new();
        };
        let mut candidates = self.candidates(dest);
        candidates.sort_by_key(|c| Some(&c.id) != state.selected.as_ref());
        candidates
            .iter()
            .filter_map(|c| {
                let chosen = Some(&c.id) == state.selected.as_ref();
                let state = if chosen {
                    PathState::Selected
                } else {
                    PathState::Backup
                };
                self.view_of(dest, &c.id, state, now_ms)
            })
            .collect()
    }

    /// Every stored path to every destination, for `/healthz`.
    pub fn views(&self, now_ms: u64) -> Vec<PathView> {
        self.dests
            .keys()
            .flat_map(|dest| self.paths_for(dest, now_ms))
            .collect()
    }

    // ----- checks -----

    fn receiver<'a>(&'a self, sender: &'a AgentId) -> Receiver<'a> {
        Receiver {
            me: &self.me,
            sender,
            max_hops: self.config.max_hops,
        }
    }

    fn check_sender(&self, from_peer: &AgentId) -> Result<(), AdvertError> {
        if self.peers.contains(from_peer) {
            Ok(())
        } else {
            Err(AdvertError::NotAPeer {
                peer: from_peer.clone(),
            })
        }
    }

    fn check_proof(&self, advert: &Advertisement) -> Result<(), AdvertError> {
        self.proofs
            .check(&advert.origin, &advert.statement(), &advert.proof)
            .map_err(|why| AdvertError::BadProof {
                origin: advert.origin.clone(),
                seq: advert.seq,
                why,
            })
    }

    /// Refuses a replay (an older advertisement with routes the origin has since given up, or
    /// any copy past the newest one's TTL) and remembers a newer advertisement.
    fn note_newest(&mut self, advert: &Advertisement, now_ms: u64) -> Result<(), AdvertError> {
        let newest = match self.origins.get(&advert.origin) {
            Some(newest) if advert.seq <= newest.seq => newest,
            _ => {
                let newest = Newest {
                    seq: advert.seq,
                    routes: route_map(&advert.routes),
                    first_heard_ms: now_ms,
                    ttl_ms: advert.ttl_ms,
                };
                self.origins.insert(advert.origin.clone(), newest);
                return Ok(());
            }
        };
        let still_announced = advert
            .routes
            .iter()
            .all(|r| newest.routes.get(&r.dest) == Some(&r.weight));
        if !still_announced {
            return Err(AdvertError::Superseded {
                origin: advert.origin.clone(),
                seq: advert.seq,
                newest: newest.seq,
            });
        }
        if newest.expires_ms() <= now_ms {
            return Err(AdvertError::Expired {
                origin: advert.origin.clone(),
                seq: advert.seq,
            });
        }
        Ok(())
    }

    fn check_policy(&self, advert: &Advertisement) -> Result<(), AdvertError> {
        let refused = advert
            .routes
            .iter()
            .find(|r| !self.policy.may_announce(&advert.origin, &r.dest));
        match refused {
            Some(route) => Err(AdvertError::NotAllowed {
                origin: advert.origin.clone(),
                dest: route.dest.clone(),
            }),
            None => Ok(()),
        }
    }

    /// An older sequence number over the same path as the stored one is a stale copy. Over a
    /// different path it is the peer's new choice (a relay may fall back to a path that has
    /// not yet heard the origin's latest), and it is taken.
    fn is_stale(&self, id: &PathId, advert: &Advertisement) -> bool {
        self.paths
            .get(id)
            .is_some_and(|p| advert.seq < p.seq && advert.path == p.path)
    }

    // ----- changes to the stored paths -----

    fn put_path(&mut self, id: PathId, heard: Heard, now_ms: u64, touched: &mut Touched) {
        let (since_ms, held_until_ms) = match self.paths.get(&id) {
            Some(old) => (old.since_ms, old.held_until_ms),
            None => (now_ms, self.hold_for_return(&id, now_ms)),
        };
        self.touch_dests_of(&id, touched);
        if let Some(old) = self.paths.get(&id) {
            let gone: Vec<Destination> = old
                .routes
                .keys()
                .filter(|d| !heard.routes.contains_key(*d))
                .cloned()
                .collect();
            for dest in gone {
                self.unindex(&dest, &id);
            }
        }
        for dest in heard.routes.keys() {
            self.index(dest, &id);
            touched.dests.insert(dest.clone());
        }
        touched.origins.insert(id.origin.clone());
        let stored = StoredPath {
            seq: heard.seq,
            path: heard.path,
            routes: heard.routes,
            ttl_ms: heard.ttl_ms,
            since_ms,
            expires_ms: heard.expires_ms,
            held_until_ms,
            issued_ms: heard.issued_ms,
            proof: heard.proof,
        };
        self.paths.insert(id, stored);
    }

    /// A path that was lost before and is back is held down; a path never seen is not, so a
    /// fresh table chooses the same whatever order the paths arrive in.
    fn hold_for_return(&self, id: &PathId, now_ms: u64) -> u64 {
        if self.lost.contains_key(id) {
            now_ms.saturating_add(self.config.hold_down_ms)
        } else {
            0
        }
    }

    fn drop_path(&mut self, id: &PathId, now_ms: u64, touched: &mut Touched) {
        let Some(stored) = self.paths.remove(id) else {
            return;
        };
        for dest in stored.routes.keys() {
            self.unindex(dest, id);
            touched.dests.insert(dest.clone());
        }
        touched.origins.insert(id.origin.clone());
        self.lost.insert(id.clone(), now_ms);
    }

    /// The paths through `hop` are no longer suspected as of `at`: they count as recovered.
    fn recover_through(&mut self, hop: &AgentId, at_ms: u64, touched: &mut Touched) {
        let held_until = at_ms.saturating_add(self.config.hold_down_ms);
        for id in self.ids_through(hop) {
            if let Some(stored) = self.paths.get_mut(&id) {
                stored.held_until_ms = stored.held_until_ms.max(held_until);
            }
            self.touch_dests_of(&id, touched);
        }
    }

    fn index(&mut self, dest: &Destination, id: &PathId) {
        if let Destination::Prefix(net) = dest {
            self.prefixes.insert(*net);
        }
        self.dests
            .entry(dest.clone())
            .or_default()
            .paths
            .insert(id.clone());
    }

    /// Takes `id` off `dest`; an emptied destination stays until it is chosen again (then
    /// removed), so that the change to "no route" is reported.
    fn unindex(&mut self, dest: &Destination, id: &PathId) {
        if let Some(state) = self.dests.get_mut(dest) {
            state.paths.remove(id);
        }
    }

    fn touch_dests_of(&self, id: &PathId, touched: &mut Touched) {
        if let Some(stored) = self.paths.get(id) {
            touched.dests.extend(stored.routes.keys().cloned());
        }
    }

    // ----- decisions -----

    fn finish(&mut self, touched: Touched, now_ms: u64) -> Output {
        let mut out = Output::default();
        for dest in &touched.dests {
            if let Some(change) = self.choose_again(dest, now_ms) {
                out.changes.push(change);
            }
        }
        for origin in &touched.origins {
            self.relay_again(origin, &mut out);
        }
        out
    }

    fn choose_again(&mut self, dest: &Destination, now_ms: u64) -> Option<SelectionChange> {
        let candidates = self.candidates(dest);
        let state = self.dests.get_mut(dest)?;
        let previous = state.selected.take();
        let current = select::choose(previous.as_ref(), &candidates, now_ms);
        if candidates.is_empty() {
            self.forget_dest(dest);
        } else {
            state.selected = current.clone();
        }
        (previous != current).then(|| SelectionChange {
            dest: dest.clone(),
            previous,
            current,
        })
    }

    fn forget_dest(&mut self, dest: &Destination) {
        self.dests.remove(dest);
        if let Destination::Prefix(net) = dest {
            self.prefixes.remove(net);
        }
    }

    /// The stored paths for `dest`, best first.
    fn candidates(&self, dest: &Destination) -> Vec<Candidate> {
        let Some(state) = self.dests.get(dest) else {
            return Vec::new();
        };
        let mut candidates: Vec<Candidate> = state
            .paths
            .iter()
            .filter_map(|id| self.candidate(dest, id))
            .collect();
        select::order(&mut candidates);
        candidates
    }

    fn candidate(&self, dest: &Destination, id: &PathId) -> Option<Candidate> {
        let stored = self.paths.get(id)?;
        let weight = *stored.routes.get(dest)?;
        let rank = Rank {
            suspected: self.suspects.contains_key(&id.next_hop),
            weight: std::cmp::Reverse(weight),
            metric: self.metric(id, stored),
            origin: id.origin.clone(),
            next_hop: id.next_hop.clone(),
        };
        Some(Candidate {
            id: id.clone(),
            rank,
            held_until_ms: stored.held_until_ms,
        })
    }

    fn metric(&self, id: &PathId, stored: &StoredPath) -> u32 {
        if id.origin == self.me {
            0
        } else {
            u32::try_from(stored.path.len()).unwrap_or(u32::MAX)
        }
    }

    fn relay_again(&mut self, origin: &AgentId, out: &mut Output) {
        let new = self.advert_to_relay(origin);
        let (messages, relayed) = relay::update(self.relayed.get(origin), new, &self.peers);
        out.outgoing.extend(messages);
        match relayed {
            Some(relayed) => self.relayed.insert(origin.clone(), relayed),
            None => self.relayed.remove(origin),
        };
    }

    /// The advertisement to relay for `origin`: its path with the fewest hops (then the lowest
    /// next hop), our id appended, its sequence number untouched. None when no path is left or
    /// the path would be too long for the next agent.
    fn advert_to_relay(&self, origin: &AgentId) -> Option<Advertisement> {
        let (id, stored) = self
            .paths
            .iter()
            .filter(|(id, _)| &id.origin == origin)
            .min_by_key(|(id, stored)| (self.metric(id, stored), &id.next_hop))?;
        let mut advert = advert_of(id, stored);
        if id.origin != self.me {
            advert.path.push(self.me.clone());
        }
        (advert.path.len() <= self.config.max_hops).then_some(advert)
    }

    // ----- views -----

    fn selected_route(&self, dest: &Destination) -> Option<SelectedRoute> {
        let id = self.dests.get(dest)?.selected.as_ref()?;
        self.route_of(dest, id)
    }

    fn route_of(&self, dest: &Destination, id: &PathId) -> Option<SelectedRoute> {
        let stored = self.paths.get(id)?;
        Some(SelectedRoute {
            dest: dest.clone(),
            origin: id.origin.clone(),
            next_hop: id.next_hop.clone(),
            path: stored.path.clone(),
            metric: self.metric(id, stored),
            weight: *stored.routes.get(dest)?,
            exits_here: id.origin == self.me,
        })
    }

    fn view_of(
        &self,
        dest: &Destination,
        id: &PathId,
        state: PathState,
        now_ms: u64,
    ) -> Option<PathView> {
        let stored = self.paths.get(id)?;
        Some(PathView {
            route: self.route_of(dest, id)?,
            state,
            seq: stored.seq,
            age_ms: now_ms.saturating_sub(stored.since_ms),
            expires_in_ms: stored.expires_ms.map(|at| at.saturating_sub(now_ms)),
            suspected: self.suspects.contains_key(&id.next_hop),
            held_for_ms: (stored.held_until_ms > now_ms).then(|| stored.held_until_ms - now_ms),
        })
    }

    // ----- small helpers -----

    fn own_id(&self) -> PathId {
        PathId {
            origin: self.me.clone(),
            next_hop: self.me.clone(),
        }
    }

    fn next_own_seq(&mut self) -> u64 {
        self.own_seq = self.own_seq.saturating_add(1);
        self.own_seq
    }

    fn ids_through(&self, hop: &AgentId) -> Vec<PathId> {
        self.paths
            .keys()
            .filter(|id| &id.next_hop == hop && id.origin != self.me)
            .cloned()
            .collect()
    }

    fn tick(&mut self, now_ms: u64) {
        self.clock_ms = self.clock_ms.max(now_ms);
    }
}

/// The advertisement a stored path was heard as, proof included.
fn advert_of(id: &PathId, stored: &StoredPath) -> Advertisement {
    Advertisement {
        origin: id.origin.clone(),
        seq: stored.seq,
        path: stored.path.clone(),
        routes: route_specs(&stored.routes),
        ttl_ms: stored.ttl_ms,
        issued_ms: stored.issued_ms,
        proof: stored.proof.clone(),
    }
}

fn route_map(routes: &[RouteSpec]) -> BTreeMap<Destination, u32> {
    routes.iter().map(|r| (r.dest.clone(), r.weight)).collect()
}

fn route_specs(routes: &BTreeMap<Destination, u32>) -> Vec<RouteSpec> {
    routes
        .iter()
        .map(|(dest, weight)| RouteSpec::new(dest.clone(), *weight))
        .collect()
}

#[cfg(test)]
#[path = "table_tests.rs"]
mod tests;
