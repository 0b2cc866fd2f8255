//! Fencing in PostgreSQL when the active node is chosen elsewhere (`ha_storage = etcd`): the
//! database keeps the newest holder's token, and every write of an active node raises it to
//! its own token in the write's own transaction, refused when it is already higher. The raise
//! holds the row until the write commits, so a newer holder's first write waits for the writes
//! under way, and once it lands no write of an older holder can.

use tandem_store::Rejection;
use tokio_postgres::GenericClient;

use super::schema::quoted;
use super::PostgresError;

/// The holder with `token` takes over the database's writes (or keeps them); refused when a
/// newer holder already did.
pub async fn raise_fence_floor(
    client: &impl GenericClient,
    schema: &str,
    token: u64,
) -> Result<Result<(), Rejection>, PostgresError> {
    let sql = format!(
        "UPDATE {}.fence_floor SET token = $1 WHERE id = 1 AND token <= $1 RETURNING token",
        quoted(schema)
    );
    if client.query_opt(&sql, &[&(token as i64)]).await?.is_some() {
        return Ok(Ok(()));
    }
    let floor = read_floor(client, schema).await?;
    Ok(Err(Rejection::fenced(format!(
        "fencing token {token} is older than the newest active node's ({floor}); this node was deposed"
    ))))
}

async fn read_floor(client: &impl GenericClient, schema: &str) -> Result<u64, PostgresError> {
    let sql = format!(
        "SELECT token FROM {}.fence_floor WHERE id = 1",
        quoted(schema)
    );
    let row = client.query_one(&sql, &[]).await?;
    Ok(row.try_get::<_, i64>(0)? as u64)
}

#[cfg(test)]
mod tests {
    use tandem_store::RejectionKind;
    use tandem_testkit::PostgresServer;

    use super::*;
    use crate::postgres::{connect, migrate};

    #[tokio::test(flavor = "multi_thread")]
    async fn a_new_holder_fences_out_the_old_ones() {
        let db = PostgresServer::start().await;
        let config = db.url().parse().unwrap();
        let mut old = connect(&config).await.unwrap();
        migrate(&mut old, "tandem").await.unwrap();
        assert_eq!(raise_fence_floor(&old, "tandem", 10).await.unwrap(), Ok(()));
        // A write of the holder with token 10 is under way when token 20 takes over.
        let write = old.transaction().await.unwrap();
        assert_eq!(
            raise_fence_floor(&write, "tandem", 10).await.unwrap(),
            Ok(())
        );
        let new = connect(&config).await.unwrap();
        let takeover = tokio::spawn(async move {
            let raised = raise_fence_floor(&new, "tandem", 20).await.unwrap();
            (new, raised)
        });
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        assert!(
            !takeover.is_finished(),
            "the takeover waits for the write under way"
        );
        write.commit().await.unwrap();
        let (new, raised) = takeover.await.unwrap();
        assert_eq!(raised, Ok(()));
        // From now on the old holder is refused, and so is an even older one's takeover.
        let write = old.transaction().await.unwrap();
        let refused = raise_fence_floor(&write, "tandem", 10)
            .await
            .unwrap()
            .unwrap_err();
        assert_eq!(refused.kind, RejectionKind::Fenced);
        drop(write);
        let late = raise_fence_floor(&new, "tandem", 15)
            .await
            .unwrap()
            .unwrap_err();
        assert_eq!(late.kind, RejectionKind::Fenced);
        assert!(late.message.contains("(20)"), "{late}");
        assert_eq!(raise_fence_floor(&new, "tandem", 20).await.unwrap(), Ok(()));
    }
}
