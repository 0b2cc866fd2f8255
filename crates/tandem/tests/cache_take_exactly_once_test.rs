//! `take` hands a cache entry to exactly one caller, even when every node is asked at once.

use std::path::Path;
use std::sync::Arc;

use reqwest::Method;
use tandem_testkit::{Cluster, HttpReply};
use tokio::sync::Barrier;

fn tandem() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_tandem"))
}

const ROUNDS: usize = 20;

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_takes_on_every_node_hand_the_value_to_exactly_one() {
    let cluster = Cluster::start(tandem(), 3, &[]).await;
    cluster.leader().await;
    let writer = cluster.client();
    // One client per node: each take enters at its own node and follows that node's
    // redirect (or forward) to the leader by itself.
    let takers: Vec<Arc<tandem_client::Client>> = (0..cluster.len())
        .map(|i| Arc::new(cluster.client_for(&[i])))
        .collect();

    for round in 0..ROUNDS {
        let path = format!("/v1/cache/jobs/job-{round}");
        let value = format!("payload for round {round}");
        let stored = writer
            .put_bytes(&path, value.clone().into_bytes())
            .await
            .expect("put answered");
        assert!(stored.status.is_success(), "round {round}: {stored:?}");

        let start_together = Arc::new(Barrier::new(takers.len()));
        let tasks: Vec<_> = takers
            .iter()
            .map(|taker| {
                let (taker, barrier) = (taker.clone(), start_together.clone());
                let take_path = format!("{path}/take");
                tokio::spawn(async move {
                    barrier.wait().await;
                    taker.send(Method::POST, &take_path, None, "").await
                })
            })
            .collect();
        let mut replies = Vec::new();
        for (i, task) in tasks.into_iter().enumerate() {
            let reply = task
                .await
                .expect("the take task did not panic")
                .unwrap_or_else(|e| panic!("round {round}: take via node index {i}: {e}"));
            replies.push(HttpReply::from_client(
                format!("take via node index {i}"),
                reply,
            ));
        }

        let winners: Vec<&HttpReply> = replies.iter().filter(|r| r.status == 200).collect();
        assert_eq!(
            winners.len(),
            1,
            "round {round}: exactly one take succeeds; answers: {:?}",
            replies
                .iter()
                .map(|r| (r.status.as_u16(), r.text()))
                .collect::<Vec<_>>()
        );
        assert_eq!(
            winners[0].text(),
            value,
            "round {round}: the winner got the value"
        );
        for loser in replies.iter().filter(|r| r.status != 200) {
            assert_eq!(
                loser.expect_api_error(404).code,
                "not_found",
                "round {round}"
            );
        }
        let after = writer.get(&path).await.expect("get answered");
        assert_eq!(
            after.status, 404,
            "round {round}: the entry is gone after the take"
        );
    }
}
