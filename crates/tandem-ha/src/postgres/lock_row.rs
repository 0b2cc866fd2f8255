//! The lock row in PostgreSQL whose holder is the active node: taken and renewed by one upsert
//! dated by the database's clock, read by standbys to learn the active node, released on a
//! step-down, and checked inside every write transaction of the active node.

use std::time::Duration;

use tandem_store::rules::fence;
use tandem_store::{Fence, LockState, Rejection};
use tokio_postgres::{Client, GenericClient};

use super::schema::quoted;
use super::PostgresError;
use crate::lock_lease::Attempt;
use crate::ActiveNode;

/// The lock's name where a fencing rejection names it.
pub const ACTIVE_LOCK: &str = "active";

/// Who runs for the lock: a node, and the name of this run of it (a restarted node is a new
/// holder, with a new token).
#[derive(Clone, Debug)]
pub struct Claimant {
    pub node: ActiveNode,
    pub holder: String,
}

/// Takes the lock when it is free or expired, renews it when `claimant` holds it, and leaves it
/// otherwise; answers the token when `claimant` holds it afterwards. The token grows by one
/// whenever the lock changes hands (a new holder, or the same one after its lease ran out).
/// `now()` is the statement's time on the database's clock, the same in every clause.
pub async fn take_or_renew(
    client: &Client,
    schema: &str,
    claimant: &Claimant,
    ttl: Duration,
) -> Result<Option<u64>, PostgresError> {
    let sql = format!(
        "INSERT INTO {s}.active_lock AS l
             (id, holder, node_id, api_addr, cluster_addr, token, expires_at)
         VALUES (1, $1, $2, $3, $4, 1, now() + $5::float8 * interval '1 millisecond')
         ON CONFLICT (id) DO UPDATE SET
             holder = excluded.holder,
             node_id = excluded.node_id,
             api_addr = excluded.api_addr,
             cluster_addr = excluded.cluster_addr,
             token = CASE WHEN l.holder = excluded.holder AND l.expires_at > now()
                          THEN l.token ELSE l.token + 1 END,
             expires_at = excluded.expires_at
         WHERE (l.holder = excluded.holder AND l.expires_at > now()) OR l.expires_at <= now()
         RETURNING token",
        s = quoted(schema)
    );
    let node = &claimant.node;
    let row = client
        .query_opt(
            &sql,
            &[
                &claimant.holder,
                &(node.id as i64),
                &node.api_addr,
                &node.cluster_addr,
                &(ttl.as_millis() as f64),
            ],
        )
        .await?;
    row.map(|row| row.try_get::<_, i64>(0).map(|t| t as u64))
        .transpose()
        .map_err(Into::into)
}

/// The lock as it stands: who holds it and until when (from now, on the database's clock).
pub async fn current(client: &Client, schema: &str) -> Result<Attempt, PostgresError> {
    let sql = format!(
        "SELECT node_id, api_addr, cluster_addr, token,
                greatest(0, extract(epoch from (expires_at - now())) * 1000)::bigint
         FROM {}.active_lock WHERE id = 1",
        quoted(schema)
    );
    let Some(row) = client.query_opt(&sql, &[]).await? else {
        return Ok(Attempt::Other {
            active: None,
            token: 0,
            expires_in: Duration::ZERO,
        });
    };
    let expires_in_ms: i64 = row.try_get(4)?;
    let held = expires_in_ms > 0;
    Ok(Attempt::Other {
        active: held
            .then(|| -> Result<ActiveNode, PostgresError> {
                Ok(ActiveNode {
                    id: row.try_get::<_, i64>(0)? as u64,
                    api_addr: row.try_get(1)?,
                    cluster_addr: row.try_get(2)?,
                })
            })
            .transpose()?,
        token: row.try_get::<_, i64>(3)? as u64,
        expires_in: Duration::from_millis(expires_in_ms as u64),
    })
}

/// Ends `claimant`'s lease now, if it still holds the lock with `token`, so that a standby
/// takes it at once; answers whether it did.
pub async fn release(
    client: &Client,
    schema: &str,
    claimant: &Claimant,
    token: u64,
) -> Result<bool, PostgresError> {
    let sql = format!(
        "UPDATE {}.active_lock SET expires_at = now()
         WHERE id = 1 AND holder = $1 AND token = $2 AND expires_at > now()",
        quoted(schema)
    );
    let changed = client
        .execute(&sql, &[&claimant.holder, &(token as i64)])
        .await?;
    Ok(changed == 1)
}

/// Inside a write transaction of the active node: refuses the write unless `token` is still the
/// lock's current token and its lease runs, and keeps the row from changing hands until the
/// transaction ends (`FOR SHARE`), so a newer holder never sees the write land after it took
/// over. The decision is the fencing rule every backend shares.
pub async fn check_fence(
    tx: &impl GenericClient,
    schema: &str,
    token: u64,
) -> Result<Result<(), Rejection>, PostgresError> {
    let sql = format!(
        "SELECT holder, token, (extract(epoch from expires_at) * 1000)::bigint,
                (extract(epoch from now()) * 1000)::bigint
         FROM {}.active_lock WHERE id = 1 FOR SHARE",
        quoted(schema)
    );
    let row = tx.query_opt(&sql, &[]).await?;
    let (lock, now_ms) = match row {
        Some(row) => (
            Some(LockState {
                name: ACTIVE_LOCK.into(),
                holder: Some(row.try_get(0)?),
                token: row.try_get::<_, i64>(1)? as u64,
                expires_at_ms: Some(row.try_get(2)?),
            }),
            row.try_get(3)?,
        ),
        None => (None, 0),
    };
    let fence_of = Fence {
        lock: ACTIVE_LOCK.into(),
        token,
    };
    Ok(fence::check_current(&fence_of, lock.as_ref(), now_ms))
}

#[cfg(test)]
mod tests {
    use tandem_store::rules::lease::{self, Acquisition};
    use tandem_testkit::PostgresServer;

    use super::*;
    use crate::postgres::{connect, migrate};

    const SCHEMA: &str = "tandem";
    const TTL: Duration = Duration::from_secs(5);

    fn claimant(holder: &str) -> Claimant {
        Claimant {
            node: ActiveNode {
                id: 1,
                api_addr: "127.0.0.1:8200".into(),
                cluster_addr: "127.0.0.1:8100".into(),
            },
            holder: holder.into(),
        }
    }

    /// The upsert decides as the lease rule every backend shares: the same holder keeps its
    /// token while its lease runs, anyone takes an expired lock with the next token, and a
    /// lock another holder still holds is left alone.
    #[tokio::test(flavor = "multi_thread")]
    async fn the_upsert_follows_the_shared_lease_rule() {
        let db = PostgresServer::start().await;
        let mut client = connect(&db.url().parse().unwrap()).await.unwrap();
        migrate(&mut client, SCHEMA).await.unwrap();
        // (holder in the row, its lease's end from now in ms); None: no row yet.
        let cases: [Option<(&str, i64)>; 5] = [
            None,
            Some(("me", 10_000)),
            Some(("me", -10_000)),
            Some(("other", 10_000)),
            Some(("other", -10_000)),
        ];
        for case in cases {
            client
                .batch_execute("DELETE FROM tandem.active_lock")
                .await
                .unwrap();
            let now_ms: i64 = client
                .query_one("SELECT (extract(epoch from now()) * 1000)::bigint", &[])
                .await
                .unwrap()
                .get(0);
            let stored = case.map(|(holder, ends_in)| LockState {
                name: ACTIVE_LOCK.into(),
                holder: Some(holder.into()),
                token: 5,
                expires_at_ms: Some(now_ms + ends_in),
            });
            if let Some(stored) = &stored {
                client
                    .execute(
                        "INSERT INTO tandem.active_lock VALUES
                         (1, $1, 2, 'a', 'c', 5, to_timestamp($2::float8 / 1000))",
                        &[&stored.holder, &(stored.expires_at_ms.unwrap() as f64)],
                    )
                    .await
                    .unwrap();
            }
            let next_token = stored.as_ref().map_or(1, |s| s.token + 1);
            let rule = lease::acquire(
                stored.as_ref(),
                ACTIVE_LOCK,
                "me",
                TTL.as_millis() as u64,
                now_ms,
                next_token,
            );
            let expected = rule.ok().map(|a: Acquisition| a.lease().token);
            let got = take_or_renew(&client, SCHEMA, &claimant("me"), TTL)
                .await
                .unwrap();
            assert_eq!(got, expected, "row {case:?}");
        }
    }
}
