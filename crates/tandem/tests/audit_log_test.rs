//! `GET /v1/audit` records who changed membership, credentials, signing keys, join tokens and
//! agents' revocation, and when; the log is replicated, so every server shows the same entries,
//! and `since` pages through it.

use std::path::Path;

use reqwest::Method;
use serde_json::{json, Value};
use tandem_testkit::{
    join_token, wait_for_agent_states, wait_until, AgentProcess, Cluster, DEADLINE,
};

fn tandem() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_tandem"))
}

fn actions(entries: &Value) -> Vec<(String, String)> {
    entries
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| {
            (
                e["who"].as_str().unwrap_or_default().to_string(),
                e["action"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_audit_log_names_who_changed_what() {
    let cluster = Cluster::start(tandem(), 3, &[]).await;
    let leader = cluster.leader().await;
    // Each server publishes its first signing key as itself.
    wait_until(DEADLINE, "three audited key publications", async || {
        let log = cluster.get(leader, "/v1/audit").await.json();
        actions(&log["entries"])
            .iter()
            .filter(|(who, action)| who.starts_with("node ") && action == "key.publish")
            .count()
            == 3
    })
    .await;
    let start = cluster.get(leader, "/v1/audit").await.json()["last_seq"]
        .as_u64()
        .expect("a sequence number");

    let ops = cluster
        .post_json(
            leader,
            "/v1/auth/credentials",
            &json!({"name": "ops", "grants": ["keys:admin", "agents:admin"]}),
        )
        .await
        .expect_status(201)
        .json()["credential"]
        .as_str()
        .expect("a credential")
        .to_string();
    // The credential rotates a key and revokes an agent: the log names it, not root.
    let token = join_token(&cluster, "audited", json!({})).await;
    let _agent = AgentProcess::start(tandem(), &cluster, "a-1", "audited", Some(&token), &[]);
    wait_for_agent_states(&cluster, &["a-1"], "passing").await;
    let standby = (leader + 1) % cluster.len();
    for path in ["/v1/keys/rotate", "/v1/agents/a-1/revoke"] {
        let body = Some(("application/json", b"{}".to_vec()));
        cluster
            .send_with(standby, Method::POST, path, body, &ops)
            .await
            .expect_status(200);
    }
    cluster
        .delete(leader, "/v1/auth/credentials/ops")
        .await
        .expect_status(200);

    let expected = [
        ("root", "credential.create"),
        ("root", "join_token.create"),
        ("ops", "key.publish"),
        ("ops", "key.retire"),
        ("ops", "agent.revoke"),
        ("root", "credential.revoke"),
    ];
    // Replicated: every server shows the same entries.
    for i in 0..cluster.len() {
        wait_until(DEADLINE, "every server shows the changes", async || {
            let log = cluster.get(i, &format!("/v1/audit?since={start}")).await;
            let found = actions(&log.json()["entries"]);
            let found: Vec<(&str, &str)> = found
                .iter()
                .map(|(w, a)| (w.as_str(), a.as_str()))
                .collect();
            found == expected
        })
        .await;
    }
    let page = cluster
        .get(leader, &format!("/v1/audit?since={start}&limit=2"))
        .await
        .json();
    assert_eq!(page["entries"].as_array().map(Vec::len), Some(2));
    let entry = &page["entries"][0];
    assert_eq!(entry["detail"]["name"], "ops");
    assert!(entry["at_ms"].as_i64().is_some_and(|at| at > 0));
    assert!(entry["detail"].get("secret_sha256").is_none());

    // A server taken out of the cluster: the servers that stay record who did it.
    let removed = (leader + 2) % cluster.len();
    let removed_id = cluster.node_id(removed);
    cluster.remove_member(removed).await;
    for i in (0..cluster.len()).filter(|&i| i != removed) {
        wait_until(DEADLINE, "the removal in the audit log", async || {
            let log = cluster.get(i, "/v1/audit").await.json();
            log["entries"].as_array().into_iter().flatten().any(|e| {
                e["who"] == "root"
                    && e["action"] == "member.remove"
                    && e["detail"]["node_id"] == removed_id
            })
        })
        .await;
    }
    cluster.assert_no_panics();
}
