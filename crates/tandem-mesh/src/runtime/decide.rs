//! The runtime's small decisions, as pure functions: how long an open may wait for its
//! acknowledgement, whether the agent can carry traffic in its roles, which of its exit routes
//! it may advertise, and which dial loops to start and stop when its peers change.

use std::collections::BTreeSet;
use std::time::Duration;

use super::config::MeshRoles;
use crate::advert::{AgentId, Destination, RouteSpec};
use crate::policy::AnnouncePolicy;

/// This agent's exit routes split by what `policy` lets it announce: the ones to advertise,
/// and the refused destinations.
pub fn own_routes(
    me: &AgentId,
    exits: Vec<RouteSpec>,
    policy: &dyn AnnouncePolicy,
) -> (Vec<RouteSpec>, Vec<Destination>) {
    let (kept, refused): (Vec<RouteSpec>, Vec<RouteSpec>) = exits
        .into_iter()
        .partition(|route| policy.may_announce(me, &route.dest));
    (kept, refused.into_iter().map(|route| route.dest).collect())
}

/// Which addresses to start and stop dialing.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DialChanges {
    pub start: Vec<String>,
    pub stop: Vec<String>,
}

/// The dial loops to start (wanted, not running) and stop (running, not wanted).
pub fn dial_changes(running: &BTreeSet<String>, wanted: &BTreeSet<String>) -> DialChanges {
    DialChanges {
        start: wanted.difference(running).cloned().collect(),
        stop: running.difference(wanted).cloned().collect(),
    }
}

/// The shortest wait for an open's acknowledgement (loopback and LAN RTTs are tiny, but the
/// exit still dials the destination).
pub const MIN_OPEN_TIMEOUT: Duration = Duration::from_millis(300);
/// The longest: past this the next path is tried, well before the 3 s dead-peer time.
pub const MAX_OPEN_TIMEOUT: Duration = Duration::from_secs(2);

/// How long an open through a peer with round-trip time `rtt` may wait for OPEN-OK or OPEN-ERR:
/// four RTTs, at least [`MIN_OPEN_TIMEOUT`], at most [`MAX_OPEN_TIMEOUT`].
pub fn open_timeout(rtt: Duration) -> Duration {
    rtt.saturating_mul(4)
        .clamp(MIN_OPEN_TIMEOUT, MAX_OPEN_TIMEOUT)
}

/// What the health of an agent's mesh part is decided on.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MeshFacts {
    pub roles: MeshRoles,
    /// Connected peers.
    pub peers: usize,
    /// Destinations with a chosen path through a peer.
    pub routes: usize,
    /// This agent's own exit routes are in its table (and so relayed to every peer).
    pub own_routes_advertised: bool,
    /// This exit withdrew its routes on purpose: its upstream probe fails.
    pub exits_withdrawn: bool,
}

/// Whether the agent can carry traffic in each of its roles; the first reason it cannot.
/// Ingress: at least one route. Transit: peers on both sides (at least two). Exit: its routes
/// advertised to at least one peer.
pub fn mesh_health(facts: &MeshFacts) -> Result<(), String> {
    if facts.roles.ingress && facts.routes == 0 {
        return Err("ingress without routes: no destination is reachable through the mesh".into());
    }
    if facts.roles.transit && facts.peers < 2 {
        return Err(format!(
            "transit with {} peer(s): it needs peers on both sides (at least 2)",
            facts.peers
        ));
    }
    if facts.roles.exit {
        if facts.exits_withdrawn {
            return Err("exit routes withdrawn: the upstream probe fails".into());
        }
        if !facts.own_routes_advertised {
            return Err("exit routes are not advertised".into());
        }
        if facts.peers == 0 {
            return Err("exit without peers: nobody hears its routes".into());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_routes_outside_the_restriction_are_not_advertised() {
        let me = AgentId::new("exit-a").expect("valid name");
        let lists = std::collections::BTreeMap::from([(
            "exit-a".to_string(),
            vec!["10.20.0.0/16".to_string()],
        )]);
        let (policy, _) = crate::policy::Restrictions::from_lists(&lists);
        let route = |d: &str| RouteSpec::new(d.parse().expect("valid destination"), 100);
        let exits = vec![
            route("10.20.0.0/16"),
            route("10.30.0.0/16"),
            route("10.20.5.0/24"),
        ];
        let (kept, refused) = own_routes(&me, exits.clone(), &policy);
        assert_eq!(kept, vec![exits[0].clone(), exits[2].clone()]);
        assert_eq!(refused, vec![exits[1].dest.clone()]);
        let (kept, refused) = own_routes(&me, exits.clone(), &crate::policy::AllowAll);
        assert_eq!((kept, refused.len()), (exits, 0));
    }

    #[test]
    fn dial_changes_start_the_new_and_stop_the_gone() {
        let set = |items: &[&str]| items.iter().map(|s| s.to_string()).collect::<BTreeSet<_>>();
        let changes = dial_changes(&set(&["a:1", "b:1"]), &set(&["b:1", "c:1"]));
        assert_eq!(changes.start, ["c:1"]);
        assert_eq!(changes.stop, ["a:1"]);
        assert_eq!(
            dial_changes(&set(&["a:1"]), &set(&["a:1"])),
            DialChanges::default()
        );
    }

    #[test]
    fn the_open_timeout_is_four_rtts_within_bounds() {
        assert_eq!(open_timeout(Duration::ZERO), MIN_OPEN_TIMEOUT);
        assert_eq!(open_timeout(Duration::from_millis(50)), MIN_OPEN_TIMEOUT);
        assert_eq!(
            open_timeout(Duration::from_millis(100)),
            Duration::from_millis(400)
        );
        assert_eq!(open_timeout(Duration::from_secs(1)), MAX_OPEN_TIMEOUT);
        assert_eq!(open_timeout(Duration::MAX), MAX_OPEN_TIMEOUT);
    }

    fn facts(ingress: bool, transit: bool, exit: bool) -> MeshFacts {
        MeshFacts {
            roles: MeshRoles {
                ingress,
                transit,
                exit,
            },
            ..MeshFacts::default()
        }
    }

    #[test]
    fn an_ingress_needs_a_route() {
        let mut f = facts(true, false, false);
        f.peers = 3;
        assert!(mesh_health(&f).unwrap_err().contains("without routes"));
        f.routes = 1;
        assert_eq!(mesh_health(&f), Ok(()));
    }

    #[test]
    fn a_transit_needs_peers_on_both_sides() {
        let mut f = facts(false, true, false);
        f.peers = 1;
        f.routes = 4;
        assert!(mesh_health(&f).unwrap_err().contains("1 peer(s)"));
        f.peers = 2;
        assert_eq!(mesh_health(&f), Ok(()));
    }

    #[test]
    fn an_exit_needs_its_routes_advertised_to_a_peer() {
        let mut f = facts(false, false, true);
        f.peers = 1;
        assert!(mesh_health(&f).unwrap_err().contains("not advertised"));
        f.own_routes_advertised = true;
        f.peers = 0;
        assert!(mesh_health(&f).unwrap_err().contains("without peers"));
        f.peers = 1;
        assert_eq!(mesh_health(&f), Ok(()));
        f.exits_withdrawn = true;
        assert!(mesh_health(&f)
            .unwrap_err()
            .contains("upstream probe fails"));
        f.exits_withdrawn = false;
        // Ingress and exit at once: both rules apply.
        f.roles.ingress = true;
        assert!(mesh_health(&f).is_err());
    }
}
