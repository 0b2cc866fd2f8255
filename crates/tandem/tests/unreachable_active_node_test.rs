//! A standby that cannot reach the active node answers promptly — a redirect while it still
//! believes in that node, 503 with Retry-After once no active node is known — and never hangs.

use std::path::Path;
use std::time::{Duration, Instant};

use reqwest::Method;
use tandem_testkit::{wait_for, Cluster};

fn tandem() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_tandem"))
}

/// Longest a standby may take to answer when the active node is gone.
const PROMPT: Duration = Duration::from_secs(7);

#[tokio::test(flavor = "multi_thread")]
async fn with_the_active_node_and_quorum_gone_a_standby_answers_503_promptly() {
    let mut cluster = Cluster::start(tandem(), 3, &[]).await;
    let leader = cluster.leader().await;
    let followers = cluster.followers().await;
    let (survivor, other) = (followers[0], followers[1]);
    cluster.kill(leader);
    cluster.kill(other);
    let mut seen = Vec::new();
    let reply = wait_for(
        Duration::from_secs(20),
        "a 503 from the lone standby",
        async || {
            let started = Instant::now();
            let reply = cluster
                .try_send(
                    survivor,
                    Method::PUT,
                    "/v1/kv/orphan",
                    Some(("text/plain", b"x".to_vec())),
                    PROMPT,
                )
                .await
                .expect("the standby answers instead of hanging");
            assert!(
                started.elapsed() < PROMPT,
                "answered after {:?}",
                started.elapsed()
            );
            seen.push(reply.status.as_u16());
            assert!(
                [307, 503].contains(&reply.status.as_u16()),
                "without a quorum a write is redirected or refused, got {} {}",
                reply.status,
                reply.text()
            );
            (reply.status == 503).then_some(reply)
        },
    )
    .await;
    assert_eq!(
        reply.header("retry-after"),
        Some("1"),
        "503 says when to retry"
    );
    reply.expect_api_error(503);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_paused_active_node_does_not_hang_requests_to_standbys() {
    let mut cluster = Cluster::start(tandem(), 3, &[]).await;
    let leader = cluster.leader().await;
    let standby = cluster.followers().await[0];
    cluster.pause(leader);
    let started = Instant::now();
    let reply = cluster
        .try_send(
            standby,
            Method::PUT,
            "/v1/kv/while-paused",
            Some(("text/plain", b"x".to_vec())),
            PROMPT,
        )
        .await
        .expect("the standby answers instead of hanging");
    assert!(
        started.elapsed() < PROMPT,
        "answered after {:?}",
        started.elapsed()
    );
    // Forwarded to the paused node, the request is abandoned when a new active node is elected
    // (503: retry), or it reaches the new active node directly (200).
    assert!(
        [200, 307, 503].contains(&reply.status.as_u16()),
        "got {} {}",
        reply.status,
        reply.text()
    );
    cluster.resume(leader);
    cluster.leader().await;
}
