//! The agent registry: simulated agents heartbeat through every node while clients pick agents
//! of their pool. Now and then an agent falls silent (and later comes back), one is drained and
//! one revoked. A pick must never answer an agent that was revoked or drained before the pick
//! began, nor one silent for longer than `down_after` + 1 s — counted from when the active
//! server could last have heard it: its last heartbeat, or a later takeover by a new active
//! server, which gives every agent `down_after` of grace.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rand::Rng;
use reqwest::Method;
use serde_json::json;
use tandem_keys::{issue_token, SigningAlgorithm, SigningKey};

use crate::cluster::Cluster;
use crate::history::{Answer, ClientContext, Violation};

/// The servers' default `down_after`.
pub const DOWN_AFTER: Duration = Duration::from_secs(3);
/// What the registry may take beyond `down_after` to take a silent agent out of the picks.
const DETECTION_SLACK: Duration = Duration::from_secs(1);
/// A heartbeat that got no answer may still be delivered late (by a paused node when it wakes):
/// it may count as heard until this long after it was sent.
const LATE_DELIVERY: Duration = Duration::from_secs(10);
const POOL: &str = "faults";
const AGENTS: usize = 6;
const HEARTBEAT_EVERY: Duration = Duration::from_millis(300);

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RegistryOp {
    /// No heartbeat of `agent` can reach a server after `quiet_from` (µs since the run began).
    Silenced { agent: String, quiet_from: u64 },
    /// `agent` heartbeats again from `at` on.
    Resumed { agent: String, at: u64 },
    /// A drain of `agent` was acknowledged at `acked`.
    Drained { agent: String, acked: u64 },
    /// A revocation of `agent` was acknowledged at `acked`.
    Revoked { agent: String, acked: u64 },
    /// A new active term was first seen at `seen`.
    Term { term: u64, seen: u64 },
    /// A pick answered an agent (`None`: no healthy agent).
    Picked {
        client: usize,
        agent: Option<String>,
        call: u64,
        ret: u64,
    },
}

/// One simulated agent: its name and the key it signs its assertions with.
#[derive(Clone)]
struct SimulatedAgent {
    name: String,
    signer: Arc<SigningKey>,
}

impl SimulatedAgent {
    /// A fresh assertion, as a real agent signs one.
    fn assertion(&self) -> String {
        let claims = json!({ "sub": self.name })
            .as_object()
            .cloned()
            .unwrap_or_default();
        issue_token(&self.signer, "tandem-agent", claims, now_secs(), 300).unwrap_or_default()
    }
}

/// The simulated agents of one run, enrolled and registered before the faults begin.
#[derive(Clone)]
pub struct Fleet(Arc<Mutex<Vec<SimulatedAgent>>>);

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Enrols and registers the agents through the cluster's client.
pub async fn enrol(cluster: &Cluster) -> Fleet {
    let client = cluster.client();
    let token = crate::agents::join_token(cluster, POOL, json!({})).await;
    let mut agents = Vec::new();
    for i in 0..AGENTS {
        let name = format!("sim-{i}");
        let key = SigningKey::generate(SigningAlgorithm::Es256, "pending".into()).expect("a key");
        let enrolment = json!({ "token": token, "name": name, "public_key": key.public_jwk() });
        let reply = client
            .post_json("/v1/agent/enroll", &enrolment)
            .await
            .expect("enrolment answers");
        assert_eq!(
            reply.status.as_u16(),
            200,
            "{}",
            String::from_utf8_lossy(&reply.body)
        );
        let credential = reply.json().expect("JSON")["credential_id"]
            .as_str()
            .expect("a credential id")
            .to_string();
        let signer =
            SigningKey::from_pkcs8(SigningAlgorithm::Es256, credential, key.pkcs8().to_vec())
                .expect("the key loads");
        agents.push(SimulatedAgent {
            name,
            signer: Arc::new(signer),
        });
    }
    for agent in &agents {
        let http = reqwest::Client::new();
        let body = json!({ "address": format!("{}.test:1", agent.name) });
        let url = format!("{}/v1/agent/register", cluster.api_url(0));
        let reply = http
            .post(&url)
            .bearer_auth(agent.assertion())
            .json(&body)
            .send()
            .await
            .expect("register answers");
        assert!(
            reply.status().is_success(),
            "register {}: {}",
            agent.name,
            reply.status()
        );
    }
    Fleet(Arc::new(Mutex::new(agents)))
}

/// Client 0 runs the agents (heartbeats, silences, one drain, one revocation) and watches the
/// active term; the others pick.
pub async fn client(mut ctx: ClientContext<RegistryOp>, fleet: Fleet) {
    if ctx.index == 0 {
        run_agents(&mut ctx, &fleet).await;
    } else {
        pick_loop(&mut ctx).await;
    }
}

/// Per agent: the last time one of its heartbeats could have been heard.
#[derive(Default, Clone, Copy)]
struct HeardBound {
    latest: u64,
}

async fn run_agents(ctx: &mut ClientContext<RegistryOp>, fleet: &Fleet) {
    let agents = fleet.0.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let mut bounds: BTreeMap<String, HeardBound> = BTreeMap::new();
    // Silent agents and when they speak again.
    let mut silent: BTreeMap<String, u64> = BTreeMap::new();
    let mut revoked: Option<String> = None;
    let mut drained: Option<String> = None;
    let mut term = 0u64;
    let mut tick = 0u64;
    while ctx.running() {
        tick += 1;
        let now = ctx.now();
        for agent in &agents {
            if revoked.as_deref() == Some(&agent.name) {
                continue;
            }
            if let Some(&until) = silent.get(&agent.name) {
                if now < until {
                    continue;
                }
                silent.remove(&agent.name);
                ctx.record(RegistryOp::Resumed {
                    agent: agent.name.clone(),
                    at: ctx.now(),
                });
            }
            let call = ctx.now();
            let answer = ctx
                .request_as(
                    &agent.assertion(),
                    Method::POST,
                    "/v1/agent/report",
                    Some(("application/json", b"{}".to_vec())),
                )
                .await;
            let heard_until = match answer {
                Answer::Reply(_) => ctx.now(),
                Answer::NotSent => call,
                Answer::NoAnswer => call + LATE_DELIVERY.as_micros() as u64,
            };
            let bound = bounds.entry(agent.name.clone()).or_default();
            bound.latest = bound.latest.max(heard_until);
        }
        // Every few seconds one agent falls silent for 5 to 8 s.
        if tick.is_multiple_of(15) && silent.len() < 2 {
            let candidates: Vec<&SimulatedAgent> = agents
                .iter()
                .filter(|a| !silent.contains_key(&a.name) && revoked.as_deref() != Some(&a.name))
                .collect();
            if !candidates.is_empty() {
                let agent = candidates[ctx.rng.random_range(0..candidates.len())];
                let quiet_from = bounds
                    .get(&agent.name)
                    .map_or(0, |b| b.latest)
                    .max(ctx.now());
                silent.insert(
                    agent.name.clone(),
                    ctx.now() + ctx.rng.random_range(5_000_000..8_000_000),
                );
                ctx.record(RegistryOp::Silenced {
                    agent: agent.name.clone(),
                    quiet_from,
                });
            }
        }
        if tick >= 20 && drained.is_none() {
            drained = acknowledged(ctx, &agents[0].name, "drain").await;
        }
        if tick >= 40 && revoked.is_none() {
            revoked = acknowledged(ctx, &agents[1].name, "revoke").await;
        }
        if let Answer::Reply(reply) = ctx.request(Method::GET, "/v1/sys/active", None).await {
            let seen_term = reply.json()["fencing_token"].as_u64().unwrap_or(0);
            if seen_term > term {
                term = seen_term;
                ctx.record(RegistryOp::Term {
                    term,
                    seen: ctx.now(),
                });
            }
        }
        tokio::time::sleep(HEARTBEAT_EVERY).await;
    }
}

/// Drains or revokes `agent` and records it once acknowledged; answers the agent when it was.
async fn acknowledged(
    ctx: &mut ClientContext<RegistryOp>,
    agent: &str,
    action: &str,
) -> Option<String> {
    let path = format!("/v1/agents/{agent}/{action}");
    let answer = ctx.request(Method::POST, &path, None).await;
    let Answer::Reply(reply) = answer else {
        return None;
    };
    if !reply.status.is_success() {
        return None;
    }
    let acked = ctx.now();
    ctx.record(match action {
        "drain" => RegistryOp::Drained {
            agent: agent.to_string(),
            acked,
        },
        _ => RegistryOp::Revoked {
            agent: agent.to_string(),
            acked,
        },
    });
    Some(agent.to_string())
}

async fn pick_loop(ctx: &mut ClientContext<RegistryOp>) {
    let path = format!("/v1/pools/{POOL}/pick");
    while ctx.running() {
        let call = ctx.now();
        let Answer::Reply(reply) = ctx.request(Method::GET, &path, None).await else {
            continue;
        };
        let body = reply.json();
        let agent = if reply.status.is_success() {
            body["name"].as_str().map(str::to_string)
        } else if body["error"]["code"] == "no_healthy_agent" {
            None
        } else {
            // Not served (no active node, redirected): a pick that did not happen.
            continue;
        };
        ctx.record(RegistryOp::Picked {
            client: ctx.index,
            agent,
            call,
            ret: ctx.now(),
        });
    }
}

/// Checks every pick against the drains, revocations and silences acknowledged before it.
pub fn check(history: &[RegistryOp]) -> Result<(), Violation<RegistryOp>> {
    let allowed = (DOWN_AFTER + DETECTION_SLACK).as_micros() as u64;
    // Takeovers seen up to a poll interval after a pick began may have happened before it.
    let poll_slack = (HEARTBEAT_EVERY * 4).as_micros() as u64;
    let terms: Vec<u64> = history
        .iter()
        .filter_map(|op| match op {
            RegistryOp::Term { seen, .. } => Some(*seen),
            _ => None,
        })
        .collect();
    for op in history {
        let RegistryOp::Picked {
            agent: Some(agent),
            call,
            ret,
            ..
        } = op
        else {
            continue;
        };
        let violation = |message: String, cause: &RegistryOp| Violation {
            message,
            smallest: vec![cause.clone(), op.clone()],
        };
        for cause in history {
            match cause {
                RegistryOp::Drained { agent: a, acked }
                | RegistryOp::Revoked { agent: a, acked }
                    if a == agent && acked < call =>
                {
                    return Err(violation(
                        format!("agent {agent} was picked after it was drained or revoked"),
                        cause,
                    ));
                }
                RegistryOp::Silenced {
                    agent: a,
                    quiet_from,
                } if a == agent && quiet_from < call => {
                    let resumed_before_answer = history.iter().any(|r| {
                        matches!(r, RegistryOp::Resumed { agent: b, at } if b == agent && at > quiet_from && at < ret)
                    });
                    if resumed_before_answer {
                        continue;
                    }
                    let takeover = terms
                        .iter()
                        .filter(|seen| **seen > *quiet_from && **seen <= call + poll_slack)
                        .max()
                        .copied();
                    let heard_last = takeover.unwrap_or(*quiet_from).max(*quiet_from);
                    if *call > heard_last + allowed {
                        return Err(violation(
                            format!(
                                "agent {agent} was picked {} ms after it could last have been heard (allowed: {} ms)",
                                (call - heard_last) / 1000,
                                allowed / 1000
                            ),
                            cause,
                        ));
                    }
                }
                _ => {}
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn picked(agent: &str, call: u64) -> RegistryOp {
        RegistryOp::Picked {
            client: 1,
            agent: Some(agent.into()),
            call,
            ret: call + 1_000,
        }
    }

    #[test]
    fn a_silent_agent_may_be_picked_only_within_down_after_and_a_second() {
        let silenced = RegistryOp::Silenced {
            agent: "a".into(),
            quiet_from: 1_000_000,
        };
        assert!(check(&[silenced.clone(), picked("a", 4_900_000)]).is_ok());
        assert!(check(&[silenced.clone(), picked("a", 5_100_000)]).is_err());
        // Back before the pick answered: no violation.
        let resumed = RegistryOp::Resumed {
            agent: "a".into(),
            at: 5_000_000,
        };
        assert!(check(&[silenced.clone(), resumed, picked("a", 5_100_000)]).is_ok());
        // A takeover in between restarts the grace.
        let takeover = RegistryOp::Term {
            term: 3,
            seen: 3_000_000,
        };
        assert!(check(&[silenced, takeover, picked("a", 6_900_000)]).is_ok());
    }

    #[test]
    fn drained_and_revoked_agents_are_never_picked_afterwards() {
        for cause in [
            RegistryOp::Drained {
                agent: "a".into(),
                acked: 10,
            },
            RegistryOp::Revoked {
                agent: "a".into(),
                acked: 10,
            },
        ] {
            assert!(check(&[cause.clone(), picked("a", 5)]).is_ok());
            assert!(check(&[cause.clone(), picked("b", 20)]).is_ok());
            assert!(check(&[cause, picked("a", 20)]).is_err());
        }
    }
}
