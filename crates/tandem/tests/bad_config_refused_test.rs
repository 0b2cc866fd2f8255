//! Settings that make start-up impossible stop it at once: exit code 2 and a message on stderr
//! that names the problem.

use std::path::Path;
use std::time::Duration;

use tandem_testkit::{free_ports, local_node_list, run_to_exit, tandem_command};
use tempfile::TempDir;

fn tandem() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_tandem"))
}

const GOOD_SECRET: &str = "sixteen-chars-or-more";

/// A three-node list on free ports.
fn three_nodes() -> String {
    local_node_list(3).expect("free ports on 127.0.0.1").0
}

/// Runs `tandem server <args>` in a fresh folder and answers its stderr, after checking that
/// it exited with code 2 in good time and wrote no data.
async fn refused(args: &[&str]) -> String {
    let dir = TempDir::new().expect("temporary folder");
    let data = dir.path().join("data");
    let mut command = tandem_command(tandem());
    command
        .current_dir(dir.path())
        .arg("server")
        .arg("--data-dir")
        .arg(&data)
        .args(args);
    let output = run_to_exit(command, Duration::from_secs(20)).await;
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert_eq!(
        output.status.code(),
        Some(2),
        "tandem server {args:?} should exit with code 2; stderr: {stderr}"
    );
    assert!(
        !data.join("raft.redb").exists(),
        "a refused start wrote a Raft log"
    );
    stderr
}

#[tokio::test(flavor = "multi_thread")]
async fn a_node_id_missing_from_the_list_is_refused() {
    let nodes = three_nodes();
    let stderr = refused(&[
        "--node-id",
        "4",
        "--nodes",
        &nodes,
        "--secret-raft",
        GOOD_SECRET,
        "--secret-api",
        GOOD_SECRET,
    ])
    .await;
    assert!(stderr.contains("is not in TANDEM_NODES"), "{stderr}");
    assert!(
        stderr.contains("ids: 1, 2, 3"),
        "names the known ids: {stderr}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn duplicate_node_ids_are_refused() {
    let ports = free_ports(4).expect("free ports on 127.0.0.1");
    let nodes = format!(
        "1 127.0.0.1:{} 127.0.0.1:{}\n1 127.0.0.1:{} 127.0.0.1:{}",
        ports[0], ports[1], ports[2], ports[3]
    );
    let stderr = refused(&[
        "--node-id",
        "1",
        "--nodes",
        &nodes,
        "--secret-raft",
        GOOD_SECRET,
        "--secret-api",
        GOOD_SECRET,
    ])
    .await;
    assert!(stderr.contains("node id 1 appears twice"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_malformed_node_line_is_refused() {
    let ports = free_ports(3).expect("free ports on 127.0.0.1");
    // The second line lacks its API address.
    let nodes = format!(
        "1 127.0.0.1:{} 127.0.0.1:{}\n2 127.0.0.1:{}",
        ports[0], ports[1], ports[2]
    );
    let stderr = refused(&[
        "--node-id",
        "1",
        "--nodes",
        &nodes,
        "--secret-raft",
        GOOD_SECRET,
        "--secret-api",
        GOOD_SECRET,
    ])
    .await;
    assert!(stderr.contains("node list line 2"), "{stderr}");
    assert!(stderr.contains("id addr_cluster addr_api"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_secret_shorter_than_16_characters_is_refused() {
    let nodes = three_nodes();
    let stderr = refused(&[
        "--node-id",
        "1",
        "--nodes",
        &nodes,
        "--secret-raft",
        GOOD_SECRET,
        "--secret-api",
        "too-short",
    ])
    .await;
    assert!(stderr.contains("--secret-api"), "{stderr}");
    assert!(stderr.contains("at least 16"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unknown_key_in_the_config_file_is_refused() {
    let dir = TempDir::new().expect("temporary folder");
    let config = dir.path().join("tandem.toml");
    std::fs::write(&config, "heartbeat_ms = 50\nhearbeat_ms = 50\n").expect("write config");
    let ports = free_ports(2).expect("free ports on 127.0.0.1");
    let nodes = format!("1 127.0.0.1:{} 127.0.0.1:{}", ports[0], ports[1]);
    let config_arg = config.display().to_string();
    let stderr = refused(&["--config", &config_arg, "--nodes", &nodes]).await;
    assert!(stderr.contains("hearbeat_ms"), "{stderr}");
    assert!(stderr.contains(&config_arg), "names the file: {stderr}");
}

#[tokio::test(flavor = "multi_thread")]
async fn impossible_backend_combinations_are_refused() {
    let stderr = refused(&["--ha-storage", "etcd"]).await;
    assert!(
        stderr.contains("ha_storage = etcd needs storage = postgres"),
        "{stderr}"
    );
    let stderr = refused(&["--storage", "postgres"]).await;
    assert!(
        stderr.contains("storage = postgres needs postgres_url"),
        "{stderr}"
    );
    let stderr = refused(&[
        "--storage",
        "postgres",
        "--postgres-url",
        "postgres://tandem@127.0.0.1:1/tandem",
        "--ha-storage",
        "etcd",
    ])
    .await;
    assert!(stderr.contains("needs etcd_endpoints"), "{stderr}");
    let stderr = refused(&["--postgres-url", "postgres://tandem@127.0.0.1:1/tandem"]).await;
    assert!(stderr.contains("postgres_url is set"), "{stderr}");
}
