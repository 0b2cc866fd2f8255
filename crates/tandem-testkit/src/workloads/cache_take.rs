//! Cache `take`: clients put values under keys of their own with a long TTL and take recently
//! put keys through any node, several clients racing for the same key. A value is taken at most
//! once, only after it was put, and an acknowledged put stays takeable until it is taken: a
//! take that finds nothing needs another take of that key before it.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use rand::Rng;
use reqwest::{Method, StatusCode};

use crate::cluster::Cluster;
use crate::history::{Answer, ClientContext, Violation, WriteOutcome, OPERATION_TIMEOUT};

pub const NAMESPACE: &str = "takes";
/// Longer than any run, so no value expires while it is checked.
const TTL: &str = "2h";
/// Takes pick among this many of the most recently put keys, so that clients race for them.
const RECENT: usize = 8;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TakeOutcome {
    Taken(String),
    Absent,
    Unknown,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CacheOp {
    Put {
        client: usize,
        key: String,
        value: String,
        /// False when the outcome is unknown.
        acknowledged: bool,
        call: u64,
        ret: u64,
    },
    Take {
        client: usize,
        key: String,
        outcome: TakeOutcome,
        call: u64,
        ret: u64,
    },
}

/// Keys whose put has been answered (or timed out), shared by the clients of one run.
#[derive(Clone, Default)]
pub struct PutKeys(Arc<Mutex<Vec<String>>>);

impl PutKeys {
    fn add(&self, key: String) {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).push(key);
    }

    fn recent(&self, pick: usize) -> Option<String> {
        let keys = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let recent = &keys[keys.len().saturating_sub(RECENT)..];
        (!recent.is_empty()).then(|| recent[pick % recent.len()].clone())
    }
}

fn take_outcome(answer: Answer) -> Option<TakeOutcome> {
    match answer {
        Answer::Reply(reply) if reply.status.is_success() => Some(TakeOutcome::Taken(reply.text())),
        Answer::Reply(reply) if reply.status == StatusCode::NOT_FOUND => Some(TakeOutcome::Absent),
        answer => match answer.write_outcome() {
            WriteOutcome::NotApplied(_) => None,
            _ => Some(TakeOutcome::Unknown),
        },
    }
}

pub async fn client(mut ctx: ClientContext<CacheOp>, keys: PutKeys) {
    let mut n = 0;
    while ctx.running() {
        let call = ctx.now();
        let pick = ctx.rng.random_range(0..RECENT);
        match keys.recent(pick) {
            Some(key) if ctx.rng.random_bool(0.6) => {
                let answer = ctx
                    .request(
                        Method::POST,
                        &format!("/v1/cache/{NAMESPACE}/{key}/take"),
                        None,
                    )
                    .await;
                let Some(outcome) = take_outcome(answer) else {
                    continue;
                };
                ctx.record(CacheOp::Take {
                    client: ctx.index,
                    key,
                    outcome,
                    call,
                    ret: ctx.now(),
                });
            }
            _ => {
                n += 1;
                let key = format!("c{}-{n}", ctx.index);
                let value = format!("value-of-{key}");
                let answer = ctx
                    .request(
                        Method::PUT,
                        &format!("/v1/cache/{NAMESPACE}/{key}?ttl={TTL}"),
                        Some(("application/octet-stream", value.clone().into_bytes())),
                    )
                    .await;
                let acknowledged = match answer.write_outcome() {
                    WriteOutcome::Applied(_) => true,
                    WriteOutcome::Unknown => false,
                    WriteOutcome::NotApplied(_) => continue,
                };
                ctx.record(CacheOp::Put {
                    client: ctx.index,
                    key: key.clone(),
                    value,
                    acknowledged,
                    call,
                    ret: ctx.now(),
                });
                keys.add(key);
            }
        }
    }
}

/// After the faults: takes every acknowledged put's key that no take got the value of once more,
/// through the active node, and adds those takes to the history, so that a value lost under the
/// faults shows as an absent take with no take before it.
pub async fn take_the_rest(cluster: &Cluster, history: &mut Vec<CacheOp>) {
    let taken: std::collections::BTreeSet<&String> = history
        .iter()
        .filter_map(|op| match op {
            CacheOp::Take {
                key,
                outcome: TakeOutcome::Taken(_),
                ..
            } => Some(key),
            _ => None,
        })
        .collect();
    let keys: Vec<String> = history
        .iter()
        .filter_map(|op| match op {
            CacheOp::Put {
                key,
                acknowledged: true,
                ..
            } if !taken.contains(key) => Some(key.clone()),
            _ => None,
        })
        .collect();
    let base = history
        .iter()
        .map(|op| match op {
            CacheOp::Put { ret, .. } | CacheOp::Take { ret, .. } => *ret,
        })
        .max()
        .unwrap_or(0)
        + 1;
    for (n, key) in keys.into_iter().enumerate() {
        let leader = cluster.leader().await;
        let path = format!("/v1/cache/{NAMESPACE}/{key}/take");
        let answer = match cluster
            .try_send(leader, Method::POST, &path, None, OPERATION_TIMEOUT)
            .await
        {
            Ok(reply) => Answer::Reply(reply),
            Err(_) => Answer::NoAnswer,
        };
        let outcome = take_outcome(answer).unwrap_or(TakeOutcome::Unknown);
        // After everything else, one after another.
        let at = base + 2 * n as u64;
        history.push(CacheOp::Take {
            client: usize::MAX,
            key,
            outcome,
            call: at,
            ret: at + 1,
        });
    }
}

pub fn check(history: &[CacheOp]) -> Result<(), Violation<CacheOp>> {
    let mut by_key: BTreeMap<&str, Vec<&CacheOp>> = BTreeMap::new();
    for op in history {
        let key = match op {
            CacheOp::Put { key, .. } | CacheOp::Take { key, .. } => key,
        };
        by_key.entry(key).or_default().push(op);
    }
    for (key, ops) in by_key {
        let anomaly = |message: String, shown: Vec<&CacheOp>| Violation {
            message: format!("key {key:?}: {message}"),
            smallest: shown.into_iter().cloned().collect(),
        };
        let put = ops
            .iter()
            .copied()
            .find(|op| matches!(op, CacheOp::Put { .. }));
        let takes: Vec<&CacheOp> = ops
            .iter()
            .copied()
            .filter(|op| matches!(op, CacheOp::Take { .. }))
            .collect();
        let taken: Vec<&CacheOp> = takes
            .iter()
            .copied()
            .filter(|op| {
                matches!(
                    op,
                    CacheOp::Take {
                        outcome: TakeOutcome::Taken(_),
                        ..
                    }
                )
            })
            .collect();
        if taken.len() > 1 {
            return Err(anomaly(format!("taken {} times", taken.len()), taken));
        }
        for take in &takes {
            let CacheOp::Take {
                outcome, call, ret, ..
            } = take
            else {
                continue;
            };
            let Some(CacheOp::Put {
                value,
                acknowledged,
                call: put_call,
                ret: put_ret,
                ..
            }) = put
            else {
                return Err(anomaly("taken but never put".into(), vec![take]));
            };
            match outcome {
                TakeOutcome::Taken(seen) if seen != value || ret < put_call => {
                    return Err(anomaly(
                        format!("a take got {seen:?} from a put of {value:?}"),
                        vec![put.expect("checked"), take],
                    ));
                }
                TakeOutcome::Absent if *acknowledged && put_ret < call => {
                    let earlier = takes.iter().any(|other| match other {
                        CacheOp::Take {
                            outcome: TakeOutcome::Taken(_) | TakeOutcome::Unknown,
                            call: other_call,
                            ..
                        } => other_call < ret,
                        _ => false,
                    });
                    if !earlier {
                        return Err(anomaly(
                            "an acknowledged put was not there to take, and no take came before"
                                .into(),
                            vec![put.expect("checked"), take],
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

    fn put(key: &str, acknowledged: bool, call: u64, ret: u64) -> CacheOp {
        CacheOp::Put {
            client: 0,
            key: key.into(),
            value: format!("value-of-{key}"),
            acknowledged,
            call,
            ret,
        }
    }
    fn take(key: &str, outcome: TakeOutcome, call: u64, ret: u64) -> CacheOp {
        CacheOp::Take {
            client: 1,
            key: key.into(),
            outcome,
            call,
            ret,
        }
    }
    fn taken(key: &str) -> TakeOutcome {
        TakeOutcome::Taken(format!("value-of-{key}"))
    }

    #[test]
    fn one_take_then_absent_passes() {
        let h = vec![
            put("k", true, 0, 1),
            take("k", taken("k"), 2, 3),
            take("k", TakeOutcome::Absent, 4, 5),
            put("u", false, 0, 9),
            take("u", TakeOutcome::Absent, 10, 11),
        ];
        assert!(check(&h).is_ok());
    }

    #[test]
    fn a_value_taken_twice_fails() {
        let h = vec![
            put("k", true, 0, 1),
            take("k", taken("k"), 2, 3),
            take("k", taken("k"), 2, 4),
        ];
        let anomaly = check(&h).unwrap_err();
        assert!(anomaly.message.contains("taken 2 times"));
        assert_eq!(anomaly.smallest.len(), 2);
    }

    #[test]
    fn a_lost_acknowledged_put_fails() {
        let h = vec![put("k", true, 0, 1), take("k", TakeOutcome::Absent, 2, 3)];
        assert!(check(&h).unwrap_err().message.contains("not there"));
        // An unknown take before it may have taken it.
        let h = vec![
            put("k", true, 0, 1),
            take("k", TakeOutcome::Unknown, 2, 3),
            take("k", TakeOutcome::Absent, 4, 5),
        ];
        assert!(check(&h).is_ok());
    }

    #[test]
    fn a_take_of_something_never_put_fails() {
        assert!(check(&[take("k", taken("k"), 2, 3)]).is_err());
    }
}
