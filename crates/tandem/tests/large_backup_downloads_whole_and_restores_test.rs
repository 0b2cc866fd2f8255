//! A backup of a state several snapshot chunks large is streamed from a file on the active node,
//! arrives whole (the CLI checks it against the announced length), and restoring it brings every
//! key back.

use std::path::Path;

use tandem_testkit::Cluster;

fn tandem() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_tandem"))
}

const KEYS: usize = 4000;
const VALUE_BYTES: usize = 1000;
/// The default snapshot chunk size: the backup is larger.
const CHUNK_BYTES: u64 = 3 * 1024 * 1024;

#[tokio::test(flavor = "multi_thread")]
async fn a_backup_larger_than_a_chunk_arrives_whole_and_restores() {
    // A heartbeat is also the deadline of one append: a longer one lets appends of many values
    // through on a busy machine. Elections are not what this test is about.
    let timing = ["--heartbeat", "300ms", "--election-timeout-min", "1s"];
    let mut cluster = Cluster::start(
        tandem(),
        3,
        &[&timing[..], &["--election-timeout-max", "2s"]].concat(),
    )
    .await;
    let leader = cluster.leader().await;
    let (keys, value_bytes) = (KEYS.to_string(), VALUE_BYTES.to_string());
    let fill = ["bench", "fill", "--concurrency", "16", "--prefix", "kept/"];
    let filled = cluster
        .cli(
            tandem(),
            &[&fill[..], &["--keys", &keys, "--value-size", &value_bytes]].concat(),
        )
        .await;
    assert!(filled.status.success(), "{filled:?}");

    // Asked of a standby, the download comes from the active node (redirected, not relayed).
    let standby = cluster.followers().await[0];
    let folder = tempfile::tempdir().expect("temporary folder");
    let file = folder.path().join("backup.db");
    let output = cluster.download_backup(tandem(), standby, &file).await;
    let said = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "snapshot backup: {said}");
    let length = std::fs::metadata(&file).expect("the backup file").len();
    assert!(
        length > CHUNK_BYTES,
        "the backup ({length} bytes) is larger than a snapshot chunk"
    );
    assert!(
        said.contains(&format!("({length} bytes, up to log index")),
        "the CLI wrote every byte the server announced: {said}"
    );
    let leftovers: Vec<_> = std::fs::read_dir(cluster.data_dir(leader).join("snapshot"))
        .expect("the snapshot folder")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().to_string())
        .filter(|name| name.starts_with("backup-"))
        .collect();
    assert!(
        leftovers.is_empty(),
        "no backup file stays behind: {leftovers:?}"
    );

    for i in 0..cluster.len() {
        let restored = cluster.restore(tandem(), i, &file).await;
        assert!(restored.status.success(), "{restored:?}");
    }
    for i in 0..cluster.len() {
        cluster.start_node(i).await;
    }
    let leader = cluster.leader().await;
    cluster.get_when_serving(leader, "/v1/kv/kept/0").await;
    let restored = cluster
        .keys_under(leader, "kept/")
        .await
        .expect("the restored cluster lists its keys");
    assert_eq!(restored.len(), KEYS, "keys after the restore");
    for n in [0, KEYS / 2, KEYS - 1] {
        let value = cluster
            .get_when_serving(leader, &format!("/v1/kv/kept/{n}"))
            .await
            .expect_status(200);
        assert_eq!(value.body, vec![b'x'; VALUE_BYTES], "value of kept/{n}");
    }
}
