//! Tokens: clients issue tokens on any node, verify tokens issued earlier on any node, and now
//! and then rotate a node's key. An acknowledged token is never refused while it is valid: a
//! node that is behind or cut off must not call a published key unknown. A rotation never
//! brings back a key id used before.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use rand::Rng;
use reqwest::Method;
use serde_json::json;

use crate::cluster::Cluster;
use crate::history::{Answer, ClientContext, Violation};
use crate::wait::{wait_until, DEADLINE};

/// Longer than any run, so no token expires while it is checked.
const TTL: &str = "30m";

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TokenOp {
    /// An acknowledged issue.
    Issued {
        client: usize,
        subject: String,
        kid: String,
        call: u64,
        ret: u64,
    },
    /// An acknowledged rotation: the key id the node signs with from then on.
    Rotated {
        client: usize,
        kid: String,
        call: u64,
        ret: u64,
    },
    /// A verification that the server answered with a verdict (200 or 401).
    Verified {
        client: usize,
        subject: String,
        /// The claims' `sub` when accepted, the error code when refused.
        verdict: Result<String, String>,
        call: u64,
        ret: u64,
    },
}

/// Tokens acknowledged so far, shared by the clients of one run: (subject, token).
#[derive(Clone, Default)]
pub struct IssuedTokens(Arc<Mutex<Vec<(String, String)>>>);

impl IssuedTokens {
    fn add(&self, subject: String, token: String) {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((subject, token));
    }

    fn pick(&self, n: usize) -> Option<(String, String)> {
        let tokens = self.0.lock().unwrap_or_else(|p| p.into_inner());
        (!tokens.is_empty()).then(|| tokens[n % tokens.len()].clone())
    }

    pub fn all(&self) -> Vec<(String, String)> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

fn json_reply(answer: Answer) -> Option<(u16, serde_json::Value)> {
    match answer {
        Answer::Reply(reply) => Some((reply.status.as_u16(), reply.json())),
        _ => None,
    }
}

pub async fn client(mut ctx: ClientContext<TokenOp>, tokens: IssuedTokens) {
    let mut n = 0;
    while ctx.running() {
        n += 1;
        let call = ctx.now();
        let roll = ctx.rng.random_range(0..100);
        if roll < 3 {
            let answer = ctx.request(Method::POST, "/v1/keys/rotate", None).await;
            if let Some((200, reply)) = json_reply(answer) {
                ctx.record(TokenOp::Rotated {
                    client: ctx.index,
                    kid: reply["kid"].as_str().unwrap_or_default().to_string(),
                    call,
                    ret: ctx.now(),
                });
            }
        } else if roll < 40 {
            let subject = format!("c{}-{n}", ctx.index);
            let body = json!({"claims": {"sub": subject}, "ttl": TTL}).to_string();
            let answer = ctx
                .request(
                    Method::POST,
                    "/v1/tokens",
                    Some(("application/json", body.into_bytes())),
                )
                .await;
            if let Some((200, reply)) = json_reply(answer) {
                let token = reply["token"].as_str().unwrap_or_default().to_string();
                tokens.add(subject.clone(), token);
                ctx.record(TokenOp::Issued {
                    client: ctx.index,
                    subject,
                    kid: reply["kid"].as_str().unwrap_or_default().to_string(),
                    call,
                    ret: ctx.now(),
                });
            }
        } else if let Some((subject, token)) = tokens.pick(ctx.rng.random_range(0..usize::MAX)) {
            let body = json!({ "token": token }).to_string();
            let answer = ctx
                .request(
                    Method::POST,
                    "/v1/tokens/verify",
                    Some(("application/json", body.into_bytes())),
                )
                .await;
            let verdict = match json_reply(answer) {
                Some((200, reply)) => Ok(reply["claims"]["sub"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string()),
                Some((401, reply)) => Err(reply["error"]["code"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string()),
                // Not served (no active node, redirected, no answer): no verdict.
                _ => continue,
            };
            ctx.record(TokenOp::Verified {
                client: ctx.index,
                subject,
                verdict,
                call,
                ret: ctx.now(),
            });
        }
    }
}

/// Every verdict on an acknowledged token accepts it with its own subject, and no rotation
/// answers a key id that was already in use.
pub fn check(history: &[TokenOp]) -> Result<(), Violation<TokenOp>> {
    for op in history {
        if let TokenOp::Verified {
            subject, verdict, ..
        } = op
        {
            if verdict.as_ref() != Ok(subject) {
                return Err(Violation {
                    message: format!("a valid token of {subject:?} was not accepted: {verdict:?}"),
                    smallest: history
                        .iter()
                        .filter(|o| matches!(o, TokenOp::Issued { subject: s, .. } if s == subject))
                        .chain(std::iter::once(op))
                        .cloned()
                        .collect(),
                });
            }
        }
    }
    let mut seen = BTreeSet::new();
    for op in history {
        if let TokenOp::Rotated { kid, .. } = op {
            if !seen.insert(kid.clone()) {
                return Err(Violation {
                    message: format!("key id {kid} came back from a second rotation"),
                    smallest: history
                        .iter()
                        .filter(|o| matches!(o, TokenOp::Rotated { kid: k, .. } if k == kid))
                        .cloned()
                        .collect(),
                });
            }
        }
    }
    Ok(())
}

/// Tokens checked on every node after the run: spread over the whole run, so every key that
/// signed is among them.
const FINAL_SAMPLE: usize = 300;

/// Once the faults are healed, acknowledged tokens (a sample spread over the run) verify on
/// every node. Answers how many were checked.
pub async fn verify_everywhere(cluster: &Cluster, tokens: &IssuedTokens) -> usize {
    let all = tokens.all();
    let step = all.len().div_ceil(FINAL_SAMPLE).max(1);
    let sample: Vec<_> = all.into_iter().step_by(step).collect();
    for (subject, token) in &sample {
        for i in 0..cluster.len() {
            wait_until(
                DEADLINE,
                &format!("node index {i} to accept the token of {subject}"),
                async || {
                    let reply = cluster.verify_token(i, token).await;
                    assert_ne!(
                        reply.status,
                        401,
                        "node index {i} refused the token of {subject}: {}",
                        reply.text()
                    );
                    reply.status == 200
                },
            )
            .await;
        }
    }
    sample.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verified(subject: &str, verdict: Result<&str, &str>) -> TokenOp {
        TokenOp::Verified {
            client: 0,
            subject: subject.into(),
            verdict: verdict.map(str::to_string).map_err(str::to_string),
            call: 0,
            ret: 1,
        }
    }

    fn rotated(kid: &str) -> TokenOp {
        TokenOp::Rotated {
            client: 0,
            kid: kid.into(),
            call: 0,
            ret: 1,
        }
    }

    #[test]
    fn accepted_tokens_and_fresh_key_ids_pass() {
        let history = [verified("a", Ok("a")), rotated("k1"), rotated("k2")];
        assert!(check(&history).is_ok());
    }

    #[test]
    fn a_refused_valid_token_or_a_reused_key_id_fails() {
        let refused = check(&[verified("a", Err("token_unknown_key"))]).unwrap_err();
        assert!(
            refused.message.contains("was not accepted"),
            "{}",
            refused.message
        );
        let swapped = check(&[verified("a", Ok("b"))]).unwrap_err();
        assert!(swapped.message.contains("\"a\""), "{}", swapped.message);
        let reused = check(&[rotated("k1"), rotated("k1")]).unwrap_err();
        assert!(reused.message.contains("k1"), "{}", reused.message);
    }
}
