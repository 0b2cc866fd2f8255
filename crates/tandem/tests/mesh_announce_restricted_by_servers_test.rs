//! The servers restrict what an agent may announce: an exit enrolled with a join token made
//! with `--mesh-announce 10.20.0.0/16 --mesh-announce 127.0.0.2/32` also configures exit
//! routes outside that list. It says in its log that it does not advertise them, the ingress
//! has routes only for the allowed ones, and a connection to a refused address gets a SOCKS5
//! error at once with nothing dialed. `tandem agents announce` narrows and then lifts the
//! restriction while everything runs. Bad input gets errors that name it.

use std::path::Path;
use std::process::Output;
use std::time::Duration;

use serde_json::{json, Value};
use tandem_testkit::{curl_socks5, healthz, loopback_mesh_args, HttpTarget};
use tandem_testkit::{free_ports, join_token, wait_until, AgentProcess, Cluster, DEADLINE};
use tokio::time::Instant;

fn tandem() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_tandem"))
}

/// `tandem <args> --addr <the cluster>` with the API secret.
async fn cli(cluster: &Cluster, args: &[&str]) -> Output {
    cluster.cli(tandem(), args).await
}

fn stdout_of(output: &Output) -> String {
    assert!(
        output.status.success(),
        "failed ({}): {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The destinations the agent has a path to.
fn dests(healthz: &Value) -> Vec<String> {
    let mut dests: Vec<String> = healthz["mesh"]["routes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| r["dest"].as_str().map(str::to_string))
        .collect();
    dests.sort();
    dests.dedup();
    dests
}

fn start(cluster: &Cluster, name: &str, pool: &str, token: &str, args: &[String]) -> AgentProcess {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    AgentProcess::start(tandem(), cluster, name, pool, Some(token), &args)
}

#[tokio::test(flavor = "multi_thread")]
async fn an_exit_announces_only_what_the_servers_allow() {
    let cluster = Cluster::start(tandem(), 1, &[]).await;
    cluster.leader().await;
    let created = cli(
        &cluster,
        &[
            "agents",
            "token",
            "create",
            "--pool",
            "exits",
            "--mesh-announce",
            "10.20.0.0/16",
            "--mesh-announce",
            "127.0.0.2/32",
        ],
    )
    .await;
    let created = stdout_of(&created);
    assert!(
        created.contains("mesh announce only 10.20.0.0/16, 127.0.0.2/32"),
        "{created}"
    );
    let exit_token = created
        .lines()
        .last()
        .expect("the token line")
        .trim()
        .to_string();
    let ingress_token = join_token(&cluster, "edge", json!({})).await;
    let allowed = HttpTarget::start("127.0.0.2:0", "allowed").await;
    let allowed = &allowed.addr;
    let refused_target = HttpTarget::start("127.0.0.3:0", "after the lift").await;
    let refused = &refused_target.addr;

    let ports = free_ports(3).expect("free ports");
    let (exit_port, ingress_port, socks) = (ports[0], ports[1], ports[2]);
    let mut exit_args = loopback_mesh_args(exit_port, &[]);
    for route in [
        "10.20.0.0/16",
        "10.30.0.0/16",
        "127.0.0.2/32",
        "127.0.0.3/32",
    ] {
        exit_args.extend(["--exit-route".into(), route.into()]);
    }
    let exit = start(&cluster, "e-1", "exits", &exit_token, &exit_args);
    let mut ingress_args = loopback_mesh_args(ingress_port, &[exit_port]);
    ingress_args.extend(["--socks5-listen".into(), format!("127.0.0.1:{socks}")]);
    let ingress = start(&cluster, "in-1", "edge", &ingress_token, &ingress_args);
    let socks = format!("socks5h://127.0.0.1:{socks}");
    let url = format!("http://{allowed}/");

    let mut answer = Err(0);
    wait_until(DEADLINE, "curl to the allowed target", async || {
        answer = curl_socks5(&socks, None, &url, "5").await;
        answer.is_ok()
    })
    .await;
    assert_eq!(answer, Ok("allowed".to_string()));
    let seen = healthz(&ingress).await;
    assert_eq!(dests(&seen), ["10.20.0.0/16", "127.0.0.2/32"], "{seen}");

    // Refused destinations: a SOCKS5 error at once, and nothing reaches the target.
    for unreachable in [
        format!("http://{refused}/"),
        "http://10.30.0.1/".to_string(),
    ] {
        let started = Instant::now();
        let answer = curl_socks5(&socks, None, &unreachable, "5").await;
        assert!(answer.is_err(), "{unreachable}: {answer:?}");
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{unreachable}: the refusal took {:?}",
            started.elapsed()
        );
    }
    assert_eq!(
        refused_target.connections(),
        0,
        "a refused route was dialed"
    );
    let log = exit.log();
    assert!(
        log.contains("exit route not advertised") && log.contains("10.30.0.0/16"),
        "the exit does not say what it leaves out:\n{log}"
    );

    // The operator narrows the list: the ingress loses 10.20.0.0/16 and keeps routing.
    let narrowed = cli(
        &cluster,
        &["agents", "announce", "e-1", "--allow", "127.0.0.2/32"],
    )
    .await;
    assert!(stdout_of(&narrowed).contains("may announce only 127.0.0.2/32"));
    let mut seen = Value::Null;
    wait_until(DEADLINE, "the ingress to drop 10.20.0.0/16", async || {
        seen = healthz(&ingress).await;
        dests(&seen) == ["127.0.0.2/32"]
    })
    .await;
    assert_eq!(
        curl_socks5(&socks, None, &url, "5").await,
        Ok("allowed".to_string())
    );

    // Lifted: every configured route comes.
    stdout_of(&cli(&cluster, &["agents", "announce", "e-1", "--any"]).await);
    wait_until(
        DEADLINE,
        "the ingress to learn every exit route",
        async || {
            seen = healthz(&ingress).await;
            dests(&seen).len() == 4
        },
    )
    .await;
    assert_eq!(
        curl_socks5(&socks, None, &format!("http://{refused}/"), "5").await,
        Ok("after the lift".to_string())
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_restrictions_are_refused_naming_what_is_wrong() {
    let cluster = Cluster::start(tandem(), 1, &[]).await;
    cluster.leader().await;

    let bad = cli(
        &cluster,
        &[
            "agents",
            "token",
            "create",
            "--pool",
            "exits",
            "--mesh-announce",
            "notacidr",
        ],
    )
    .await;
    assert!(!bad.status.success());
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert!(
        stderr.contains("notacidr") && stderr.contains("CIDR"),
        "{stderr}"
    );

    let reply = cluster
        .client()
        .post_json(
            "/v1/join-tokens",
            &json!({"pool": "exits", "mesh_announce": ["10.0.0.0/99"]}),
        )
        .await
        .expect("an answer");
    assert_eq!(
        reply.status.as_u16(),
        400,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    assert!(String::from_utf8_lossy(&reply.body).contains("10.0.0.0/99"));

    let reply = cluster
        .client()
        .post_json(
            "/v1/agents/nobody/announce",
            &json!({"allow": ["10.0.0.0/8"]}),
        )
        .await
        .expect("an answer");
    assert_eq!(
        reply.status.as_u16(),
        404,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    assert!(String::from_utf8_lossy(&reply.body).contains("nobody"));

    let unknown = cli(
        &cluster,
        &["agents", "announce", "nobody", "--allow", "10.0.0.0/8"],
    )
    .await;
    assert!(!unknown.status.success());
    let stderr = String::from_utf8_lossy(&unknown.stderr);
    assert!(stderr.contains("nobody"), "{stderr}");
}
