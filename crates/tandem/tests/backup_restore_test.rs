//! A backup downloaded from a running cluster is consistent (it holds every write acknowledged
//! before it was asked for), and restoring it on every node of a fresh cluster brings the data
//! back, with revisions and fencing tokens that keep growing.

use std::path::Path;
use std::time::Duration;

use serde_json::json;
use tandem_testkit::{run_to_exit, tandem_command, Cluster};

fn tandem() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_tandem"))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_backup_restored_on_every_node_brings_the_data_back() {
    let mut cluster = Cluster::start(tandem(), 3, &[]).await;
    let client = cluster.client();
    let mut revision = 0;
    for n in 0..20 {
        let reply = client
            .put_bytes(&format!("/v1/kv/kept-{n}"), format!("v{n}").into_bytes())
            .await
            .expect("write");
        revision = reply.json().expect("JSON")["revision"]
            .as_u64()
            .expect("revision");
    }
    let sql = json!({"statements": [
        "CREATE TABLE accounts (id INTEGER PRIMARY KEY, balance INTEGER)",
        {"sql": "INSERT INTO accounts (balance) VALUES (?), (?)", "params": [70, 30]}
    ]});
    let executed = client
        .post_json("/v1/sql/execute", &sql)
        .await
        .expect("SQL");
    assert!(
        executed.status.is_success(),
        "{}",
        String::from_utf8_lossy(&executed.body)
    );

    // Asked of a standby, the backup is still consistent: it is made by the active node.
    let standby = cluster.followers().await[0];
    let backup = cluster.get(standby, "/v1/backup").await.expect_status(200);
    let applied: u64 = backup
        .header("tandem-applied-index")
        .and_then(|v| v.parse().ok())
        .expect("the backup names the log index it reflects");
    assert!(
        applied > 20,
        "the backup reflects the writes (index {applied})"
    );
    assert!(
        backup.body.starts_with(b"SQLite format 3\0"),
        "the backup is a SQLite file"
    );
    // The CLI streams the same download to a file, and that file is what gets restored.
    let folder = tempfile::tempdir().expect("temporary folder");
    let file = folder.path().join("backup.db");
    let output = cluster.download_backup(tandem(), standby, &file).await;
    let said = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "snapshot backup: {said}");
    assert!(said.contains("bytes, up to log index"), "{said}");
    let saved = std::fs::read(&file).expect("the downloaded backup");
    assert!(saved.starts_with(b"SQLite format 3\0"), "a SQLite file");
    assert!(
        !file.with_extension("partial").exists(),
        "the partial download was renamed"
    );

    // Written after the backup: must not come back.
    client
        .put_bytes("/v1/kv/after-backup", b"x".to_vec())
        .await
        .expect("write");

    for i in 0..cluster.len() {
        let output = cluster.restore(tandem(), i, &file).await;
        assert!(
            output.status.success(),
            "restore: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        // Restoring into a folder that already holds a node's data is refused.
        let mut again = tandem_command(tandem());
        again
            .args(["snapshot", "restore", "--backup"])
            .arg(&file)
            .arg("--data-dir")
            .arg(cluster.data_dir(i));
        let refused = run_to_exit(again, Duration::from_secs(30)).await;
        assert!(
            !refused.status.success(),
            "a second restore into the same folder is refused"
        );
        assert!(String::from_utf8_lossy(&refused.stderr).contains("already holds"));
    }
    for i in 0..cluster.len() {
        cluster.start_node(i).await;
    }
    let leader = cluster.leader().await;
    for n in [0, 7, 19] {
        let value = cluster
            .get_when_serving(leader, &format!("/v1/kv/kept-{n}"))
            .await;
        assert_eq!(value.expect_status(200).text(), format!("v{n}"));
    }
    cluster
        .get(leader, "/v1/kv/after-backup")
        .await
        .expect_status(404);
    let rows = cluster
        .post_json(
            leader,
            "/v1/sql/query",
            &json!({"sql": "SELECT sum(balance) FROM accounts"}),
        )
        .await
        .expect_status(200);
    assert_eq!(rows.json()["rows"], json!([[100]]));
    // Revisions continue from where the backup left them: they never go backwards.
    let next = cluster
        .put(leader, "/v1/kv/new-after-restore", "y")
        .await
        .expect_status(200);
    assert!(next.json()["revision"].as_u64().expect("revision") > revision);
    // Every node holds the restored data.
    for i in 0..cluster.len() {
        let stale = cluster
            .get_when_serving(i, "/v1/kv/kept-3?consistency=stale")
            .await;
        assert_eq!(stale.text(), "v3", "node index {i}");
    }
}
