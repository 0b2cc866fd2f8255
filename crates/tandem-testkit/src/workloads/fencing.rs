//! Locks with fencing: clients take a lock with a short lease and write to one key with
//! `?fence=<lock>:<token>`; now and then a holder stalls past its lease before it writes, as a
//! paused process would. A deposed holder must never get a write accepted: accepted writes never
//! go back in token, no write is accepted after its lease has surely run out, tokens grow in
//! real-time order, and no lock is granted while another holder's lease surely still runs.

use std::time::Duration;

use rand::Rng;
use reqwest::Method;
use serde_json::json;

use crate::history::{Answer, ClientContext, Violation, WriteOutcome};

pub const LOCK: &str = "fault-lock";
pub const FENCED_KEY: &str = "fenced-register";
pub const LEASE: Duration = Duration::from_millis(600);
/// Lease times are the active node's millisecond stamps; client times are microseconds on the
/// same machine. This covers the rounding between the two.
const CLOCK_MARGIN_US: u64 = 5_000;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FencingOp {
    /// A lock granted to `holder` with `token`, asked at `call` and answered at `ret`.
    Granted {
        holder: String,
        token: u64,
        call: u64,
        ret: u64,
    },
    /// `holder` asked to release its lock at `call` (whatever the answer: from then on its lease
    /// may be over).
    Released { holder: String, call: u64 },
    /// A write with `?fence=` that was accepted.
    Accepted {
        holder: String,
        token: u64,
        call: u64,
        ret: u64,
    },
}

pub async fn client(mut ctx: ClientContext<FencingOp>) {
    let mut session = 0;
    while ctx.running() {
        session += 1;
        let holder = format!("c{}-{session}", ctx.index);
        let call = ctx.now();
        let body = json!({"holder": holder, "ttl": format!("{}ms", LEASE.as_millis())});
        let answer = ctx
            .request(
                Method::POST,
                &format!("/v1/locks/{LOCK}/acquire"),
                Some(("application/json", body.to_string().into_bytes())),
            )
            .await;
        let token = match answer {
            Answer::Reply(reply) if reply.status.is_success() => reply.json()["token"].as_u64(),
            _ => None,
        };
        let Some(token) = token else {
            // Held by another (or no answer): try again shortly.
            tokio::time::sleep(Duration::from_millis(20)).await;
            continue;
        };
        ctx.record(FencingOp::Granted {
            holder: holder.clone(),
            token,
            call,
            ret: ctx.now(),
        });
        for n in 0..ctx.rng.random_range(1..4) {
            if ctx.rng.random_bool(0.15) {
                // A holder that stalls: its lease runs out before it writes.
                tokio::time::sleep(LEASE + Duration::from_millis(200)).await;
            }
            let call = ctx.now();
            let path = format!("/v1/kv/{FENCED_KEY}?fence={LOCK}:{token}");
            let body = format!("{holder}:{token}:{n}").into_bytes();
            let outcome = ctx
                .request(Method::PUT, &path, Some(("application/octet-stream", body)))
                .await
                .write_outcome();
            if let WriteOutcome::Applied(_) = outcome {
                ctx.record(FencingOp::Accepted {
                    holder: holder.clone(),
                    token,
                    call,
                    ret: ctx.now(),
                });
            }
        }
        if ctx.rng.random_bool(0.7) {
            let call = ctx.now();
            let body = json!({"holder": holder, "token": token});
            ctx.request(
                Method::POST,
                &format!("/v1/locks/{LOCK}/release"),
                Some(("application/json", body.to_string().into_bytes())),
            )
            .await;
            ctx.record(FencingOp::Released { holder, call });
        }
    }
}

pub fn check(history: &[FencingOp]) -> Result<(), Violation<FencingOp>> {
    let lease_us = LEASE.as_micros() as u64;
    let granted: Vec<(&String, u64, u64, u64)> = history
        .iter()
        .filter_map(|op| match op {
            FencingOp::Granted {
                holder,
                token,
                call,
                ret,
            } => Some((holder, *token, *call, *ret)),
            _ => None,
        })
        .collect();
    let accepted: Vec<&FencingOp> = history
        .iter()
        .filter(|op| matches!(op, FencingOp::Accepted { .. }))
        .collect();
    let released_at = |holder: &str| {
        history.iter().find_map(|op| match op {
            FencingOp::Released { holder: h, call } if h == holder => Some(*call),
            _ => None,
        })
    };
    let grant_of = |holder: &str| {
        history
            .iter()
            .find(|op| matches!(op, FencingOp::Granted { holder: h, .. } if h == holder))
    };
    let anomaly = |message: String, ops: Vec<&FencingOp>| Violation {
        message,
        smallest: ops.into_iter().cloned().collect(),
    };
    for a in &accepted {
        let FencingOp::Accepted {
            holder,
            token,
            call,
            ret,
        } = a
        else {
            continue;
        };
        let grant = grant_of(holder).expect("a client writes only with a lock it was granted");
        if let FencingOp::Granted {
            ret: granted_at, ..
        } = grant
        {
            if *call > granted_at + lease_us + CLOCK_MARGIN_US {
                return Err(anomaly(
                    format!("holder {holder}'s write with token {token} was accepted after its lease had run out"),
                    vec![grant, a],
                ));
            }
        }
        for b in &accepted {
            if let FencingOp::Accepted {
                token: later_token,
                call: later_call,
                ..
            } = b
            {
                if ret < later_call && later_token < token {
                    return Err(anomaly(
                        format!("a write with token {later_token} was accepted after one with token {token} had been"),
                        vec![a, b],
                    ));
                }
            }
        }
    }
    for &(holder, token, call, ret) in &granted {
        let lease_surely_until = (call + lease_us).min(released_at(holder).unwrap_or(u64::MAX));
        for &(other, other_token, other_call, other_ret) in &granted {
            let (first, second) = (grant_of(holder), grant_of(other));
            let both = || vec![first.expect("granted"), second.expect("granted")];
            if ret < other_call && other_token <= token {
                return Err(anomaly(
                    format!("token {other_token} was granted after token {token}, not above it"),
                    both(),
                ));
            }
            if other_token > token && other_ret + CLOCK_MARGIN_US < lease_surely_until {
                return Err(anomaly(
                    format!("{other} was granted the lock while {holder}'s lease still ran"),
                    both(),
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1000;

    fn granted(holder: &str, token: u64, call: u64, ret: u64) -> FencingOp {
        FencingOp::Granted {
            holder: holder.into(),
            token,
            call,
            ret,
        }
    }
    fn accepted(holder: &str, token: u64, call: u64, ret: u64) -> FencingOp {
        FencingOp::Accepted {
            holder: holder.into(),
            token,
            call,
            ret,
        }
    }

    #[test]
    fn holders_one_after_another_pass() {
        let h = vec![
            granted("a", 5, 0, 10 * MS),
            accepted("a", 5, 20 * MS, 30 * MS),
            FencingOp::Released {
                holder: "a".into(),
                call: 40 * MS,
            },
            granted("b", 9, 50 * MS, 60 * MS),
            accepted("b", 9, 70 * MS, 80 * MS),
            granted("c", 12, 2000 * MS, 2010 * MS),
        ];
        assert!(check(&h).is_ok());
    }

    #[test]
    fn a_deposed_holders_write_after_a_newer_one_fails() {
        let h = vec![
            granted("a", 5, 0, 10 * MS),
            granted("b", 9, 1100 * MS, 1110 * MS),
            accepted("b", 9, 1120 * MS, 1130 * MS),
            accepted("a", 5, 200 * MS, 1200 * MS),
            accepted("a", 5, 1140 * MS, 1150 * MS),
        ];
        let anomaly = check(&h).unwrap_err();
        assert!(anomaly.message.contains("token 5"), "{anomaly}");
        assert_eq!(anomaly.smallest.len(), 2);
    }

    #[test]
    fn a_write_after_the_lease_ran_out_fails() {
        let h = vec![
            granted("a", 5, 0, 10 * MS),
            accepted("a", 5, 1100 * MS, 1110 * MS),
        ];
        assert!(check(&h).unwrap_err().message.contains("lease had run out"));
    }

    #[test]
    fn overlapping_leases_fail() {
        let h = vec![
            granted("a", 5, 0, 10 * MS),
            granted("b", 9, 100 * MS, 110 * MS),
        ];
        assert!(check(&h).unwrap_err().message.contains("still ran"));
    }

    #[test]
    fn tokens_that_go_back_fail() {
        let h = vec![
            granted("a", 9, 0, 10 * MS),
            granted("b", 5, 1500 * MS, 1510 * MS),
        ];
        assert!(check(&h).unwrap_err().message.contains("not above"));
    }
}
