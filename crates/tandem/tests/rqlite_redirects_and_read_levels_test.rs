//! A standby forwards rqlite requests to the active node, or with `?redirect` sends the client
//! there with a 301; `?level=none` reads the standby's own copy, bounded by `freshness`; the
//! other levels are served by the active node.

use std::path::Path;

use reqwest::Method;
use serde_json::json;
use tandem_testkit::{wait_until, Cluster, HttpReply, API_SECRET, DEADLINE};

fn tandem() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_tandem"))
}

#[tokio::test(flavor = "multi_thread")]
async fn standbys_forward_redirect_and_read_at_the_level_asked() {
    let mut cluster = Cluster::start(tandem(), 3, &[]).await;
    let active = cluster.leader().await;
    let followers = cluster.followers().await;
    let (standby, other) = (followers[0], followers[1]);
    let body = |sql: &str| Some(("application/json", json!([sql]).to_string().into_bytes()));

    // Right after the election a forwarded write can still meet the active role moving (503);
    // the table is made once one goes through.
    let mut created = None;
    wait_until(DEADLINE, "a forwarded write", async || {
        let reply = cluster
            .rqlite(
                standby,
                Method::POST,
                "/db/execute",
                body("CREATE TABLE IF NOT EXISTS t (n INTEGER)"),
            )
            .await;
        let done = reply.status == 200;
        created = Some(reply);
        done
    })
    .await;
    assert_eq!(
        created.unwrap().header("tandem-forwarded-via"),
        Some(cluster.node_id(standby).to_string().as_str())
    );

    // ?redirect: a 301 to the active node's API, which the client follows with its credentials.
    let reply = cluster
        .rqlite(
            standby,
            Method::POST,
            "/db/execute?redirect",
            body("INSERT INTO t VALUES (1)"),
        )
        .await
        .expect_status(301);
    let location = reply.header("location").unwrap().to_string();
    assert_eq!(
        location,
        format!("{}/db/execute?redirect", cluster.api_url(active))
    );
    let followed = cluster
        .http()
        .post(&location)
        .basic_auth("app", Some(API_SECRET))
        .header("content-type", "application/json")
        .body(r#"["INSERT INTO t VALUES (1)"]"#)
        .send()
        .await
        .unwrap();
    HttpReply::read(location, followed)
        .await
        .unwrap()
        .expect_status(200);

    // Every level answers; only none is served by the standby itself.
    let served_by = |reply: &HttpReply| reply.header("tandem-node-id").unwrap().to_string();
    for level in ["none", "weak", "linearizable", "strong", "auto"] {
        let path = format!("/db/query?level={level}&q=SELECT%20count(*)%20FROM%20t");
        let reply = wait_for_row(&cluster, standby, &path).await;
        let expected = if level == "none" { standby } else { active };
        assert_eq!(
            served_by(&reply),
            cluster.node_id(expected).to_string(),
            "level={level}"
        );
    }
    let reply = cluster
        .rqlite(
            standby,
            Method::POST,
            "/db/request?level=none",
            body("INSERT INTO t VALUES (2)"),
        )
        .await
        .expect_api_error(400);
    assert!(reply.message.contains("drop level=none"), "{reply:?}");

    // Cut the standby off: level=none still reads its copy, but not with a freshness bound it
    // no longer meets, and /readyz says it is not ready.
    cluster.pause(active);
    cluster.pause(other);
    wait_until(
        DEADLINE,
        "a read bounded to 1s of freshness to be stale",
        async || {
            let reply = cluster
                .rqlite(
                    standby,
                    Method::GET,
                    "/db/query?level=none&freshness=1s&q=SELECT%20count(*)%20FROM%20t",
                    None,
                )
                .await
                .expect_status(200);
            reply.json() == json!({"error": "stale read"})
        },
    )
    .await;
    let local = cluster
        .rqlite(
            standby,
            Method::GET,
            "/db/query?level=none&q=SELECT%20count(*)%20FROM%20t",
            None,
        )
        .await
        .expect_status(200)
        .json();
    assert_eq!(local["results"][0]["values"], json!([[1]]));
    let ready = cluster.rqlite(standby, Method::GET, "/readyz", None).await;
    assert_eq!(ready.status, 503, "{}", ready.text());
    cluster
        .rqlite(standby, Method::GET, "/readyz?noleader", None)
        .await
        .expect_status(200);
    cluster.resume(active);
    cluster.resume(other);
    wait_until(DEADLINE, "the standby to be ready again", async || {
        cluster
            .rqlite(standby, Method::GET, "/readyz", None)
            .await
            .status
            == 200
    })
    .await;
    cluster.assert_no_panics();
}

/// Reads `path` on node `i` until it shows the row written before (a standby may apply it a
/// moment after the active node answered).
async fn wait_for_row(cluster: &Cluster, i: usize, path: &str) -> HttpReply {
    let mut last = None;
    wait_until(DEADLINE, path, async || {
        let reply = cluster.rqlite(i, Method::GET, path, None).await;
        let done = reply.status == 200 && reply.json()["results"][0]["values"] == json!([[1]]);
        last = Some(reply);
        done
    })
    .await;
    last.unwrap()
}
