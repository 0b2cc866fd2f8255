//! An exit's upstream probe (`--exit-probe`): a check of the agent's kinds run against what the
//! exit leads to. While it fails the exit withdraws its routes from the mesh at once, so that
//! ingresses take another exit; when it passes again they are advertised again. What to do
//! with each result is [`upstream_action`]; the rest runs the probe and tells the runtime.

use std::sync::Arc;

use tandem_mesh::runtime::MeshRuntime;
use tandem_registry::CheckStatus;

use crate::checks::{spawn_check, CheckResult};
use crate::settings::CheckSpec;

/// What the exit does with its routes after a probe result.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UpstreamAction {
    Withdraw,
    Advertise,
}

/// A critical probe withdraws advertised routes; a passing one (or a warning: the upstream
/// answers, if slowly) advertises withdrawn ones again; anything else changes nothing.
pub fn upstream_action(withdrawn: bool, probe: CheckStatus) -> Option<UpstreamAction> {
    match (withdrawn, probe) {
        (false, CheckStatus::Critical) => Some(UpstreamAction::Withdraw),
        (true, CheckStatus::Passing | CheckStatus::Warning) => Some(UpstreamAction::Advertise),
        _ => None,
    }
}

/// Runs `probe` and withdraws or advertises the exit's routes as [`upstream_action`] says,
/// until the handle is aborted.
pub fn spawn_probe(probe: CheckSpec, runtime: Arc<MeshRuntime>) -> tokio::task::JoinHandle<()> {
    let name = probe.name();
    tracing::info!(probe = %name, "exit upstream probe starting");
    spawn_check(probe, reqwest::Client::new(), move |result: CheckResult| {
        let withdrawn = runtime.exits_withdrawn().is_some();
        let first_line = result.output.lines().next().unwrap_or_default();
        match upstream_action(withdrawn, result.status) {
            Some(UpstreamAction::Withdraw) => {
                let reason = format!("probe {name} {}: {first_line}", result.status.as_str());
                runtime.withdraw_exits(&reason);
                tracing::warn!(probe = %name, "exit routes withdrawn: {reason}");
            }
            Some(UpstreamAction::Advertise) => {
                runtime.restore_exits();
                tracing::info!(probe = %name, "exit routes advertised again: the probe passes");
            }
            None => {}
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failing_probe_withdraws_and_a_passing_one_advertises_again() {
        use CheckStatus::*;
        assert_eq!(
            upstream_action(false, Critical),
            Some(UpstreamAction::Withdraw)
        );
        assert_eq!(upstream_action(false, Passing), None);
        assert_eq!(upstream_action(false, Warning), None);
        assert_eq!(upstream_action(true, Critical), None);
        assert_eq!(
            upstream_action(true, Passing),
            Some(UpstreamAction::Advertise)
        );
        assert_eq!(
            upstream_action(true, Warning),
            Some(UpstreamAction::Advertise)
        );
    }
}
