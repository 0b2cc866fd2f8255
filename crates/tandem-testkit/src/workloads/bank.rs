//! SQL bank transfers: each transfer debits one account, credits another and records itself under
//! an id of its own, in one transaction; `CHECK (balance >= 0)` makes an overdraft abort all of
//! it. Linearizable reads must always see the same total and no negative balance. At the end the
//! recorded transfers must hold every acknowledged one, no refused one, and nothing else that was
//! not of unknown outcome, and the balances must be the opening ones moved by exactly those.

use std::collections::BTreeSet;

use rand::Rng;
use reqwest::Method;
use serde_json::{json, Value};

use crate::cluster::Cluster;
use crate::history::{Answer, ClientContext, Violation, WriteOutcome};

pub const ACCOUNTS: usize = 5;
pub const OPENING_BALANCE: i64 = 100;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TransferOutcome {
    Applied,
    /// Refused (an overdraft, or never proposed): changed nothing.
    Refused,
    Unknown,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BankOp {
    Transfer {
        client: usize,
        id: String,
        from: usize,
        to: usize,
        amount: i64,
        outcome: TransferOutcome,
        call: u64,
    },
    /// Balances by account, as one linearizable query saw them.
    Read {
        client: usize,
        balances: Vec<i64>,
        call: u64,
        ret: u64,
    },
}

fn execute_body(statements: Value) -> Option<(&'static str, Vec<u8>)> {
    Some((
        "application/json",
        json!({ "statements": statements }).to_string().into_bytes(),
    ))
}

fn query_body() -> Option<(&'static str, Vec<u8>)> {
    Some((
        "application/json",
        json!({"sql": "SELECT balance FROM bank_accounts ORDER BY id"})
            .to_string()
            .into_bytes(),
    ))
}

/// The first column of a query's answer.
fn first_column<T>(rows: &Value, read: impl Fn(&Value) -> Option<T>) -> Option<Vec<T>> {
    rows["rows"]
        .as_array()?
        .iter()
        .map(|row| read(&row[0]))
        .collect()
}

fn balances(rows: &Value) -> Option<Vec<i64>> {
    first_column(rows, Value::as_i64)
}

/// The state after the run, read through the active node.
pub struct FinalState {
    pub balances: Vec<i64>,
    /// The ids of the transfers that took effect.
    pub transfers: BTreeSet<String>,
}

/// Creates the accounts with their opening balances.
pub async fn open_accounts(cluster: &Cluster) {
    let leader = cluster.leader().await;
    let mut statements = vec![
        json!("CREATE TABLE bank_accounts (id INTEGER PRIMARY KEY, balance INTEGER NOT NULL CHECK (balance >= 0))"),
        json!("CREATE TABLE bank_transfers (id TEXT PRIMARY KEY)"),
    ];
    for id in 0..ACCOUNTS {
        statements.push(json!({
            "sql": "INSERT INTO bank_accounts (id, balance) VALUES (?, ?)",
            "params": [id, OPENING_BALANCE],
        }));
    }
    cluster
        .post_json(
            leader,
            "/v1/sql/execute",
            &json!({ "statements": statements }),
        )
        .await
        .expect_status(200);
}

pub async fn final_state(cluster: &Cluster) -> FinalState {
    let leader = cluster.leader().await;
    let reply = cluster
        .send(leader, Method::POST, "/v1/sql/query", query_body())
        .await
        .expect_status(200);
    let balances = balances(&reply.json()).expect("the balances are integers");
    let reply = cluster
        .post_json(
            leader,
            "/v1/sql/query",
            &json!({"sql": "SELECT id FROM bank_transfers"}),
        )
        .await
        .expect_status(200);
    let transfers = first_column(&reply.json(), |v| v.as_str().map(str::to_string))
        .expect("the transfer ids are strings")
        .into_iter()
        .collect();
    FinalState {
        balances,
        transfers,
    }
}

pub async fn client(mut ctx: ClientContext<BankOp>) {
    let mut n = 0;
    while ctx.running() {
        let call = ctx.now();
        if ctx.rng.random_bool(0.3) {
            let answer = ctx
                .request(Method::POST, "/v1/sql/query", query_body())
                .await;
            let Answer::Reply(reply) = answer else {
                continue;
            };
            if !reply.status.is_success() {
                continue;
            }
            let balances = balances(&reply.json()).unwrap_or_default();
            ctx.record(BankOp::Read {
                client: ctx.index,
                balances,
                call,
                ret: ctx.now(),
            });
            continue;
        }
        let from = ctx.rng.random_range(0..ACCOUNTS);
        let to = (from + ctx.rng.random_range(1..ACCOUNTS)) % ACCOUNTS;
        let amount = ctx.rng.random_range(1..=40);
        n += 1;
        let id = format!("c{}-{n}", ctx.index);
        let body = execute_body(json!([
            {"sql": "INSERT INTO bank_transfers (id) VALUES (?)", "params": [id]},
            {"sql": "UPDATE bank_accounts SET balance = balance - ? WHERE id = ?", "params": [amount, from]},
            {"sql": "UPDATE bank_accounts SET balance = balance + ? WHERE id = ?", "params": [amount, to]},
        ]));
        let outcome = match ctx
            .request(Method::POST, "/v1/sql/execute", body)
            .await
            .write_outcome()
        {
            WriteOutcome::Applied(_) => TransferOutcome::Applied,
            WriteOutcome::NotApplied(_) => TransferOutcome::Refused,
            WriteOutcome::Unknown => TransferOutcome::Unknown,
        };
        ctx.record(BankOp::Transfer {
            client: ctx.index,
            id,
            from,
            to,
            amount,
            outcome,
            call,
        });
    }
}

fn effect(from: usize, to: usize, amount: i64) -> Vec<i64> {
    let mut delta = vec![0; ACCOUNTS];
    delta[from] -= amount;
    delta[to] += amount;
    delta
}

/// Checks every read, and the final state against the transfers' outcomes.
pub fn check(history: &[BankOp], end: &FinalState) -> Result<(), Violation<BankOp>> {
    let total = OPENING_BALANCE * ACCOUNTS as i64;
    for op in history {
        if let BankOp::Read { balances, .. } = op {
            let sum: i64 = balances.iter().sum();
            if balances.len() != ACCOUNTS || sum != total || balances.iter().any(|b| *b < 0) {
                return Err(Violation {
                    message: format!(
                        "a read saw {balances:?} (sum {sum}); expected {ACCOUNTS} accounts, none negative, sum {total}"
                    ),
                    smallest: vec![op.clone()],
                });
            }
        }
    }
    let mut expected = vec![OPENING_BALANCE; ACCOUNTS];
    for op in history {
        let BankOp::Transfer {
            id,
            from,
            to,
            amount,
            outcome,
            ..
        } = op
        else {
            continue;
        };
        let took_effect = end.transfers.contains(id);
        let wrong = match outcome {
            TransferOutcome::Applied if !took_effect => Some("was acknowledged but is lost"),
            TransferOutcome::Refused if took_effect => Some("was refused but took effect"),
            _ => None,
        };
        if let Some(wrong) = wrong {
            return Err(Violation {
                message: format!("transfer {id} {wrong}"),
                smallest: vec![op.clone()],
            });
        }
        if took_effect {
            for (balance, d) in expected.iter_mut().zip(effect(*from, *to, *amount)) {
                *balance += d;
            }
        }
    }
    let attempted: BTreeSet<&String> = history
        .iter()
        .filter_map(|op| match op {
            BankOp::Transfer { id, .. } => Some(id),
            BankOp::Read { .. } => None,
        })
        .collect();
    if let Some(stranger) = end.transfers.iter().find(|id| !attempted.contains(id)) {
        return Err(Violation {
            message: format!(
                "transfer {stranger} took effect, but no client's attempt at it could have"
            ),
            smallest: Vec::new(),
        });
    }
    if end.balances != expected {
        return Err(Violation {
            message: format!(
                "the final balances {:?} are not the opening ones moved by the {} transfers that took effect ({expected:?})",
                end.balances,
                end.transfers.len()
            ),
            smallest: vec![BankOp::Read {
                client: usize::MAX,
                balances: end.balances.clone(),
                call: u64::MAX,
                ret: u64::MAX,
            }],
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn transfer(id: &str, from: usize, to: usize, amount: i64, outcome: TransferOutcome) -> BankOp {
        BankOp::Transfer {
            client: 0,
            id: id.into(),
            from,
            to,
            amount,
            outcome,
            call: 0,
        }
    }

    fn read(balances: Vec<i64>) -> BankOp {
        BankOp::Read {
            client: 1,
            balances,
            call: 0,
            ret: 1,
        }
    }

    fn end(balances: [i64; ACCOUNTS], transfers: &[&str]) -> FinalState {
        FinalState {
            balances: balances.to_vec(),
            transfers: transfers.iter().map(|t| t.to_string()).collect(),
        }
    }

    fn history() -> Vec<BankOp> {
        vec![
            transfer("t1", 0, 1, 30, TransferOutcome::Applied),
            read(vec![70, 130, 100, 100, 100]),
            transfer("t2", 1, 2, 500, TransferOutcome::Refused),
            transfer("t3", 2, 3, 10, TransferOutcome::Unknown),
        ]
    }

    #[test]
    fn transfers_that_add_up_pass() {
        assert!(check(&history(), &end([70, 130, 100, 100, 100], &["t1"])).is_ok());
        assert!(check(&history(), &end([70, 130, 90, 110, 100], &["t1", "t3"])).is_ok());
    }

    #[test]
    fn a_read_with_another_total_or_a_negative_balance_fails() {
        let h = vec![read(vec![70, 100, 100, 100, 100])];
        let anomaly = check(&h, &end([100; 5], &[])).unwrap_err();
        assert_eq!(anomaly.smallest, h);
        assert!(check(&[read(vec![-10, 110, 100, 100, 100])], &end([100; 5], &[])).is_err());
    }

    #[test]
    fn a_lost_or_wrongly_applied_transfer_fails() {
        let lost = check(&history(), &end([100; 5], &[])).unwrap_err();
        assert!(
            lost.message.contains("t1 was acknowledged but is lost"),
            "{lost}"
        );
        let refused = check(&history(), &end([70, 130, 100, 100, 100], &["t1", "t2"]));
        assert!(refused.unwrap_err().message.contains("t2 was refused"));
        let stranger = check(&history(), &end([70, 130, 100, 100, 100], &["t1", "t9"]));
        assert!(stranger.unwrap_err().message.contains("t9"));
    }

    #[test]
    fn balances_that_do_not_match_the_transfers_fail() {
        let anomaly = check(&history(), &end([60, 140, 100, 100, 100], &["t1"])).unwrap_err();
        assert!(
            anomaly.message.contains("not the opening ones"),
            "{anomaly}"
        );
    }
}
