//! Which path wins for one destination, as pure functions of the stored paths and the time.
//!
//! Order: a suspected path after every other; then higher weight; then fewer hops; then the
//! lowest origin id and the lowest next-hop id. The order is total, so every agent given the
//! same paths picks the same one, whatever order they arrived in.
//!
//! Hold-down: the chosen path is left at once when it is gone or suspected, but a recovered
//! path (one seen before, lost, and back) takes over from a working choice only once it has
//! been continuously available for the hold-down. A link that flaps faster than that never
//! takes the traffic back.

use std::cmp::Reverse;

use crate::advert::AgentId;
use crate::path::PathId;

/// A path's place in the order; lower is better.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Rank {
    pub suspected: bool,
    pub weight: Reverse<u32>,
    pub metric: u32,
    pub origin: AgentId,
    pub next_hop: AgentId,
}

/// A stored path for one destination, as the choice sees it.
#[derive(Clone, Debug)]
pub struct Candidate {
    pub id: PathId,
    pub rank: Rank,
    /// Before this time the path is recovering and may not take over from a working choice.
    pub held_until_ms: u64,
}

impl Candidate {
    fn settled(&self, now_ms: u64) -> bool {
        !self.rank.suspected && self.held_until_ms <= now_ms
    }
}

/// Sorts candidates best first.
pub fn order(candidates: &mut [Candidate]) {
    candidates.sort_by(|a, b| a.rank.cmp(&b.rank));
}

/// The path to use for a destination, given the current choice and the candidates best first.
pub fn choose(current: Option<&PathId>, candidates: &[Candidate], now_ms: u64) -> Option<PathId> {
    let best_settled = candidates.iter().find(|c| c.settled(now_ms));
    let working = current
        .and_then(|id| candidates.iter().find(|c| &c.id == id))
        .filter(|c| !c.rank.suspected);
    let chosen = match (working, best_settled) {
        (Some(cur), Some(best)) if best.rank < cur.rank => best,
        (Some(cur), _) => cur,
        (None, Some(best)) => best,
        // Nothing settled: a recovering or suspected path beats no route at all.
        (None, None) => candidates.first()?,
    };
    Some(chosen.id.clone())
}

/// The earliest time after `now_ms` at which `choose` could pick differently without any new
/// input: when a recovering path that ranks better than the choice finishes its hold-down.
pub fn next_change(current: Option<&PathId>, candidates: &[Candidate], now_ms: u64) -> Option<u64> {
    let current_rank = current
        .and_then(|id| candidates.iter().find(|c| &c.id == id))
        .map(|c| &c.rank);
    candidates
        .iter()
        .filter(|c| !c.rank.suspected && c.held_until_ms > now_ms)
        .filter(|c| current_rank.is_none_or(|cur| c.rank < *cur))
        .map(|c| c.held_until_ms)
        .min()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn candidate(origin: &str, hop: &str, weight: u32, metric: u32, held: u64) -> Candidate {
        let origin = AgentId::new(origin).expect("valid");
        let next_hop = AgentId::new(hop).expect("valid");
        Candidate {
            id: PathId {
                origin: origin.clone(),
                next_hop: next_hop.clone(),
            },
            rank: Rank {
                suspected: false,
                weight: Reverse(weight),
                metric,
                origin,
                next_hop,
            },
            held_until_ms: held,
        }
    }

    #[test]
    fn weight_beats_hops_and_ids_break_ties() {
        let mut candidates = vec![
            candidate("exit-b", "t-1", 100, 2, 0),
            candidate("exit-a", "t-2", 100, 2, 0),
            candidate("exit-a", "t-1", 100, 2, 0),
            candidate("exit-c", "t-1", 100, 1, 0),
            candidate("exit-d", "t-9", 200, 5, 0),
        ];
        order(&mut candidates);
        let names: Vec<String> = candidates
            .iter()
            .map(|c| format!("{}/{}", c.id.origin, c.id.next_hop))
            .collect();
        assert_eq!(
            names,
            [
                "exit-d/t-9",
                "exit-c/t-1",
                "exit-a/t-1",
                "exit-a/t-2",
                "exit-b/t-1"
            ]
        );
    }

    #[test]
    fn a_recovering_better_path_waits_but_fills_an_empty_choice() {
        let mut candidates = vec![
            candidate("exit-a", "t-1", 100, 2, 1_000),
            candidate("exit-a", "t-2", 100, 2, 0),
        ];
        order(&mut candidates);
        let current = candidates[1].id.clone();
        assert_eq!(
            choose(Some(&current), &candidates, 500),
            Some(current.clone())
        );
        assert_eq!(next_change(Some(&current), &candidates, 500), Some(1_000));
        assert_eq!(
            choose(Some(&current), &candidates, 1_000),
            Some(candidates[0].id.clone())
        );
        // With nothing chosen, a settled path is preferred to a recovering better one...
        assert_eq!(choose(None, &candidates, 500), Some(current));
        // ...and a recovering path is used when it is the only one.
        assert_eq!(
            choose(None, &candidates[..1], 500),
            Some(candidates[0].id.clone())
        );
    }
}
