//! Which of an agent's chosen mesh paths changed between two of its heartbeats: the servers'
//! events feed reports each one, so an operator sees a failover as it happens.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::wire::MeshSummary;

/// A destination whose chosen path changed: `from` and `to` name the path as `origin via
/// next_hop`; `None` is no path (the destination was gained or lost).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RouteSwitch {
    pub dest: String,
    pub from: Option<String>,
    pub to: Option<String>,
}

/// The chosen path of each destination in `summary`.
fn chosen(summary: &MeshSummary) -> BTreeMap<&str, String> {
    summary
        .routes
        .iter()
        .filter(|route| route.state == "selected")
        .map(|route| {
            let path = format!("{} via {}", route.origin, route.next_hop);
            (route.dest.as_str(), path)
        })
        .collect()
}

/// The destinations whose chosen path differs from `before` to `after`, in destination order.
pub fn route_switches(before: &MeshSummary, after: &MeshSummary) -> Vec<RouteSwitch> {
    let (old, new) = (chosen(before), chosen(after));
    let mut dests: Vec<&str> = old.keys().chain(new.keys()).copied().collect();
    dests.sort_unstable();
    dests.dedup();
    dests
        .into_iter()
        .filter(|dest| old.get(dest) != new.get(dest))
        .map(|dest| RouteSwitch {
            dest: dest.to_string(),
            from: old.get(dest).cloned(),
            to: new.get(dest).cloned(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::MeshRoute;

    fn route(dest: &str, origin: &str, next_hop: &str, state: &str) -> MeshRoute {
        MeshRoute {
            dest: dest.into(),
            origin: origin.into(),
            next_hop: next_hop.into(),
            path: vec![origin.into(), next_hop.into()],
            metric: 2,
            weight: 100,
            state: state.into(),
        }
    }

    fn summary(routes: Vec<MeshRoute>) -> MeshSummary {
        MeshSummary {
            routes,
            ..MeshSummary::default()
        }
    }

    #[test]
    fn a_failover_to_the_backup_is_one_switch() {
        let before = summary(vec![
            route("10.0.0.0/8", "exit-a", "t-1", "selected"),
            route("10.0.0.0/8", "exit-a", "t-2", "backup"),
        ]);
        let after = summary(vec![route("10.0.0.0/8", "exit-a", "t-2", "selected")]);
        assert_eq!(
            route_switches(&before, &after),
            vec![RouteSwitch {
                dest: "10.0.0.0/8".into(),
                from: Some("exit-a via t-1".into()),
                to: Some("exit-a via t-2".into()),
            }]
        );
    }

    #[test]
    fn gained_and_lost_destinations_are_switches_from_and_to_nothing() {
        let before = summary(vec![route("a.example", "exit-a", "exit-a", "selected")]);
        let after = summary(vec![route("b.example", "exit-b", "exit-b", "selected")]);
        let switches = route_switches(&before, &after);
        assert_eq!(switches.len(), 2);
        assert_eq!(
            (switches[0].dest.as_str(), &switches[0].to),
            ("a.example", &None)
        );
        assert_eq!(
            (switches[1].dest.as_str(), &switches[1].from),
            ("b.example", &None)
        );
    }

    #[test]
    fn backups_coming_and_going_change_nothing() {
        let before = summary(vec![route("10.0.0.0/8", "exit-a", "t-1", "selected")]);
        let after = summary(vec![
            route("10.0.0.0/8", "exit-a", "t-1", "selected"),
            route("10.0.0.0/8", "exit-b", "t-2", "backup"),
        ]);
        assert!(route_switches(&before, &after).is_empty());
        assert!(route_switches(&after, &before).is_empty());
    }
}
