//! What rqlite clients send wrong is refused with a JSON error and the right status, and
//! nothing panics; a failing statement does to the rest of its request what rqlite does (the
//! others still run, or with `?transaction` none of them stays); nondeterministic and unsafe
//! statements are refused as on `/v1/sql`.

use std::path::Path;

use reqwest::Method;
use serde_json::{json, Value};
use tandem_testkit::{Cluster, HttpReply};

fn tandem() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_tandem"))
}

async fn post(cluster: &Cluster, path: &str, body: &[u8]) -> HttpReply {
    cluster
        .rqlite(
            0,
            Method::POST,
            path,
            Some(("application/json", body.to_vec())),
        )
        .await
}

async fn names(cluster: &Cluster) -> Value {
    let reply = post(
        cluster,
        "/db/query",
        br#"["SELECT name FROM t ORDER BY name"]"#,
    )
    .await
    .expect_status(200)
    .json();
    reply["results"][0]["values"].clone()
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_requests_are_refused_with_their_reason() {
    let cluster = Cluster::start(tandem(), 1, &[]).await;
    cluster.leader().await;
    post(
        &cluster,
        "/db/execute",
        br#"["CREATE TABLE t (name TEXT NOT NULL)"]"#,
    )
    .await
    .expect_status(200);

    let refusals: [(&str, &[u8], u16, &str); 9] = [
        ("/db/execute", b"[\"INSERT INTO t", 400, "bad JSON body"),
        (
            "/db/execute",
            br#"{"sql": "SELECT 1"}"#,
            400,
            "JSON array of statements",
        ),
        ("/db/execute", b"[]", 400, "no statements"),
        (
            "/db/execute",
            br#"[["INSERT INTO t VALUES (?)", {"a": {"b": 1}}]]"#,
            400,
            "cannot be an object",
        ),
        (
            "/db/execute",
            br#"[["INSERT INTO t VALUES (?)", [1, 999]]]"#,
            400,
            "byte values",
        ),
        (
            "/db/execute?bogus",
            br#"["SELECT 1"]"#,
            400,
            "unknown query parameter \"bogus\"",
        ),
        (
            "/db/execute?queue",
            br#"["SELECT 1"]"#,
            400,
            "queued writes are not supported",
        ),
        (
            "/db/query?freshness_strict",
            br#"["SELECT 1"]"#,
            400,
            "requires freshness",
        ),
        (
            "/db/query?level=none&freshness=soon",
            br#"["SELECT 1"]"#,
            400,
            "not a duration",
        ),
    ];
    for (path, body, status, words) in refusals {
        let error = post(&cluster, path, body).await.expect_api_error(status);
        assert!(error.message.contains(words), "{path}: {error:?}");
    }
    let error = cluster
        .rqlite(0, Method::GET, "/db/query", None)
        .await
        .expect_api_error(400);
    assert!(error.message.contains("needs the query in q"), "{error:?}");
    cluster
        .rqlite(0, Method::GET, "/db/execute", None)
        .await
        .expect_api_error(405);

    // A wrong password, and none at all.
    let url = format!("{}/db/query?q=SELECT%201", cluster.api_url(0));
    for request in [
        cluster.http().get(&url).basic_auth("app", Some("wrong")),
        cluster.http().get(&url),
    ] {
        let reply = HttpReply::read(url.clone(), request.send().await.unwrap())
            .await
            .unwrap();
        let error = reply.expect_api_error(401);
        assert!(error.message.contains("basic auth"), "{error:?}");
    }

    // Refused statements answer in their place, as rqlite's own errors do.
    let reply = post(
        &cluster,
        "/db/execute",
        br#"["INSERT INTO t VALUES (random())", "INSERT INTO t VALUES (datetime('now'))", "PRAGMA journal_mode=DELETE", "BEGIN"]"#,
    )
    .await
    .expect_status(200)
    .json();
    let errors: Vec<&str> = reply["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["error"].as_str().unwrap_or_else(|| panic!("{reply}")))
        .collect();
    assert!(errors[0].contains("random()"), "{errors:?}");
    assert!(errors[1].contains("clock"), "{errors:?}");
    assert!(errors[2].contains("PRAGMA"), "{errors:?}");
    assert!(errors[3].contains("transaction control"), "{errors:?}");
    let reply = post(
        &cluster,
        "/db/query",
        br#"["INSERT INTO t VALUES ('x')", "PRAGMA wal_checkpoint"]"#,
    )
    .await
    .expect_status(200)
    .json();
    let query_errors = reply["results"].as_array().unwrap();
    assert!(
        query_errors[0]["error"]
            .as_str()
            .unwrap()
            .starts_with("attempt to change database via query operation"),
        "{reply}"
    );
    assert!(
        query_errors[1]["error"]
            .as_str()
            .unwrap()
            .contains("PRAGMA"),
        "{reply}"
    );
    assert_eq!(names(&cluster).await, Value::Null, "nothing was written");

    // Without ?transaction the other statements run; with it, none stays and the request ends
    // at the failing one.
    let three = |first: &str, last: &str| {
        json!([
            format!("INSERT INTO t VALUES ('{first}')"),
            "INSERT INTO t VALUES (NULL)",
            format!("INSERT INTO t VALUES ('{last}')"),
        ])
        .to_string()
    };
    let results = |reply: HttpReply| reply.expect_status(200).json()["results"].clone();
    let each = results(post(&cluster, "/db/execute", three("a", "b").as_bytes()).await);
    assert_eq!(each[0]["rows_affected"], 1, "{each}");
    assert!(
        each[1]["error"].as_str().unwrap().contains("NOT NULL"),
        "{each}"
    );
    assert_eq!(each[2]["rows_affected"], 1, "{each}");
    assert_eq!(names(&cluster).await, json!([["a"], ["b"]]));
    let path = "/db/execute?transaction";
    let all = results(post(&cluster, path, three("c", "d").as_bytes()).await);
    assert_eq!(
        all.as_array().unwrap().len(),
        2,
        "the request ends at the failure: {all}"
    );
    assert!(
        all[1]["error"].as_str().unwrap().contains("NOT NULL"),
        "{all}"
    );
    assert_eq!(names(&cluster).await, json!([["a"], ["b"]]), "c was undone");
    let mixed = results(
        post(
            &cluster,
            "/db/request?transaction",
            br#"["INSERT INTO t VALUES ('e')", "SELECT count(*) FROM t", "SELECT * FROM nothing"]"#,
        )
        .await,
    );
    assert_eq!(mixed[1]["values"], json!([[3]]), "{mixed}");
    assert_eq!(names(&cluster).await, json!([["a"], ["b"]]), "e was undone");

    cluster.assert_no_panics();
}
