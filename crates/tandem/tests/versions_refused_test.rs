//! A server refuses what it cannot read rather than misread it: a peer that speaks another
//! cluster protocol gets a 409 naming both versions, and a data folder written by a newer
//! release stops start-up with a message.

use std::path::Path;

use tandem_testkit::{
    cluster_port_client, free_ports, run_to_exit, tandem_command, Cluster, CLUSTER_SECRET,
    CLUSTER_SECRET_HEADER, DEADLINE,
};

fn tandem() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_tandem"))
}

#[tokio::test]
async fn a_peer_speaking_another_cluster_protocol_is_refused_with_both_versions() {
    let cluster = Cluster::start(tandem(), 1, &[]).await;
    let http = cluster_port_client(Some(CLUSTER_SECRET));
    let url = format!("{}/raft/probe", cluster.raft_url(0));
    let ask = |protocol: Option<&'static str>| {
        let mut request = http
            .post(&url)
            .header(CLUSTER_SECRET_HEADER, CLUSTER_SECRET);
        if let Some(protocol) = protocol {
            request = request.header("x-tandem-cluster-protocol", protocol);
        }
        request.send()
    };
    let newer = ask(Some("2")).await.expect("an answer");
    assert_eq!(newer.status().as_u16(), 409);
    let body = newer.text().await.expect("a body");
    assert!(
        body.contains("protocol_mismatch")
            && body.contains("speaks cluster protocol 1 and the peer speaks 2"),
        "{body}"
    );
    // The same protocol, or none (a node from before the header), is served.
    for protocol in [Some("1"), None] {
        let answer = ask(protocol).await.expect("an answer");
        assert!(
            answer.status().is_success(),
            "{protocol:?}: {}",
            answer.status()
        );
    }
}

#[tokio::test]
async fn a_data_folder_from_a_newer_release_stops_start_up() {
    let folder = tempfile::tempdir().expect("a folder");
    let ports = free_ports(2).expect("free ports");
    let nodes = format!("1 127.0.0.1:{} 127.0.0.1:{}", ports[0], ports[1]);
    std::fs::write(folder.path().join("FORMAT"), "tandem data format 2\n").expect("a marker");
    let mut start = tandem_command(tandem());
    start
        .args(["server", "--nodes", &nodes, "--data-dir"])
        .arg(folder.path());
    let output = run_to_exit(start, DEADLINE).await;
    let said = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "refused: {said}");
    assert!(said.contains("newer release (data format 2"), "{said}");
    assert!(
        !folder.path().join("raft.redb").exists(),
        "nothing was written into the folder"
    );
}
