//! Who is down, and who has been down long enough to be removed: decided by the active server
//! from the heartbeats it holds in memory, with grace after it took the role, so that a server
//! failover never marks a healthy agent down.

/// What the active server knows of one registered agent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Liveness<'a> {
    pub name: &'a str,
    /// When this server last heard from the agent (Unix ms), if it has since it became active.
    pub last_heartbeat_ms: Option<i64>,
    /// When the agent was marked down, if it is (from the replicated state).
    pub down_since_ms: Option<i64>,
}

/// The timing the registry runs with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LivenessPolicy {
    /// An agent silent for longer than this is down.
    pub down_after_ms: i64,
    /// An agent down for longer than this is removed from the registry.
    pub deregister_after_ms: i64,
}

/// A change the active server must propose.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LivenessChange {
    MarkDown(String),
    Remove(String),
}

/// The changes due at `now_ms` on a server that became active at `active_since_ms`. An agent
/// counts as heard at the later of its last heartbeat and the moment this server took the role:
/// heartbeats sent to the previous active server are not known here, so every agent gets a full
/// `down_after` from the takeover before it can be marked down.
pub fn due_changes<'a>(
    agents: impl IntoIterator<Item = Liveness<'a>>,
    policy: LivenessPolicy,
    active_since_ms: i64,
    now_ms: i64,
) -> Vec<LivenessChange> {
    let mut changes = Vec::new();
    for agent in agents {
        let heard_ms = agent
            .last_heartbeat_ms
            .map_or(active_since_ms, |last| last.max(active_since_ms));
        match agent.down_since_ms {
            None if now_ms - heard_ms > policy.down_after_ms => {
                changes.push(LivenessChange::MarkDown(agent.name.to_string()));
            }
            Some(since) if now_ms - since > policy.deregister_after_ms => {
                changes.push(LivenessChange::Remove(agent.name.to_string()));
            }
            _ => {}
        }
    }
    changes
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: LivenessPolicy = LivenessPolicy {
        down_after_ms: 3_000,
        deregister_after_ms: 60_000,
    };

    fn alive(name: &str, last: Option<i64>) -> Liveness<'_> {
        Liveness {
            name,
            last_heartbeat_ms: last,
            down_since_ms: None,
        }
    }

    #[test]
    fn an_agent_silent_past_down_after_is_marked_down_and_no_sooner() {
        let agents = [alive("a", Some(10_000)), alive("b", Some(12_500))];
        assert_eq!(due_changes(agents.clone(), POLICY, 0, 13_000), vec![]);
        assert_eq!(
            due_changes(agents, POLICY, 0, 13_001),
            vec![LivenessChange::MarkDown("a".into())]
        );
    }

    #[test]
    fn a_new_active_server_gives_every_agent_down_after_of_grace() {
        // Heard by the previous active server only: no heartbeat known here.
        let agents = [alive("a", None), alive("b", Some(1_000))];
        assert_eq!(due_changes(agents.clone(), POLICY, 50_000, 52_999), vec![]);
        assert_eq!(due_changes(agents.clone(), POLICY, 50_000, 53_000), vec![]);
        assert_eq!(due_changes(agents, POLICY, 50_000, 53_001).len(), 2);
    }

    #[test]
    fn an_agent_down_past_deregister_after_is_removed() {
        let down = Liveness {
            name: "gone",
            last_heartbeat_ms: None,
            down_since_ms: Some(1_000),
        };
        assert_eq!(due_changes([down.clone()], POLICY, 0, 61_000), vec![]);
        assert_eq!(
            due_changes([down], POLICY, 0, 61_001),
            vec![LivenessChange::Remove("gone".into())]
        );
    }
}
