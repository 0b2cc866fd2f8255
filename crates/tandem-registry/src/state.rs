//! An agent's state, from what it reported and what the registry decided about it.

use crate::wire::{AgentState, CheckReport, CheckStatus};

/// The worst of an agent's checks; an agent with no checks is passing while it reports.
pub fn health_of(checks: &[CheckReport]) -> CheckStatus {
    checks
        .iter()
        .map(|check| check.status)
        .max()
        .unwrap_or(CheckStatus::Passing)
}

/// The state shown and used for picks: draining wins over everything (a draining agent is never
/// picked, whatever its health), then down, then the agent's own health.
pub fn state_of(health: CheckStatus, down: bool, draining: bool) -> AgentState {
    match (draining, down, health) {
        (true, _, _) => AgentState::Draining,
        (false, true, _) => AgentState::Down,
        (false, false, CheckStatus::Passing) => AgentState::Passing,
        (false, false, CheckStatus::Warning) => AgentState::Warning,
        (false, false, CheckStatus::Critical) => AgentState::Critical,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::CheckKind;

    fn check(status: CheckStatus) -> CheckReport {
        CheckReport {
            name: format!("{status:?}"),
            kind: CheckKind::Exec,
            status,
            output: String::new(),
        }
    }

    #[test]
    fn health_is_the_worst_check_and_passing_without_checks() {
        assert_eq!(health_of(&[]), CheckStatus::Passing);
        let mixed = [
            check(CheckStatus::Passing),
            check(CheckStatus::Critical),
            check(CheckStatus::Warning),
        ];
        assert_eq!(health_of(&mixed), CheckStatus::Critical);
        assert_eq!(health_of(&mixed[..1]), CheckStatus::Passing);
        assert_eq!(
            health_of(&[check(CheckStatus::Warning)]),
            CheckStatus::Warning
        );
    }

    #[test]
    fn draining_beats_down_beats_health() {
        assert_eq!(
            state_of(CheckStatus::Passing, true, true),
            AgentState::Draining
        );
        assert_eq!(
            state_of(CheckStatus::Passing, true, false),
            AgentState::Down
        );
        assert_eq!(
            state_of(CheckStatus::Warning, false, false),
            AgentState::Warning
        );
        assert_eq!(
            state_of(CheckStatus::Critical, false, false),
            AgentState::Critical
        );
    }
}
