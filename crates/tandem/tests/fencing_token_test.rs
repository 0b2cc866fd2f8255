//! Locks hand out fencing tokens that only grow; a write fenced with a token that is no longer
//! current is refused, and one fenced with the current token goes through.

use std::path::Path;

use serde_json::{json, Value};
use tandem_testkit::{wait_until, Cluster, HttpReply, DEADLINE};

fn tandem() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_tandem"))
}

const LOCK: &str = "fence-lock";
const KEY: &str = "/v1/kv/fenced-value";

async fn lock_call(client: &tandem_client::Client, action: &str, body: Value) -> HttpReply {
    let mut attempts = 0;
    loop {
        attempts += 1;
        let reply = client
            .post_json(&format!("/v1/locks/{LOCK}/{action}"), &body)
            .await
            .expect("the cluster answered");
        let reply = HttpReply::from_client(format!("{action} {LOCK} {body}"), reply);
        // Leadership may move while a young cluster settles on a loaded machine. Asking again
        // is safe for an acquire: the same holder keeps its token.
        let unknown = reply.status == 503 && reply.json()["error"]["code"] == "outcome_unknown";
        if !(unknown && action == "acquire") || attempts == 10 {
            return reply;
        }
    }
}

fn token(reply: HttpReply) -> u64 {
    let body = reply.expect_status(200).json();
    body["token"]
        .as_u64()
        .unwrap_or_else(|| panic!("no token in {body}"))
}

async fn put_fenced(client: &tandem_client::Client, token: u64, value: &str) -> HttpReply {
    let path = format!("{KEY}?fence={LOCK}:{token}");
    let reply = client
        .put_bytes(&path, value.as_bytes().to_vec())
        .await
        .expect("the cluster answered");
    HttpReply::from_client(format!("PUT {path}"), reply)
}

async fn current_value(client: &tandem_client::Client) -> String {
    let reply = client.get(KEY).await.expect("the cluster answered");
    HttpReply::from_client(format!("GET {KEY}"), reply)
        .expect_status(200)
        .text()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stale_fencing_token_is_refused_and_the_current_one_accepted() {
    let cluster = Cluster::start(tandem(), 3, &[]).await;
    cluster.leader().await;
    let client = cluster.client();

    // While A holds the lock, B cannot take it. (A long lease, so the check cannot race the
    // lease running out on a slow machine.)
    let t0 = token(lock_call(&client, "acquire", json!({"holder": "A", "ttl": "30s"})).await);
    let refused = lock_call(&client, "acquire", json!({"holder": "B", "ttl": "30s"})).await;
    assert_eq!(refused.expect_api_error(409).code, "conflict");
    lock_call(&client, "release", json!({"holder": "A", "token": t0}))
        .await
        .expect_status(200);

    // A takes it again with a short lease and writes under its token.
    let t1 = token(lock_call(&client, "acquire", json!({"holder": "A", "ttl": "1s"})).await);
    assert!(t1 > t0, "tokens grow: {t0} then {t1}");
    put_fenced(&client, t1, "written by A")
        .await
        .expect_status(200);

    // A's lease runs out...
    wait_until(DEADLINE, "the lock to show no holder", async || {
        let reply = client
            .get(&format!("/v1/locks/{LOCK}"))
            .await
            .expect("the cluster answered");
        reply.status == 200
            && serde_json::from_slice::<Value>(&reply.body)
                .is_ok_and(|lock| lock["holder"].is_null())
    })
    .await;

    // ...B takes the lock, with a larger token...
    let t2 = token(lock_call(&client, "acquire", json!({"holder": "B", "ttl": "30s"})).await);
    assert!(t2 > t1, "tokens grow: {t1} then {t2}");

    // ...and A's late write is refused and changes nothing.
    let stale = put_fenced(&client, t1, "late write by A").await;
    assert_eq!(stale.expect_api_error(409).code, "fenced");
    assert_eq!(current_value(&client).await, "written by A");

    put_fenced(&client, t2, "written by B")
        .await
        .expect_status(200);
    assert_eq!(current_value(&client).await, "written by B");
}
