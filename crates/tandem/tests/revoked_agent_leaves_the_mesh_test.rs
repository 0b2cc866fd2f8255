//! Revoking an agent keeps it out of the mesh: an ingress with a port-forward and two exits of
//! the same route; the exit in use is revoked through the API, and within a deadline the
//! ingress lists no peer and no path through it, while a TCP echo behind the exits is still
//! reached through the forward, now over the other exit.

use std::path::Path;

use serde_json::{json, Value};
use tandem_testkit::mesh::{healthz, path_through, peer_up, selected_next_hops};
use tandem_testkit::{free_ports, join_token, wait_until, AgentProcess, Cluster, DEADLINE};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

fn tandem() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_tandem"))
}

fn start(cluster: &Cluster, name: &str, token: &str, args: Vec<String>) -> AgentProcess {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    AgentProcess::start(tandem(), cluster, name, "mesh", Some(token), &args)
}

/// A TCP server that sends back whatever it reads.
async fn echo_target(addr: &str) -> String {
    let listener = TcpListener::bind(addr).await.expect("bind the echo target");
    let bound = listener.local_addr().expect("its address").to_string();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let (mut read, mut write) = stream.split();
                let _ = tokio::io::copy(&mut read, &mut write).await;
                let _ = write.shutdown().await;
            });
        }
    });
    bound
}

/// One connection through the forward: `message` there and back.
async fn echo_through(forward: &str, message: &[u8]) -> Result<Vec<u8>, String> {
    let exchange = async {
        let mut stream = TcpStream::connect(forward)
            .await
            .map_err(|e| e.to_string())?;
        stream.write_all(message).await.map_err(|e| e.to_string())?;
        stream.shutdown().await.map_err(|e| e.to_string())?;
        let mut back = Vec::new();
        stream
            .read_to_end(&mut back)
            .await
            .map_err(|e| e.to_string())?;
        Ok(back)
    };
    tokio::time::timeout(std::time::Duration::from_secs(3), exchange)
        .await
        .map_err(|_| "no answer within 3s".to_string())?
}

#[tokio::test(flavor = "multi_thread")]
async fn a_revoked_exit_is_cut_off_and_traffic_takes_the_other() {
    let cluster = Cluster::start(tandem(), 1, &[]).await;
    cluster.leader().await;
    let token = join_token(&cluster, "mesh", json!({})).await;
    let target = echo_target("127.0.0.2:0").await;

    let ports = free_ports(4).expect("free ports");
    let (e1, e2, ingress_port, forward_port) = (ports[0], ports[1], ports[2], ports[3]);
    let exit = |port: u16| {
        vec![
            "--mesh-listen".into(),
            format!("127.0.0.1:{port}"),
            "--exit-route".into(),
            "127.0.0.2/32".into(),
        ]
    };
    let _exit_1 = start(&cluster, "e-1", &token, exit(e1));
    let mut exit_2 = start(&cluster, "e-2", &token, exit(e2));
    let forward = format!("127.0.0.1:{forward_port}");
    let ingress = start(
        &cluster,
        "in-1",
        &token,
        vec![
            "--mesh-listen".into(),
            format!("127.0.0.1:{ingress_port}"),
            "--mesh-peer".into(),
            format!("127.0.0.1:{e1}"),
            "--mesh-peer".into(),
            format!("127.0.0.1:{e2}"),
            "--forward".into(),
            format!("{forward}={target}"),
        ],
    );

    // Both exits peered, the path through e-1 selected (the stable tie-break: lowest origin).
    let mut seen = Value::Null;
    wait_until(
        DEADLINE,
        "the ingress to peer with both exits and store a path through each",
        async || {
            seen = healthz(&ingress).await;
            peer_up(&seen, "e-1")
                && peer_up(&seen, "e-2")
                && path_through(&seen, "e-1")
                && path_through(&seen, "e-2")
        },
    )
    .await;
    assert_eq!(selected_next_hops(&seen), ["e-1"], "{seen}");
    let mut answer = Err(String::new());
    wait_until(DEADLINE, "an echo through the forward", async || {
        answer = echo_through(&forward, b"before").await;
        answer.is_ok()
    })
    .await;
    assert_eq!(answer, Ok(b"before".to_vec()));

    let reply = cluster
        .client()
        .post_json("/v1/agents/e-1/revoke", &json!({}))
        .await
        .expect("the revocation is answered");
    assert!(
        reply.status.is_success(),
        "{}",
        String::from_utf8_lossy(&reply.body)
    );

    wait_until(
        DEADLINE,
        "the ingress to list no peer and no path through the revoked e-1",
        async || {
            seen = healthz(&ingress).await;
            !seen["mesh"].is_null() && !peer_up(&seen, "e-1") && !path_through(&seen, "e-1")
        },
    )
    .await;
    assert_eq!(selected_next_hops(&seen), ["e-2"], "{seen}");
    for round in 0..3 {
        let message = format!("after the revocation, round {round}");
        assert_eq!(
            echo_through(&forward, message.as_bytes()).await,
            Ok(message.into_bytes()),
            "a connection through e-2"
        );
    }
    assert!(exit_2.exited().is_none(), "e-2 carries the traffic");

    // The ingress goes on refusing e-1 for as long as it is revoked.
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    let later = healthz(&ingress).await;
    assert!(
        !peer_up(&later, "e-1") && !path_through(&later, "e-1"),
        "{later}"
    );
}
