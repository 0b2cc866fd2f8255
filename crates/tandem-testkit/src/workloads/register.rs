//! Key/value registers: reads, writes and compare-and-set (`?if_revision=`) on a few keys, checked
//! for linearizability by [`crate::linearizability`].

use std::collections::BTreeMap;

use rand::Rng;
use reqwest::{Method, StatusCode};

use crate::history::{Answer, ClientContext, WriteOutcome};
use crate::linearizability::{Operation, RegisterOp, RegisterOutput};

pub const KEYS: [&str; 3] = ["reg-a", "reg-b", "reg-c"];
/// Clients move on to fresh keys this often, so that each key's history stays small enough to
/// search however long the run.
const KEY_EPOCH_US: u64 = 20_000_000;

/// Reads, writes and compare-and-sets at random until the run stops. A compare-and-set expects
/// the value this client last read from the key, at the revision it read it at.
pub async fn client(mut ctx: ClientContext<Operation>) {
    let mut last_read: BTreeMap<String, (Option<String>, u64)> = BTreeMap::new();
    let mut n = 0;
    while ctx.running() {
        n += 1;
        let key = format!(
            "{}-{}",
            KEYS[ctx.rng.random_range(0..KEYS.len())],
            ctx.now() / KEY_EPOCH_US
        );
        let path = format!("/v1/kv/{key}");
        let value = format!("c{}-{n}", ctx.index);
        let call = ctx.now();
        let (op, output) = match ctx.rng.random_range(0..3) {
            0 => {
                let answer = ctx.request(Method::GET, &path, None).await;
                let Answer::Reply(reply) = answer else {
                    continue;
                };
                let seen = match reply.status {
                    StatusCode::OK => Some(reply.text()),
                    StatusCode::NOT_FOUND => None,
                    // Not served (no quorum, redirected): a read that did not happen.
                    _ => continue,
                };
                let revision = reply
                    .header("tandem-revision")
                    .and_then(|r| r.parse().ok())
                    .unwrap_or(0);
                last_read.insert(key.clone(), (seen.clone(), revision));
                (RegisterOp::Read, RegisterOutput::Read(seen))
            }
            1 => {
                let body = Some(("application/octet-stream", value.clone().into_bytes()));
                let outcome = ctx.request(Method::PUT, &path, body).await.write_outcome();
                let Some(output) = write_output(outcome, false) else {
                    continue;
                };
                (RegisterOp::Write(value), output)
            }
            _ => {
                let (expected, revision) = last_read.get(&key).cloned().unwrap_or((None, 0));
                let body = Some(("application/octet-stream", value.clone().into_bytes()));
                let outcome = ctx
                    .request(Method::PUT, &format!("{path}?if_revision={revision}"), body)
                    .await
                    .write_outcome();
                let Some(output) = write_output(outcome, true) else {
                    continue;
                };
                let op = RegisterOp::Cas {
                    expected,
                    new: value,
                };
                (op, output)
            }
        };
        let ret = (output != RegisterOutput::Unknown).then(|| ctx.now());
        ctx.record(Operation {
            client: ctx.index,
            key,
            op,
            output,
            call,
            ret,
        });
    }
}

/// What a write's answer puts in the history; `None` for a write that certainly did nothing
/// (left out, as it cannot explain anything).
fn write_output(outcome: WriteOutcome, conditional: bool) -> Option<RegisterOutput> {
    match outcome {
        WriteOutcome::Applied(_) => Some(RegisterOutput::Written),
        WriteOutcome::Unknown => Some(RegisterOutput::Unknown),
        WriteOutcome::NotApplied(Some(reply))
            if conditional && reply.status == StatusCode::CONFLICT =>
        {
            Some(RegisterOutput::Refused)
        }
        WriteOutcome::NotApplied(_) => None,
    }
}
