//! Tandem tokens as SOCKS5 passwords, with real `tandem agent` processes on 127.0.0.1: an exit
//! that advertises the target's address and an ingress with `--socks5-tokens` (and a fixed user
//! and password beside it). curl through the ingress gets in with a token the cluster issued
//! with the `socks5` claim (split at its first dot over user name and password, since RFC 1929
//! passwords hold 255 bytes at most), or with the fixed pair. A token without the claim, with a
//! claim naming another ingress, expired, or issued by another cluster is refused, nothing is
//! dialed for it, and the ingress's log never shows a token.

use std::path::Path;

use serde_json::json;
use tandem_testkit::{
    curl_socks5, free_ports, join_token, wait_until, AgentProcess, Cluster, HttpTarget, DEADLINE,
};

fn tandem() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_tandem"))
}

/// curl through the SOCKS5 proxy `socks` as `user` with `password`: the body, or curl's exit
/// code.
async fn curl(socks: &str, user: &str, password: &str, url: &str) -> Result<String, i32> {
    curl_socks5(socks, Some(&format!("{user}:{password}")), url, "5").await
}

/// A token as a SOCKS5 client gives it: up to its first dot, and the rest.
fn split(token: &str) -> (&str, &str) {
    token.split_once('.').expect("a JWT has dots")
}

fn start(cluster: &Cluster, name: &str, token: &str, args: &[String]) -> AgentProcess {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    AgentProcess::start(tandem(), cluster, name, "mesh", Some(token), &args)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_token_with_the_socks5_claim_opens_the_proxy_and_others_are_refused() {
    let cluster = Cluster::start(tandem(), 1, &[]).await;
    let leader = cluster.leader().await;
    let join = join_token(&cluster, "mesh", json!({})).await;
    let target = HttpTarget::start("127.0.0.2:0", "hello").await;
    let url = target.url();

    let ports = free_ports(3).expect("free ports");
    let (exit_port, ingress_port, socks_port) = (ports[0], ports[1], ports[2]);
    let _exit = start(
        &cluster,
        "exit-1",
        &join,
        &[
            "--mesh-listen".into(),
            format!("127.0.0.1:{exit_port}"),
            "--exit-route".into(),
            "127.0.0.2/32".into(),
        ],
    );
    let ingress = start(
        &cluster,
        "in-1",
        &join,
        &[
            "--mesh-listen".into(),
            format!("127.0.0.1:{ingress_port}"),
            "--mesh-peer".into(),
            format!("127.0.0.1:{exit_port}"),
            "--socks5-listen".into(),
            format!("127.0.0.1:{socks_port}"),
            "--socks5-tokens".into(),
            "true".into(),
            "--socks5-username".into(),
            "alice".into(),
            "--socks5-password".into(),
            "s3cret".into(),
        ],
    );
    let socks = format!("127.0.0.1:{socks_port}");
    wait_until(DEADLINE, "the server to sign with a key", async || {
        cluster.signing_kid(leader).await.is_some()
    })
    .await;

    let good = cluster
        .issue_token(leader, json!({"socks5": true, "sub": "ann"}), "10m")
        .await
        .token;
    let (user, password) = split(&good);
    wait_until(
        DEADLINE,
        "curl with a socks5 token to get through",
        async || curl(&socks, user, password, &url).await.is_ok(),
    )
    .await;
    let for_this_pool = cluster
        .issue_token(
            leader,
            json!({"socks5": ["other-ingress", "pool:mesh"]}),
            "10m",
        )
        .await
        .token;
    let (user, password) = split(&for_this_pool);
    assert_eq!(curl(&socks, user, password, &url).await, Ok("hello".into()));
    assert_eq!(
        curl(&socks, "alice", "s3cret", &url).await,
        Ok("hello".into()),
        "the fixed user and password work beside tokens"
    );

    let no_claim = cluster
        .issue_token(leader, json!({"sub": "ann"}), "10m")
        .await
        .token;
    let other_ingress = cluster
        .issue_token(leader, json!({"socks5": ["in-2", "pool:other"]}), "10m")
        .await
        .token;
    let expired = cluster
        .issue_token(leader, json!({"socks5": true}), "1s")
        .await
        .token;
    wait_until(DEADLINE, "the short token to expire", async || {
        cluster.verify_token(leader, &expired).await.status == 401
    })
    .await;
    let other_cluster = Cluster::start(tandem(), 1, &[]).await;
    let other_leader = other_cluster.leader().await;
    wait_until(
        DEADLINE,
        "the other cluster to sign with a key",
        async || other_cluster.signing_kid(other_leader).await.is_some(),
    )
    .await;
    let foreign = other_cluster
        .issue_token(other_leader, json!({"socks5": true}), "10m")
        .await
        .token;
    // The same header and claims with one signature byte changed.
    let (signed, signature) = good.rsplit_once('.').expect("a JWT");
    let flipped = if signature.starts_with('A') { 'B' } else { 'A' };
    let forged = format!("{signed}.{flipped}{}", &signature[1..]);

    let dialed = target.connections();
    for (what, token) in [
        ("without the claim", &no_claim),
        ("for another ingress", &other_ingress),
        ("expired", &expired),
        ("from another cluster", &foreign),
        ("with a bad signature", &forged),
    ] {
        let (user, password) = split(token);
        let refused = curl(&socks, user, password, &url).await;
        assert!(refused.is_err(), "a token {what} got through: {refused:?}");
    }
    let refused = curl(&socks, "ann", "not-a-token", &url).await;
    assert!(refused.is_err(), "{refused:?}");
    assert_eq!(
        target.connections(),
        dialed,
        "a refused client's connection was dialed"
    );

    let log = ingress.log();
    assert!(log.contains("socks5 token refused"), "{log}");
    for token in [&good, &no_claim, &expired, &foreign] {
        assert!(
            !log.contains(split(token).1),
            "the ingress logged a token: {log}"
        );
    }
}
