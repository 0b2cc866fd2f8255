//! Membership changes the cluster refuses, each with a JSON error that names what was wrong and
//! what to do, and a CLI that exits non-zero: removing the last voter, an unknown id, an id
//! already in use, malformed requests, a change while another is in progress, and an added
//! server that never answers.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::json;
use tandem_testkit::{free_ports, wait_until, Cluster, HttpReply, DEADLINE};

fn tandem() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_tandem"))
}

/// The CLI failed, saying `expected`.
fn refused(output: &std::process::Output, expected: &str) {
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "succeeded: {stderr}");
    assert!(stderr.contains(expected), "{stderr}");
}

/// The API answered `status` with the error code `code`.
#[track_caller]
fn answered(reply: HttpReply, status: u16, code: &str) {
    assert_eq!(
        reply.expect_api_error(status).code,
        code,
        "{}",
        reply.text()
    );
}

async fn put(cluster: &Cluster, path: &str, body: &serde_json::Value) -> HttpReply {
    let body = Some(("application/json", body.to_string().into_bytes()));
    cluster.send(0, Method::PUT, path, body).await
}

#[tokio::test(flavor = "multi_thread")]
async fn membership_changes_that_cannot_go_ahead_are_refused_with_what_to_do() {
    let cluster = Cluster::start(tandem(), 1, &[]).await;
    cluster.leader().await;

    refused(
        &cluster.cli(tandem(), &["cluster", "remove", "1"]).await,
        "node 1 is the last voter; a cluster cannot remove its last voter (add another server first)",
    );
    answered(
        cluster.delete(0, "/v1/cluster/members/1").await,
        409,
        "last_voter",
    );

    refused(
        &cluster.cli(tandem(), &["cluster", "remove", "9"]).await,
        "node 9 is not a member of this cluster (members: 1)",
    );
    answered(
        cluster.delete(0, "/v1/cluster/members/9").await,
        404,
        "not_found",
    );

    refused(
        &cluster
            .cli_add(tandem(), 1, "127.0.0.1:1", "127.0.0.1:2")
            .await,
        "node id 1 is already in use by cluster=",
    );
    let same_api = json!({"raft_addr": "127.0.0.1:1", "api_addr": cluster.api_addr(0)});
    answered(
        put(&cluster, "/v1/cluster/members/7", &same_api).await,
        409,
        "member_exists",
    );
    answered(
        put(&cluster, "/v1/cluster/members/seven", &same_api).await,
        400,
        "bad_request",
    );
    let unaddressed = json!({"raft_addr": "nowhere", "api_addr": "127.0.0.1:2"});
    answered(
        put(&cluster, "/v1/cluster/members/7", &unaddressed).await,
        400,
        "bad_request",
    );

    // An add whose server never answers stays under way while the active node waits for it, and
    // meanwhile another change is refused; then the add gives up, naming the silent server, well
    // before the ten minutes a server that answers is given to catch up.
    let ports = free_ports(4).expect("free ports");
    let (absent_raft, absent_api) = (
        format!("127.0.0.1:{}", ports[0]),
        format!("127.0.0.1:{}", ports[1]),
    );
    let add_absent = async {
        let started = Instant::now();
        let output = cluster
            .cli_add(tandem(), 2, &absent_raft, &absent_api)
            .await;
        (output, started.elapsed())
    };
    let meanwhile = async {
        wait_until(DEADLINE, "node 2 to be a learner", async || {
            cluster
                .membership(0)
                .await
                .is_some_and(|(_, learners)| learners == BTreeSet::from([2]))
        })
        .await;
        let (raft_addr, api_addr) = (
            format!("127.0.0.1:{}", ports[2]),
            format!("127.0.0.1:{}", ports[3]),
        );
        refused(
            &cluster.cli_add(tandem(), 3, &raft_addr, &api_addr).await,
            "another membership change is in progress (adding node 2",
        );
        answered(
            cluster.delete(0, "/v1/cluster/members/2").await,
            409,
            "membership_change_in_progress",
        );
    };
    let ((output, took), ()) = tokio::join!(add_absent, meanwhile);
    refused(
        &output,
        "node 2 joined as a learner but has not answered the active node for 20 s",
    );
    assert!(
        took < Duration::from_secs(60),
        "the add of a silent server took {took:?}"
    );
    // It stays a learner, which a remove then takes out.
    assert_eq!(
        cluster.membership(0).await.map(|(_, learners)| learners),
        Some(BTreeSet::from([2]))
    );
    let removed = cluster.cli(tandem(), &["cluster", "remove", "2"]).await;
    assert!(
        removed.status.success(),
        "{}",
        String::from_utf8_lossy(&removed.stderr)
    );
    wait_until(DEADLINE, "node 2 to be gone", async || {
        cluster
            .membership(0)
            .await
            .is_some_and(|(voters, learners)| voters == BTreeSet::from([1]) && learners.is_empty())
    })
    .await;
}
