//! The route table's rules, one test per behaviour.

use std::net::IpAddr;
use std::sync::Arc;

use super::*;
use crate::policy::{AllowAll, AllowList};
use crate::proof::NamedProofs;

const HOLD_MS: u64 = 1_000;
const TTL_MS: u64 = 30_000;
const FIRST_SEQ: u64 = 100;

fn id(name: &str) -> AgentId {
    AgentId::new(name).expect("valid test name")
}

fn dest(s: &str) -> Destination {
    s.parse().expect("valid test destination")
}

fn ip(s: &str) -> IpAddr {
    s.parse().expect("valid test address")
}

fn config() -> TableConfig {
    TableConfig {
        max_hops: 4,
        hold_down_ms: HOLD_MS,
        route_ttl_ms: TTL_MS,
    }
}

fn table_with_policy(me: &str, policy: impl AnnouncePolicy + 'static) -> RouteTable {
    let proofs = NamedProofs { me: id(me) };
    RouteTable::new(
        id(me),
        config(),
        Arc::new(policy),
        Arc::new(proofs),
        FIRST_SEQ,
    )
}

/// A table for `me`, connected to `peers` at time 0.
fn table(me: &str, peers: &[&str]) -> RouteTable {
    let mut table = table_with_policy(me, AllowAll);
    for peer in peers {
        let _ = table.peer_up(id(peer), 0);
    }
    table
}

/// An advertisement along `path` (origin first, sender last), signed by its origin.
fn advert(path: &[&str], seq: u64, routes: &[(&str, u32)]) -> Advertisement {
    let mut advert = Advertisement {
        origin: id(path[0]),
        seq,
        path: path.iter().map(|n| id(n)).collect(),
        routes: routes
            .iter()
            .map(|(d, w)| RouteSpec::new(dest(d), *w))
            .collect(),
        ttl_ms: TTL_MS,
        issued_ms: NamedProofs::UNIX_NOW_MS,
        proof: OriginProof::default(),
    };
    advert.proof.signature = NamedProofs::signature(&advert.origin, &advert.statement());
    advert
}

/// A withdrawal of the path `path` from its last hop.
fn withdrawal(path: &[&str], seq: u64) -> Withdrawal {
    Withdrawal {
        origin: id(path[0]),
        seq,
        path: path.iter().map(|n| id(n)).collect(),
    }
}

/// Feeds an advertisement along `path` from its last hop.
fn hear(
    table: &mut RouteTable,
    path: &[&str],
    seq: u64,
    routes: &[(&str, u32)],
    now: u64,
) -> Output {
    let from = id(path[path.len() - 1]);
    table
        .advertise(&from, advert(path, seq, routes), now)
        .expect("advert accepted")
}

/// The (origin, next hop) chosen for an address.
fn via(table: &RouteTable, addr: &str) -> Option<(String, String)> {
    table
        .lookup_ip(ip(addr))
        .map(|r| (r.origin.to_string(), r.next_hop.to_string()))
}

fn pair(origin: &str, hop: &str) -> Option<(String, String)> {
    Some((origin.to_owned(), hop.to_owned()))
}

fn adverts_to<'a>(out: &'a Output, peer: &str) -> Vec<&'a Advertisement> {
    out.to(&id(peer))
        .into_iter()
        .filter_map(|m| match m {
            Message::Advertise(a) => Some(a),
            Message::Withdraw(_) => None,
        })
        .collect()
}

fn withdrawals_to<'a>(out: &'a Output, peer: &str) -> Vec<&'a Withdrawal> {
    out.to(&id(peer))
        .into_iter()
        .filter_map(|m| match m {
            Message::Withdraw(w) => Some(w),
            Message::Advertise(_) => None,
        })
        .collect()
}

fn names(path: &[AgentId]) -> Vec<&str> {
    path.iter().map(AgentId::as_str).collect()
}

fn permutations(n: usize) -> Vec<Vec<usize>> {
    if n == 0 {
        return vec![Vec::new()];
    }
    let mut all = Vec::new();
    for smaller in permutations(n - 1) {
        for at in 0..=smaller.len() {
            let mut p = smaller.clone();
            p.insert(at, n - 1);
            all.push(p);
        }
    }
    all
}

const NET: (&str, u32) = ("10.0.0.0/8", 100);
const IN_NET: &str = "10.1.2.3";

// ----- relaying -----

#[test]
fn a_relayed_advert_keeps_the_origins_sequence_number() {
    let mut transit = table("t-1", &["exit-a", "ingress"]);
    let out = hear(&mut transit, &["exit-a"], 42, &[NET], 10);
    let relayed = adverts_to(&out, "ingress");
    assert_eq!(relayed.len(), 1);
    assert_eq!(relayed[0].seq, 42);
    assert_eq!(relayed[0].origin, id("exit-a"));
    assert_eq!(names(&relayed[0].path), ["exit-a", "t-1"]);
    assert!(out.to(&id("exit-a")).is_empty(), "never back to the sender");
}

#[test]
fn a_relayed_advert_is_never_sent_to_a_peer_already_on_its_path() {
    let mut transit = table("t-1", &["exit-a", "t-2", "ingress"]);
    let out = hear(&mut transit, &["exit-a", "t-2"], 7, &[NET], 10);
    assert!(out.to(&id("t-2")).is_empty());
    assert!(out.to(&id("exit-a")).is_empty());
    assert_eq!(
        names(&adverts_to(&out, "ingress")[0].path),
        ["exit-a", "t-2", "t-1"]
    );
}

#[test]
fn a_repeated_advert_is_not_relayed_again_and_cannot_extend_its_ttl() {
    let mut transit = table("t-1", &["exit-a", "t-2", "ingress"]);
    let _ = hear(&mut transit, &["exit-a"], 7, &[NET], 0);
    let again = hear(&mut transit, &["exit-a"], 7, &[NET], 20_000);
    assert!(again.is_empty());
    // The same copy over another path lives no longer either.
    let _ = hear(&mut transit, &["exit-a", "t-2"], 7, &[NET], 25_000);
    let out = transit.expire(TTL_MS);
    assert_eq!(out.changes.len(), 1, "the TTL counts from the first copy");
    assert_eq!(via(&transit, IN_NET), None);
    // Repeated once more after its TTL, it is a replay.
    let replay = transit.advertise(&id("exit-a"), advert(&["exit-a"], 7, &[NET]), TTL_MS + 1);
    assert!(matches!(replay, Err(AdvertError::Expired { seq: 7, .. })));
    assert_eq!(via(&transit, IN_NET), None);
}

#[test]
fn a_new_peer_receives_the_table() {
    let mut transit = table("t-1", &["exit-a"]);
    let _ = hear(&mut transit, &["exit-a"], 7, &[NET], 0);
    let out = transit.peer_up(id("ingress"), 5);
    let sent = adverts_to(&out, "ingress");
    assert_eq!(sent.len(), 1);
    assert_eq!(
        (sent[0].seq, names(&sent[0].path)),
        (7, vec!["exit-a", "t-1"])
    );
}

#[test]
fn a_path_too_long_for_the_next_agent_is_not_relayed() {
    // max_hops is 4: a path of 4 is accepted, but 5 with our id would be refused downstream.
    let mut transit = table("t-4", &["t-3", "ingress"]);
    let out = hear(&mut transit, &["exit-a", "t-1", "t-2", "t-3"], 7, &[NET], 0);
    assert_eq!(via(&transit, IN_NET), pair("exit-a", "t-3"));
    assert!(out.outgoing.is_empty());
}

// ----- withdrawals -----

#[test]
fn a_dead_peer_triggers_withdrawals_to_the_other_peers_at_once() {
    let mut transit = table("t-1", &["exit-a", "ingress-1", "ingress-2"]);
    let _ = hear(
        &mut transit,
        &["exit-a"],
        7,
        &[NET, ("*.internal.example", 100)],
        0,
    );
    let out = transit.peer_down(&id("exit-a"), 50);
    for ingress in ["ingress-1", "ingress-2"] {
        let sent = withdrawals_to(&out, ingress);
        assert_eq!(sent.len(), 1, "{ingress} hears the withdrawal");
        assert_eq!(sent[0].origin, id("exit-a"));
        assert_eq!(
            sent[0].seq, 7,
            "the origin's sequence number, not a new one"
        );
        assert_eq!(names(&sent[0].path), ["exit-a", "t-1"]);
    }
    assert_eq!(out.changes.len(), 2, "both destinations lost their route");
    assert_eq!(via(&transit, IN_NET), None);
}

#[test]
fn a_dead_peer_with_a_backup_path_sends_the_backup_instead() {
    let mut transit = table("t-1", &["t-2", "t-3", "ingress"]);
    let _ = hear(&mut transit, &["exit-a", "t-2"], 7, &[NET], 0);
    let _ = hear(&mut transit, &["exit-a", "t-3"], 7, &[NET], 0);
    let out = transit.peer_down(&id("t-2"), 50);
    let sent = adverts_to(&out, "ingress");
    assert_eq!(names(&sent[0].path), ["exit-a", "t-3", "t-1"]);
    // t-3 now sits on the relayed path: it heard the old one and must drop it (split horizon).
    assert_eq!(withdrawals_to(&out, "t-3").len(), 1);
}

#[test]
fn withdrawals_are_relayed() {
    let mut transit = table("t-1", &["exit-a", "ingress"]);
    let _ = hear(&mut transit, &["exit-a"], 7, &[NET], 0);
    let out = transit
        .withdraw(&id("exit-a"), withdrawal(&["exit-a"], 8), 10)
        .expect("withdrawal accepted");
    let sent = withdrawals_to(&out, "ingress");
    assert_eq!(sent.len(), 1);
    assert_eq!(
        (names(&sent[0].path), sent[0].seq),
        (vec!["exit-a", "t-1"], 7)
    );
    assert_eq!(via(&transit, IN_NET), None);
}

#[test]
fn routes_an_origin_gives_up_leave_with_its_new_signed_advert() {
    let mut transit = table("t-1", &["exit-a", "ingress"]);
    let _ = hear(&mut transit, &["exit-a"], 7, &[NET, ("fd00::/8", 100)], 0);
    let out = hear(&mut transit, &["exit-a"], 9, &[NET], 10);
    assert!(withdrawals_to(&out, "ingress").is_empty());
    let sent = adverts_to(&out, "ingress");
    assert_eq!((sent[0].seq, sent[0].routes.len()), (9, 1));
    assert_eq!(
        sent[0].proof,
        advert(&["exit-a"], 9, &[NET]).proof,
        "the origin's proof, passed on untouched"
    );
    assert_eq!(via(&transit, IN_NET), pair("exit-a", "exit-a"));
    assert_eq!(via(&transit, "fd00::1"), None);
}

#[test]
fn a_stale_withdrawal_is_ignored() {
    let mut ingress = table("ingress", &["t-1"]);
    let _ = hear(&mut ingress, &["exit-a", "t-1"], 7, &[NET], 0);
    let out = ingress
        .withdraw(&id("t-1"), withdrawal(&["exit-a", "t-1"], 6), 10)
        .expect("well formed");
    assert!(out.is_empty());
    assert_eq!(via(&ingress, IN_NET), pair("exit-a", "t-1"));
}

// ----- refusals -----

#[test]
fn an_advert_not_signed_by_its_origin_is_refused() {
    let mut ingress = table("ingress", &["t-1"]);
    // A relay that widens what the origin said.
    let mut widened = advert(&["exit-a", "t-1"], 7, &[NET]);
    widened.routes.push(RouteSpec::new(dest("0.0.0.0/0"), 1000));
    // A relay that speaks in another's name.
    let mut spoofed = advert(&["exit-a", "t-1"], 7, &[NET]);
    spoofed.proof.signature = NamedProofs::signature(&id("t-1"), &spoofed.statement());
    // A relay that raises the weight or the TTL.
    let mut heavier = advert(&["exit-a", "t-1"], 7, &[NET]);
    heavier.routes[0].weight += 1;
    let mut longer = advert(&["exit-a", "t-1"], 7, &[NET]);
    longer.ttl_ms += 1;
    for forged in [widened, spoofed, heavier, longer] {
        let refused = ingress.advertise(&id("t-1"), forged, 0);
        assert!(
            matches!(&refused, Err(AdvertError::BadProof { origin, .. }) if origin == &id("exit-a")),
            "{refused:?}"
        );
    }
    assert_eq!(via(&ingress, IN_NET), None);
    assert!(ingress
        .advertise(&id("t-1"), advert(&["exit-a", "t-1"], 7, &[NET]), 0)
        .is_ok());
}

#[test]
fn an_advert_past_its_issue_time_and_ttl_is_refused_even_by_an_agent_that_never_heard_it() {
    let mut ingress = table("ingress", &["t-1"]);
    let mut kept = advert(&["exit-a", "t-1"], 7, &[NET]);
    kept.issued_ms = NamedProofs::UNIX_NOW_MS - TTL_MS - advert::MAX_CLOCK_SKEW_MS - 1;
    kept.proof.signature = NamedProofs::signature(&kept.origin, &kept.statement());
    assert!(matches!(
        ingress.advertise(&id("t-1"), kept, 0),
        Err(AdvertError::Expired { seq: 7, .. })
    ));
    let mut ahead = advert(&["exit-a", "t-1"], 8, &[NET]);
    ahead.issued_ms = NamedProofs::UNIX_NOW_MS + advert::MAX_CLOCK_SKEW_MS + 1;
    ahead.proof.signature = NamedProofs::signature(&ahead.origin, &ahead.statement());
    assert!(matches!(
        ingress.advertise(&id("t-1"), ahead, 0),
        Err(AdvertError::IssuedInTheFuture { seq: 8, .. })
    ));
    assert_eq!(via(&ingress, IN_NET), None);
}

#[test]
fn an_older_advert_with_routes_the_origin_gave_up_is_a_replay() {
    let mut ingress = table("ingress", &["t-1", "t-2"]);
    let _ = hear(
        &mut ingress,
        &["exit-a", "t-1"],
        7,
        &[NET, ("fd00::/8", 100)],
        0,
    );
    let _ = hear(&mut ingress, &["exit-a", "t-1"], 8, &[NET], 10);
    // t-2 replays the genuine seq 7 it once heard.
    let replay = advert(&["exit-a", "t-2"], 7, &[NET, ("fd00::/8", 100)]);
    assert_eq!(
        ingress.advertise(&id("t-2"), replay, 20),
        Err(AdvertError::Superseded {
            origin: id("exit-a"),
            seq: 7,
            newest: 8
        })
    );
    assert_eq!(via(&ingress, "fd00::1"), None);
    assert_eq!(via(&ingress, IN_NET), pair("exit-a", "t-1"));
}

#[test]
fn an_advert_whose_path_holds_our_id_is_dropped_as_a_loop() {
    let mut ingress = table("ingress", &["t-1"]);
    let looped = advert(&["exit-a", "ingress", "t-1"], 7, &[NET]);
    let refused = ingress.advertise(&id("t-1"), looped, 0);
    assert!(matches!(refused, Err(AdvertError::Loop { agent, .. }) if agent == id("ingress")));
    assert_eq!(via(&ingress, IN_NET), None);
}

#[test]
fn an_advert_over_max_hops_is_dropped() {
    let mut ingress = table("ingress", &["t-4"]);
    let long = advert(&["exit-a", "t-1", "t-2", "t-3", "t-4"], 7, &[NET]);
    let refused = ingress.advertise(&id("t-4"), long, 0);
    assert!(matches!(
        refused,
        Err(AdvertError::TooManyHops {
            hops: 5,
            max: 4,
            ..
        })
    ));
    assert_eq!(via(&ingress, IN_NET), None);
}

#[test]
fn an_origin_may_not_announce_a_prefix_outside_its_allow_list() {
    let policy = AllowList::new().allow(id("exit-a"), dest("10.0.0.0/8"));
    let mut ingress = table_with_policy("ingress", policy);
    let _ = ingress.peer_up(id("t-1"), 0);
    let too_wide = advert(
        &["exit-a", "t-1"],
        7,
        &[("10.1.0.0/16", 1), ("0.0.0.0/0", 1)],
    );
    let refused = ingress.advertise(&id("t-1"), too_wide, 0);
    assert_eq!(
        refused,
        Err(AdvertError::NotAllowed {
            origin: id("exit-a"),
            dest: dest("0.0.0.0/0")
        })
    );
    let stranger = advert(&["exit-b", "t-1"], 7, &[("10.1.0.0/16", 1)]);
    assert!(matches!(
        ingress.advertise(&id("t-1"), stranger, 0),
        Err(AdvertError::NotAllowed { .. })
    ));
    assert!(ingress
        .advertise(
            &id("t-1"),
            advert(&["exit-a", "t-1"], 7, &[("10.1.0.0/16", 1)]),
            0
        )
        .is_ok());
}

#[test]
fn a_narrower_policy_drops_a_stored_path_with_a_refused_route_whole() {
    let mut ingress = table("ingress", &["t-1"]);
    let _ = hear(
        &mut ingress,
        &["exit-a", "t-1"],
        7,
        &[NET, ("fd00::/8", 1)],
        0,
    );
    let policy = AllowList::new().allow(id("exit-a"), dest("fd00::/8"));
    let out = ingress.set_policy(Arc::new(policy), 10);
    assert_eq!(out.changes.len(), 2);
    assert_eq!(via(&ingress, IN_NET), None);
    assert_eq!(
        via(&ingress, "fd00::1"),
        None,
        "as the advertisement would be refused on arrival"
    );
    // Wider again: the path comes back without a new advertisement.
    let _ = ingress.set_policy(Arc::new(AllowAll), 20);
    assert_eq!(via(&ingress, IN_NET), pair("exit-a", "t-1"));
    assert_eq!(via(&ingress, "fd00::1"), pair("exit-a", "t-1"));
}

#[test]
fn a_wider_policy_admits_the_last_refused_advertisement_at_once() {
    let policy = AllowList::new().allow(id("exit-a"), dest("fd00::/8"));
    let mut ingress = table("ingress", &["t-1", "t-2"]);
    let _ = ingress.set_policy(Arc::new(policy), 0);
    let wide = advert(&["exit-a", "t-1"], 7, &[NET, ("fd00::/8", 1)]);
    assert!(ingress.advertise(&id("t-1"), wide, 0).is_err());
    // Refused over t-2 too, then withdrawn there: nothing of it is kept.
    let over_t2 = advert(&["exit-a", "t-2"], 7, &[NET]);
    assert!(ingress.advertise(&id("t-2"), over_t2, 0).is_err());
    let _ = ingress.peer_down(&id("t-2"), 5);
    assert_eq!(via(&ingress, IN_NET), None);

    let out = ingress.set_policy(Arc::new(AllowAll), 10);
    assert_eq!(via(&ingress, IN_NET), pair("exit-a", "t-1"));
    assert_eq!(via(&ingress, "fd00::1"), pair("exit-a", "t-1"));
    assert!(!out.changes.is_empty());

    // A refused advertisement whose TTL ran out is not admitted.
    let narrow = AllowList::new().allow(id("exit-a"), dest("fd00::/8"));
    let mut late = table("ingress", &["t-1"]);
    let _ = late.set_policy(Arc::new(narrow), 0);
    let wide = advert(&["exit-a", "t-1"], 7, &[NET]);
    assert!(late.advertise(&id("t-1"), wide, 0).is_err());
    let _ = late.set_policy(Arc::new(AllowAll), TTL_MS + 1);
    assert_eq!(via(&late, IN_NET), None);
}

#[test]
fn a_message_from_a_peer_that_is_not_connected_is_refused() {
    let mut ingress = table("ingress", &["t-1"]);
    let _ = ingress.peer_down(&id("t-1"), 5);
    let late = advert(&["exit-a", "t-1"], 7, &[NET]);
    assert!(matches!(
        ingress.advertise(&id("t-1"), late, 10),
        Err(AdvertError::NotAPeer { .. })
    ));
}

#[test]
fn an_older_sequence_number_via_the_same_peer_is_ignored() {
    let mut ingress = table("ingress", &["t-1"]);
    let _ = hear(&mut ingress, &["exit-a", "t-1"], 7, &[NET], 0);
    let out = hear(&mut ingress, &["exit-a", "t-1"], 6, &[NET], 10);
    assert!(out.is_empty());
    assert_eq!(ingress.paths_for(&dest(NET.0), 10)[0].seq, 7);
}

#[test]
fn a_relay_falling_back_to_a_path_with_an_older_sequence_number_is_believed() {
    let mut ingress = table("ingress", &["t-1"]);
    let _ = hear(&mut ingress, &["exit-a", "t-2", "t-1"], 7, &[NET], 0);
    let _ = hear(&mut ingress, &["exit-a", "t-3", "t-1"], 6, &[NET], 10);
    let views = ingress.paths_for(&dest(NET.0), 10);
    assert_eq!(names(&views[0].route.path), ["exit-a", "t-3", "t-1"]);
    assert_eq!(views[0].seq, 6);
}

// ----- selection -----

#[test]
fn equal_routes_choose_the_same_path_whatever_the_arrival_order() {
    let paths: [&[&str]; 4] = [
        &["exit-b", "t-2"],
        &["exit-a", "t-2"],
        &["exit-b", "t-1"],
        &["exit-a", "t-1"],
    ];
    let mut orders = Vec::new();
    for order in permutations(paths.len()) {
        let mut ingress = table("ingress", &["t-1", "t-2"]);
        for (step, &i) in order.iter().enumerate() {
            let _ = hear(&mut ingress, paths[i], 7, &[NET], step as u64 * 10);
        }
        assert_eq!(
            via(&ingress, IN_NET),
            pair("exit-a", "t-1"),
            "order {order:?}"
        );
        let ranked: Vec<(String, String)> = ingress
            .paths_for(&dest(NET.0), 100)
            .iter()
            .map(|v| (v.route.origin.to_string(), v.route.next_hop.to_string()))
            .collect();
        orders.push(ranked);
    }
    assert_eq!(orders.len(), 24);
    assert!(
        orders.windows(2).all(|w| w[0] == w[1]),
        "backups ranked alike too"
    );
}

#[test]
fn every_path_is_stored_and_losing_one_is_a_local_switch() {
    let mut ingress = table("ingress", &["t-1", "t-2"]);
    let _ = hear(&mut ingress, &["exit-a", "t-1"], 7, &[NET], 0);
    let _ = hear(&mut ingress, &["exit-a", "t-2"], 7, &[NET], 0);
    let _ = hear(&mut ingress, &["exit-b", "t-2"], 3, &[NET], 0);
    assert_eq!(ingress.paths_for(&dest(NET.0), 0).len(), 3);
    let out = ingress
        .withdraw(&id("t-1"), withdrawal(&["exit-a", "t-1"], 7), 10)
        .expect("accepted");
    assert_eq!(out.changes.len(), 1);
    assert_eq!(via(&ingress, IN_NET), pair("exit-a", "t-2"));
}

#[test]
fn the_longest_prefix_wins_over_weight() {
    let mut ingress = table("ingress", &["exit-a", "exit-b"]);
    let _ = hear(&mut ingress, &["exit-a"], 7, &[("10.0.0.0/8", 1_000)], 0);
    let _ = hear(&mut ingress, &["exit-b"], 7, &[("10.1.0.0/16", 1)], 0);
    let _ = hear(
        &mut ingress,
        &["exit-b"],
        8,
        &[("10.1.0.0/16", 1), ("2001:db8::/32", 1)],
        0,
    );
    assert_eq!(via(&ingress, "10.1.2.3"), pair("exit-b", "exit-b"));
    assert_eq!(via(&ingress, "10.2.0.1"), pair("exit-a", "exit-a"));
    assert_eq!(via(&ingress, "11.0.0.1"), None);
    assert_eq!(via(&ingress, "2001:db8::1"), pair("exit-b", "exit-b"));
    assert_eq!(ingress.match_ip(ip("10.1.0.9")), Some(dest("10.1.0.0/16")));
}

#[test]
fn a_higher_weight_wins_over_fewer_hops() {
    let mut ingress = table("ingress", &["exit-a", "t-1"]);
    let _ = hear(&mut ingress, &["exit-a"], 7, &[("10.0.0.0/8", 50)], 0);
    let _ = hear(
        &mut ingress,
        &["exit-b", "t-1"],
        7,
        &[("10.0.0.0/8", 100)],
        0,
    );
    assert_eq!(via(&ingress, IN_NET), pair("exit-b", "t-1"));
}

#[test]
fn fewer_hops_win_at_equal_weight() {
    let mut ingress = table("ingress", &["t-1", "t-9"]);
    let _ = hear(&mut ingress, &["exit-a", "t-2", "t-1"], 7, &[NET], 0);
    let _ = hear(&mut ingress, &["exit-b", "t-9"], 7, &[NET], 0);
    assert_eq!(via(&ingress, IN_NET), pair("exit-b", "t-9"));
}

#[test]
fn an_exact_domain_beats_a_wildcard_and_a_longer_suffix_beats_a_shorter_one() {
    let mut ingress = table("ingress", &["exit-a", "exit-b", "exit-c"]);
    let _ = hear(
        &mut ingress,
        &["exit-a"],
        7,
        &[("db.internal.example", 1)],
        0,
    );
    let _ = hear(
        &mut ingress,
        &["exit-b"],
        7,
        &[("*.internal.example", 1)],
        0,
    );
    let _ = hear(&mut ingress, &["exit-c"], 7, &[("*.example", 1_000)], 0);
    let origin = |name: &str| ingress.lookup_domain(name).map(|r| r.origin.to_string());
    assert_eq!(origin("db.internal.example").as_deref(), Some("exit-a"));
    assert_eq!(origin("DB.Internal.Example.").as_deref(), Some("exit-a"));
    assert_eq!(origin("web.internal.example").as_deref(), Some("exit-b"));
    assert_eq!(origin("a.b.internal.example").as_deref(), Some("exit-b"));
    assert_eq!(origin("internal.example").as_deref(), Some("exit-c"));
    assert_eq!(origin("www.example").as_deref(), Some("exit-c"));
    assert_eq!(origin("example"), None);
    assert_eq!(origin("other.org"), None);
}

// ----- failover and hold-down -----

#[test]
fn a_dead_peer_switches_at_once_and_failback_waits_out_the_hold_down() {
    let mut ingress = table("ingress", &["t-1", "t-2"]);
    let _ = hear(&mut ingress, &["exit-a", "t-1"], 7, &[NET], 0);
    let _ = hear(&mut ingress, &["exit-a", "t-2"], 7, &[NET], 0);
    assert_eq!(via(&ingress, IN_NET), pair("exit-a", "t-1"));

    let out = ingress.peer_down(&id("t-1"), 1_000);
    assert_eq!(out.changes.len(), 1, "switched in the same call");
    assert_eq!(via(&ingress, IN_NET), pair("exit-a", "t-2"));

    let _ = ingress.peer_up(id("t-1"), 2_000);
    let back = hear(&mut ingress, &["exit-a", "t-1"], 7, &[NET], 2_000);
    assert!(back.changes.is_empty(), "the recovered path waits");
    assert_eq!(ingress.next_deadline(), Some(2_000 + HOLD_MS));
    let views = ingress.paths_for(&dest(NET.0), 2_500);
    assert_eq!(views[0].route.next_hop, id("t-2"));
    assert_eq!(views[1].held_for_ms, Some(HOLD_MS - 500));

    assert!(ingress.expire(2_000 + HOLD_MS - 1).changes.is_empty());
    let failback = ingress.expire(2_000 + HOLD_MS);
    assert_eq!(failback.changes.len(), 1);
    assert_eq!(via(&ingress, IN_NET), pair("exit-a", "t-1"));
}

#[test]
fn a_flapping_link_changes_the_choice_at_most_once_per_hold_down() {
    let mut ingress = table("ingress", &["t-1", "t-2"]);
    let _ = hear(&mut ingress, &["exit-a", "t-1"], 7, &[NET], 0);
    let _ = hear(&mut ingress, &["exit-a", "t-2"], 7, &[NET], 0);
    let mut changed_at = Vec::new();
    let mut up = true;
    let mut now = 0;
    // The link to t-1 goes down and up every 200 ms for 5 s, then stays up.
    const LAST_FLAP: u64 = 5_200;
    while now < 8_000 {
        now += 100;
        let mut out = ingress.expire(now);
        if now % 200 == 0 && now <= LAST_FLAP {
            up = !up;
            out = if up {
                let _ = ingress.peer_up(id("t-1"), now);
                hear(&mut ingress, &["exit-a", "t-1"], 7, &[NET], now)
            } else {
                ingress.peer_down(&id("t-1"), now)
            };
        }
        if !out.changes.is_empty() {
            changed_at.push(now);
        }
    }
    assert_eq!(changed_at, vec![200, LAST_FLAP + HOLD_MS]);
    assert!(changed_at.windows(2).all(|w| w[1] - w[0] >= HOLD_MS));
    assert_eq!(via(&ingress, IN_NET), pair("exit-a", "t-1"));
}

#[test]
fn the_only_path_is_used_at_once_even_while_held_down() {
    let mut ingress = table("ingress", &["t-1"]);
    let _ = hear(&mut ingress, &["exit-a", "t-1"], 7, &[NET], 0);
    let _ = ingress.peer_down(&id("t-1"), 100);
    let _ = ingress.peer_up(id("t-1"), 200);
    let out = hear(&mut ingress, &["exit-a", "t-1"], 7, &[NET], 200);
    assert_eq!(out.changes.len(), 1);
    assert_eq!(via(&ingress, IN_NET), pair("exit-a", "t-1"));
}

#[test]
fn a_suspected_next_hop_is_demoted_until_it_proves_itself() {
    let mut ingress = table("ingress", &["t-1", "t-2"]);
    let _ = hear(&mut ingress, &["exit-a", "t-1"], 7, &[NET], 0);
    let _ = hear(&mut ingress, &["exit-a", "t-2"], 7, &[NET], 0);

    let out = ingress.suspect(&id("t-1"), 100);
    assert_eq!(out.changes.len(), 1, "moved away at once");
    assert!(
        out.outgoing.is_empty(),
        "a local hint, not news for the peers"
    );
    let views = ingress.paths_for(&dest(NET.0), 100);
    assert_eq!(views[0].route.next_hop, id("t-2"));
    assert!(views[1].suspected);

    let _ = ingress.acknowledged(&id("t-1"), 300);
    assert_eq!(
        via(&ingress, IN_NET),
        pair("exit-a", "t-2"),
        "then it waits a hold-down"
    );
    assert!(ingress.expire(300 + HOLD_MS - 1).changes.is_empty());
    let _ = ingress.expire(300 + HOLD_MS);
    assert_eq!(via(&ingress, IN_NET), pair("exit-a", "t-1"));
}

#[test]
fn a_suspicion_lapses_after_the_hold_down_without_an_acknowledgement() {
    let mut ingress = table("ingress", &["t-1", "t-2"]);
    let _ = hear(&mut ingress, &["exit-a", "t-1"], 7, &[NET], 0);
    let _ = hear(&mut ingress, &["exit-a", "t-2"], 7, &[NET], 0);
    let _ = ingress.suspect(&id("t-1"), 100);
    assert_eq!(ingress.next_deadline(), Some(100 + HOLD_MS));
    let _ = ingress.expire(100 + HOLD_MS);
    assert!(!ingress.paths_for(&dest(NET.0), 100 + HOLD_MS)[1].suspected);
    assert_eq!(via(&ingress, IN_NET), pair("exit-a", "t-2"));
    let _ = ingress.expire(100 + 2 * HOLD_MS);
    assert_eq!(via(&ingress, IN_NET), pair("exit-a", "t-1"));
}

// ----- TTL -----

#[test]
fn ttl_expiry_is_a_backstop() {
    let mut transit = table("t-1", &["exit-a", "ingress"]);
    let _ = hear(&mut transit, &["exit-a"], 7, &[NET], 0);
    assert_eq!(transit.next_deadline(), Some(TTL_MS));
    let _ = hear(&mut transit, &["exit-a"], 8, &[NET], 20_000);
    assert!(
        transit.expire(TTL_MS).is_empty(),
        "a fresh copy pushed it back"
    );
    let out = transit.expire(20_000 + TTL_MS);
    assert_eq!(out.changes.len(), 1);
    assert_eq!(withdrawals_to(&out, "ingress").len(), 1);
    assert_eq!(via(&transit, IN_NET), None);
    assert_eq!(transit.next_deadline(), None);
}

// ----- own exits -----

#[test]
fn own_exits_are_advertised_to_every_peer_and_exit_here() {
    let mut exit = table("exit-a", &["t-1", "t-2"]);
    let out = exit
        .originate(vec![RouteSpec::new(dest(NET.0), 100)], 0)
        .expect("valid routes");
    for peer in ["t-1", "t-2"] {
        let sent = adverts_to(&out, peer);
        assert_eq!(
            (sent[0].seq, names(&sent[0].path)),
            (FIRST_SEQ + 1, vec!["exit-a"])
        );
        assert_eq!(sent[0].ttl_ms, TTL_MS);
    }
    let route = exit.lookup_ip(ip(IN_NET)).expect("a route");
    assert!(route.exits_here);
    assert_eq!(route.metric, 0);
    assert_eq!(exit.next_deadline(), None, "own routes never expire");

    let refreshed = exit.refresh(10_000);
    let sent = adverts_to(&refreshed, "t-1");
    assert_eq!(sent[0].seq, FIRST_SEQ + 2);
    assert_eq!(
        sent[0].proof.signature,
        NamedProofs::signature(&id("exit-a"), &sent[0].statement()),
        "signed anew with each sequence number"
    );

    let gone = exit.withdraw_own(&[dest(NET.0)], 20_000);
    assert_eq!(withdrawals_to(&gone, "t-1").len(), 1);
    assert_eq!(withdrawals_to(&gone, "t-2").len(), 1);
    assert_eq!(exit.lookup_ip(ip(IN_NET)), None);
}

#[test]
fn originating_duplicate_routes_is_refused() {
    let mut exit = table("exit-a", &["t-1"]);
    let twice = vec![
        RouteSpec::new(dest(NET.0), 1),
        RouteSpec::new(dest(NET.0), 2),
    ];
    assert!(matches!(
        exit.originate(twice, 0),
        Err(AdvertError::DuplicateRoute { .. })
    ));
}

// ----- views -----

#[test]
fn views_show_selected_and_backup_paths_with_their_age_and_expiry() {
    let mut ingress = table("ingress", &["t-1", "t-2"]);
    let _ = hear(&mut ingress, &["exit-a", "t-2", "t-1"], 7, &[NET], 1_000);
    let _ = hear(&mut ingress, &["exit-a", "t-2"], 7, &[NET], 2_000);
    let views = ingress.views(3_000);
    assert_eq!(views.len(), 2);
    assert_eq!(views[0].state, PathState::Selected);
    assert_eq!(views[0].route.metric, 2);
    assert_eq!(views[0].age_ms, 1_000);
    // Seq 7 was first heard at 1 000: no copy of it outlives that by more than the TTL.
    assert_eq!(views[0].expires_in_ms, Some(TTL_MS - 2_000));
    assert_eq!(views[1].state, PathState::Backup);
    assert_eq!(names(&views[1].route.path), ["exit-a", "t-2", "t-1"]);
    let json = serde_json::to_value(&views[0]).expect("serialises");
    assert_eq!(json["dest"], "10.0.0.0/8");
    assert_eq!(json["state"], "selected");
}
