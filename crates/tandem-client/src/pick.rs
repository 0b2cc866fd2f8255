//! Getting a working agent of a pool: ask the registry for a healthy one, try it with the
//! caller's own connect function, and on failure ask again without the agents that failed.
//! The registry never probes agents for a pick, so a dead agent costs one failed connect, not a
//! probe timeout per agent on every pick.

use std::collections::BTreeMap;
use std::future::Future;

use serde::Deserialize;

use crate::{segment, Client, ClientError};

/// The error code of a pick that found no healthy agent.
pub const NO_HEALTHY_AGENT: &str = "no_healthy_agent";

/// An agent a pick handed out.
#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct PickedAgent {
    pub name: String,
    pub pool: String,
    /// Where the agent's service is reached, `host:port`.
    pub address: String,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub load: Option<f64>,
}

/// How to pick.
#[derive(Clone, Debug)]
pub struct PickOptions {
    /// `random` (the server's default) or `least-loaded`.
    pub strategy: Option<String>,
    /// Sticky picks: the same key keeps its agent while that agent is up.
    pub key: Option<String>,
    /// How many agents to try before giving up.
    pub max_attempts: usize,
}

impl Default for PickOptions {
    fn default() -> Self {
        PickOptions {
            strategy: None,
            key: None,
            max_attempts: 3,
        }
    }
}

/// Why no agent was used.
#[derive(Debug, thiserror::Error)]
pub enum PickError<E: std::fmt::Display> {
    #[error("no healthy agent: {0}")]
    NoHealthyAgent(String),
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error("every agent tried failed: {}", describe(.0))]
    AllFailed(Vec<(PickedAgent, E)>),
}

fn describe<E: std::fmt::Display>(failures: &[(PickedAgent, E)]) -> String {
    failures
        .iter()
        .map(|(agent, e)| format!("{} ({}): {e}", agent.name, agent.address))
        .collect::<Vec<_>>()
        .join("; ")
}

impl Client {
    /// One healthy agent of `pool`, leaving out `exclude`.
    pub async fn pick(
        &self,
        pool: &str,
        options: &PickOptions,
        exclude: &[String],
    ) -> Result<Option<PickedAgent>, ClientError> {
        let mut query = Vec::new();
        if let Some(strategy) = &options.strategy {
            query.push(format!("strategy={}", segment(strategy)));
        }
        if let Some(key) = &options.key {
            query.push(format!("key={}", segment(key)));
        }
        if !exclude.is_empty() {
            let names: Vec<String> = exclude.iter().map(|n| segment(n)).collect();
            query.push(format!("exclude={}", names.join(",")));
        }
        let mut path = format!("/v1/pools/{}/pick", segment(pool));
        if !query.is_empty() {
            path = format!("{path}?{}", query.join("&"));
        }
        let reply = self.get(&path).await?;
        if reply.error_code().as_deref() == Some(NO_HEALTHY_AGENT) {
            return Ok(None);
        }
        let reply = reply.error_for_status()?;
        serde_json::from_slice(&reply.body)
            .map(Some)
            .map_err(|e| ClientError::Api {
                status: reply.status,
                code: "bad_reply".into(),
                message: format!("the pick's answer is not an agent: {e}"),
            })
    }

    /// Picks an agent of `pool` and hands it to `connect`; when `connect` fails, picks again
    /// without the agents that failed, up to `options.max_attempts` agents.
    pub async fn connect_via_pool<T, E, F, Fut>(
        &self,
        pool: &str,
        options: &PickOptions,
        mut connect: F,
    ) -> Result<T, PickError<E>>
    where
        E: std::fmt::Display,
        F: FnMut(PickedAgent) -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let mut failures: Vec<(PickedAgent, E)> = Vec::new();
        while failures.len() < options.max_attempts.max(1) {
            let exclude: Vec<String> = failures.iter().map(|(a, _)| a.name.clone()).collect();
            let Some(agent) = self.pick(pool, options, &exclude).await? else {
                if failures.is_empty() {
                    return Err(PickError::NoHealthyAgent(format!(
                        "pool {pool:?} has no passing or warning agent"
                    )));
                }
                break;
            };
            match connect(agent.clone()).await {
                Ok(connected) => return Ok(connected),
                Err(e) => failures.push((agent, e)),
            }
        }
        Err(PickError::AllFailed(failures))
    }
}
