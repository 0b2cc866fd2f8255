//! Which agent of a pool a client gets. Decided from the registry alone (states and loads the
//! active server already holds): a pick never probes an agent on the request path.

use xxhash_rust::xxh3::xxh3_64_with_seed;

use crate::wire::AgentState;

/// How to choose among the healthy agents.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Strategy {
    /// Uniformly at random: spreads clients without any shared state.
    #[default]
    Random,
    /// The lowest reported load; agents that reported none come last.
    LeastLoaded,
}

impl std::str::FromStr for Strategy {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        match text {
            "random" => Ok(Strategy::Random),
            "least-loaded" => Ok(Strategy::LeastLoaded),
            other => Err(format!(
                "strategy {other:?} is not one of random, least-loaded"
            )),
        }
    }
}

/// One agent as a pick sees it.
#[derive(Clone, Debug, PartialEq)]
pub struct Candidate<'a> {
    pub name: &'a str,
    pub state: AgentState,
    pub load: Option<f64>,
}

/// What a client asked for.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PickRequest<'a> {
    pub strategy: Strategy,
    /// Agents the client already failed to use.
    pub exclude: &'a [String],
    /// Sticky picks: the same key keeps its agent while that agent is healthy.
    pub key: Option<&'a str>,
}

/// Picks one agent: a passing one, or a warning one only when none passes; never a critical,
/// down or draining one. With a key, rendezvous hashing (the agent with the highest hash of
/// key and name) so that only the keys of an agent that leaves move. `random` is any number
/// from the caller's random source.
pub fn pick<'a>(
    candidates: &[Candidate<'a>],
    request: &PickRequest<'_>,
    random: u64,
) -> Option<&'a str> {
    let usable = |wanted: AgentState| {
        let mut names: Vec<&Candidate<'a>> = candidates
            .iter()
            .filter(|c| c.state == wanted && !request.exclude.iter().any(|x| x == c.name))
            .collect();
        // Sorted, so a pick does not depend on the order the registry listed them in.
        names.sort_by(|a, b| a.name.cmp(b.name));
        names
    };
    let passing = usable(AgentState::Passing);
    let pool = if passing.is_empty() {
        usable(AgentState::Warning)
    } else {
        passing
    };
    if pool.is_empty() {
        return None;
    }
    if let Some(key) = request.key {
        return pool
            .iter()
            .max_by_key(|c| (rendezvous_weight(key, c.name), c.name))
            .map(|c| c.name);
    }
    match request.strategy {
        Strategy::Random => Some(pool[(random % pool.len() as u64) as usize].name),
        Strategy::LeastLoaded => {
            let lowest = pool
                .iter()
                .filter_map(|c| c.load)
                .fold(None, |low: Option<f64>, load| {
                    Some(low.map_or(load, |l| l.min(load)))
                });
            // Ties (and a pool that reported no load at all) are broken at random, so equal
            // agents share the clients instead of the first one taking them all.
            let tied: Vec<&&Candidate<'a>> = pool.iter().filter(|c| c.load == lowest).collect();
            Some(tied[(random % tied.len() as u64) as usize].name)
        }
    }
}

/// The weight of `name` for `key`: a stable hash of both, the same on every server and release.
pub fn rendezvous_weight(key: &str, name: &str) -> u64 {
    let seed = xxh3_64_with_seed(key.as_bytes(), 0);
    xxh3_64_with_seed(name.as_bytes(), seed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn agent(name: &str, state: AgentState, load: Option<f64>) -> Candidate<'_> {
        Candidate { name, state, load }
    }

    fn names(count: usize) -> Vec<String> {
        (0..count).map(|i| format!("gw-{i}")).collect()
    }

    #[test]
    fn only_passing_agents_are_picked_while_any_passes() {
        let pool = [
            agent("down", AgentState::Down, Some(0.0)),
            agent("warn", AgentState::Warning, Some(0.0)),
            agent("ok", AgentState::Passing, Some(9.0)),
            agent("drain", AgentState::Draining, Some(0.0)),
            agent("crit", AgentState::Critical, Some(0.0)),
        ];
        for random in 0..20 {
            assert_eq!(pick(&pool, &PickRequest::default(), random), Some("ok"));
        }
        let request = PickRequest {
            strategy: Strategy::LeastLoaded,
            ..Default::default()
        };
        assert_eq!(pick(&pool, &request, 3), Some("ok"));
    }

    #[test]
    fn warning_agents_are_picked_only_when_none_passes_and_never_worse() {
        let pool = [
            agent("warn", AgentState::Warning, None),
            agent("crit", AgentState::Critical, None),
        ];
        assert_eq!(pick(&pool, &PickRequest::default(), 1), Some("warn"));
        let worse = [
            agent("crit", AgentState::Critical, None),
            agent("down", AgentState::Down, None),
            agent("drain", AgentState::Draining, None),
        ];
        assert_eq!(pick(&worse, &PickRequest::default(), 1), None);
        assert_eq!(pick(&[], &PickRequest::default(), 1), None);
    }

    #[test]
    fn excluded_agents_are_skipped() {
        let pool = [
            agent("a", AgentState::Passing, None),
            agent("b", AgentState::Passing, None),
        ];
        let exclude = vec!["a".to_string()];
        let request = PickRequest {
            exclude: &exclude,
            ..Default::default()
        };
        for random in 0..10 {
            assert_eq!(pick(&pool, &request, random), Some("b"));
        }
        let both = vec!["a".to_string(), "b".to_string()];
        let request = PickRequest {
            exclude: &both,
            ..Default::default()
        };
        assert_eq!(pick(&pool, &request, 0), None);
    }

    #[test]
    fn least_loaded_takes_the_lowest_load_and_unknown_loads_last() {
        let pool = [
            agent("busy", AgentState::Passing, Some(0.9)),
            agent("idle", AgentState::Passing, Some(0.1)),
            agent("unknown", AgentState::Passing, None),
        ];
        let request = PickRequest {
            strategy: Strategy::LeastLoaded,
            ..Default::default()
        };
        for random in 0..10 {
            assert_eq!(pick(&pool, &request, random), Some("idle"));
        }
    }

    #[test]
    fn random_picks_reach_every_healthy_agent() {
        let all = names(4);
        let pool: Vec<Candidate> = all
            .iter()
            .map(|n| agent(n, AgentState::Passing, None))
            .collect();
        let picked: std::collections::BTreeSet<&str> = (0..4)
            .filter_map(|random| pick(&pool, &PickRequest::default(), random))
            .collect();
        assert_eq!(picked.len(), 4);
    }

    #[test]
    fn sticky_keys_move_only_when_their_agent_leaves() {
        let all = names(5);
        let pool = |skip: Option<&str>| -> Vec<Candidate> {
            all.iter()
                .filter(|n| Some(n.as_str()) != skip)
                .map(|n| agent(n, AgentState::Passing, None))
                .collect()
        };
        let keys: Vec<String> = (0..500).map(|i| format!("user-{i}")).collect();
        let assign = |candidates: &[Candidate]| -> Vec<String> {
            keys.iter()
                .map(|k| {
                    let request = PickRequest {
                        key: Some(k),
                        ..Default::default()
                    };
                    // The random source must not matter to a sticky pick.
                    pick(candidates, &request, k.len() as u64)
                        .unwrap()
                        .to_string()
                })
                .collect()
        };
        let before = assign(&pool(None));
        let after = assign(&pool(Some("gw-2")));
        let mut moved = 0;
        for (b, a) in before.iter().zip(&after) {
            if b == "gw-2" {
                assert_ne!(a, "gw-2");
                moved += 1;
            } else {
                assert_eq!(a, b, "a key whose agent stayed must keep it");
            }
        }
        // Every agent gets some keys; the dead one's keys moved, no others.
        assert!(moved > 0);
        for name in &all {
            assert!(before.contains(name), "{name} got no keys");
        }
    }
}
