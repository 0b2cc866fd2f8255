//! rqlite's documented requests, sent to a standby of a 3-node cluster as rqlite clients send
//! them (basic auth), answer what rqlite's documentation shows; `/nodes` and `/status` carry
//! the fields its examples show. The examples are in `rqlite/documented_examples.json`, with
//! where they come from.

use std::path::Path;

use reqwest::Method;
use serde_json::{json, Value};
use tandem_testkit::{wait_until, Cluster, DEADLINE};

fn tandem() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_tandem"))
}

/// Checks that every `time` the documentation shows is a number in `actual`, that `actual` has
/// none the documentation does not show, and then sets both to 0 so the rest compares exactly.
fn even_out_times(documented: &mut Value, actual: &mut Value, at: &str) {
    match (documented, actual) {
        (Value::Object(doc), Value::Object(got)) => {
            assert_eq!(
                doc.contains_key("time"),
                got.contains_key("time"),
                "{at}: `time` is shown in one and not the other"
            );
            if doc.contains_key("time") {
                assert!(got["time"].is_number(), "{at}: time is not a number");
                doc.insert("time".into(), json!(0));
                got.insert("time".into(), json!(0));
            }
            for (key, value) in doc.iter_mut() {
                if let Some(other) = got.get_mut(key) {
                    even_out_times(value, other, &format!("{at}.{key}"));
                }
            }
        }
        (Value::Array(doc), Value::Array(got)) => {
            for (i, (d, g)) in doc.iter_mut().zip(got.iter_mut()).enumerate() {
                even_out_times(d, g, &format!("{at}[{i}]"));
            }
        }
        _ => {}
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn documented_requests_answer_as_documented() {
    let cluster = Cluster::start(tandem(), 3, &[]).await;
    cluster.leader().await;
    let standby = cluster.followers().await[0];
    // Right after the election a forwarded write can still meet the active role moving (503):
    // wait until one goes through, with a table of its own.
    let settle = br#"["CREATE TABLE IF NOT EXISTS settle (x)"]"#.to_vec();
    wait_until(DEADLINE, "a forwarded write", async || {
        let body = Some(("application/json", settle.clone()));
        let reply = cluster
            .rqlite(standby, Method::POST, "/db/execute", body)
            .await;
        reply.status == 200
    })
    .await;
    let examples: Value =
        serde_json::from_str(include_str!("rqlite/documented_examples.json")).unwrap();
    for example in examples["examples"].as_array().unwrap() {
        let what = example["what"].as_str().unwrap();
        let method = Method::from_bytes(example["method"].as_str().unwrap().as_bytes()).unwrap();
        let path = example["path"].as_str().unwrap();
        let body = example["content_type"].as_str().map(|content_type| {
            let bytes = match &example["body"] {
                Value::String(text) => text.clone().into_bytes(),
                json => json.to_string().into_bytes(),
            };
            (content_type, bytes)
        });
        let reply = cluster
            .rqlite(standby, method, path, body)
            .await
            .expect_status(200);
        if let Some(text) = example["documented_text"].as_str() {
            assert_eq!(reply.text(), text, "{what}");
            continue;
        }
        let mut documented = example["documented"].clone();
        if documented.is_null() {
            continue;
        }
        if let Some(messages) = example["sqlite_says"].as_object() {
            for (pointer, message) in messages {
                *documented.pointer_mut(pointer).unwrap() = message.clone();
            }
        }
        assert_eq!(
            reply.header("content-type"),
            Some("application/json; charset=utf-8"),
            "{what}"
        );
        if path.contains("pretty") {
            assert!(
                reply.text().starts_with("{\n    \""),
                "{what}: ?pretty indents by four spaces: {}",
                reply.text()
            );
        }
        let mut actual = reply.json();
        even_out_times(&mut documented, &mut actual, what);
        assert_eq!(actual, documented, "{what}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn nodes_and_status_carry_the_documented_fields() {
    let cluster = Cluster::start(tandem(), 3, &[]).await;
    let leader = cluster.leader().await;
    let standby = cluster.followers().await[0];

    // The documented /nodes example: a map from node id to api_addr, addr, reachable, leader.
    // A standby forwards /nodes, once it has heard who is active.
    wait_until(
        DEADLINE,
        "the standby to know the active node",
        async || {
            cluster
                .rqlite(standby, Method::GET, "/nodes", None)
                .await
                .status
                == 200
        },
    )
    .await;
    let nodes = cluster
        .rqlite(standby, Method::GET, "/nodes?pretty", None)
        .await
        .expect_status(200)
        .json();
    let nodes = nodes.as_object().unwrap();
    assert_eq!(nodes.len(), 3, "{nodes:?}");
    for i in 0..3 {
        let id = cluster.node_id(i).to_string();
        let node = &nodes[&id];
        assert_eq!(node["id"], json!(id));
        assert_eq!(node["api_addr"], json!(cluster.api_url(i)));
        assert_eq!(node["addr"], json!(cluster.raft_addr(i)));
        assert_eq!(node["reachable"], json!(true), "{node}");
        assert_eq!(node["leader"], json!(i == leader), "{node}");
        assert_eq!(node["voter"], json!(true));
        assert!(node["version"].is_string());
    }
    let listed = cluster
        .rqlite(standby, Method::GET, "/nodes?ver=2&nonvoters", None)
        .await
        .expect_status(200)
        .json();
    let ids: Vec<String> = listed["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["id"].as_str().unwrap().to_string())
        .collect();
    let mut expected: Vec<String> = (0..3).map(|i| cluster.node_id(i).to_string()).collect();
    expected.sort();
    assert_eq!(ids, expected);

    // The documented /status example shows build.version, http.auth, node.start_time and
    // node.uptime; rqlite clients find the leader at store.leader.
    let status = cluster
        .rqlite(standby, Method::GET, "/status?pretty", None)
        .await
        .expect_status(200)
        .json();
    assert!(status["build"]["version"].is_string(), "{status}");
    assert_eq!(status["http"]["auth"], "enabled");
    assert!(status["node"]["start_time"].is_string(), "{status}");
    assert!(status["node"]["uptime"].is_string(), "{status}");
    assert_eq!(
        status["store"]["leader"]["addr"],
        json!(cluster.raft_addr(leader))
    );
    assert_eq!(status["store"]["raft"]["state"], "Follower");
    let leader_only = cluster
        .rqlite(standby, Method::GET, "/status?key=store.leader", None)
        .await
        .expect_status(200)
        .json();
    assert_eq!(
        leader_only,
        json!({"node_id": cluster.node_id(leader).to_string(), "addr": cluster.raft_addr(leader)})
    );
}
