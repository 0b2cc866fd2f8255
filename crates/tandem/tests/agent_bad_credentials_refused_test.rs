//! Bad input from would-be agents gets a clear error and changes nothing: malformed, unknown,
//! wrong, expired, used-up and revoked join tokens; a name that belongs to another agent; a
//! token for another pool; a public key that is not one; forged or foreign assertions; and
//! malformed reports. An agent started with a bad token stops and says why. An agent's
//! credential holds one grant, `agent:<name>`: elsewhere it gets the 403 a scoped credential
//! gets, and it is listed and revoked with the scoped credentials.

use std::path::Path;

use reqwest::Method;
use serde_json::{json, Value};
use tandem_keys::{issue_token, SigningAlgorithm, SigningKey};
use tandem_testkit::{join_token, AgentProcess, Cluster, HttpReply};

fn tandem() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_tandem"))
}

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

struct Would {
    key: SigningKey,
}

impl Would {
    fn new() -> Would {
        Would {
            key: SigningKey::generate(SigningAlgorithm::Es256, "pending".into()).unwrap(),
        }
    }

    fn enrollment(&self, token: &str, name: &str) -> Value {
        json!({ "token": token, "name": name, "public_key": self.key.public_jwk() })
    }

    /// An assertion as an agent signs it, with this key, naming `credential_id` and `name`.
    fn assertion(&self, credential_id: &str, name: &str) -> String {
        let key = SigningKey::from_pkcs8(
            SigningAlgorithm::Es256,
            credential_id.into(),
            self.key.pkcs8().to_vec(),
        )
        .unwrap();
        let claims = json!({ "sub": name }).as_object().unwrap().clone();
        issue_token(&key, "tandem-agent", claims, now_secs(), 300).unwrap()
    }
}

async fn enroll(cluster: &Cluster, body: &Value) -> HttpReply {
    let http = reqwest::Client::new();
    let url = format!("{}/v1/agent/enroll", cluster.api_url(0));
    let response = http
        .post(&url)
        .json(body)
        .send()
        .await
        .expect("enrol answers");
    HttpReply::read(url, response)
        .await
        .expect("a readable answer")
}

async fn as_agent(cluster: &Cluster, path: &str, bearer: &str, body: &str) -> HttpReply {
    let http = reqwest::Client::new();
    let url = format!("{}{path}", cluster.api_url(1));
    let response = http
        .post(&url)
        .bearer_auth(bearer)
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .expect("the server answers");
    HttpReply::read(url, response)
        .await
        .expect("a readable answer")
}

async fn registry_index(cluster: &Cluster) -> u64 {
    let list = cluster
        .client()
        .get("/v1/agents")
        .await
        .unwrap()
        .json()
        .unwrap();
    list["index"].as_u64().unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_tokens_names_keys_and_assertions_are_refused_with_nothing_changed() {
    let cluster = Cluster::start(tandem(), 3, &[]).await;
    cluster.leader().await;
    let one_use = join_token(&cluster, "vpn", json!({ "uses": 1 })).await;
    let other = join_token(&cluster, "vpn", json!({})).await;
    let expired = join_token(&cluster, "vpn", json!({ "ttl": "1ms" })).await;
    let revoked = join_token(&cluster, "vpn", json!({})).await;
    let revoked_id = revoked.split('.').next().unwrap();
    cluster
        .client()
        .delete(&format!("/v1/join-tokens/{revoked_id}"))
        .await
        .unwrap();

    // One good enrolment to compare against.
    let owner = Would::new();
    let enrolled = enroll(&cluster, &owner.enrollment(&one_use, "taken"))
        .await
        .expect_status(200);
    let credential_id = enrolled.json()["credential_id"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(enrolled.json()["certificate_pem"]
        .as_str()
        .unwrap()
        .contains("BEGIN CERTIFICATE"));
    let owner_assertion = owner.assertion(&credential_id, "taken");
    let registration = json!({ "address": "10.0.0.1:51820" }).to_string();
    as_agent(
        &cluster,
        "/v1/agent/register",
        &owner_assertion,
        &registration,
    )
    .await
    .expect_status(200);
    let index = registry_index(&cluster).await;

    let stranger = Would::new();
    let wrong_secret = format!("{}.not-the-secret", other.split('.').next().unwrap());
    for (token, what) in [
        ("nonsense", "malformed"),
        ("0123456789abcdef.secret", "unknown id"),
        (wrong_secret.as_str(), "wrong secret"),
        (expired.as_str(), "expired"),
        (one_use.as_str(), "used up"),
        (revoked.as_str(), "revoked"),
    ] {
        let refused = enroll(&cluster, &stranger.enrollment(token, "newcomer")).await;
        let error = refused.expect_api_error(401);
        assert!(!error.message.is_empty(), "{what}");
    }
    let message = enroll(&cluster, &stranger.enrollment(&expired, "newcomer"))
        .await
        .expect_api_error(401)
        .message;
    assert!(message.contains("expired"), "{message}");

    // Another agent's name, another pool, a key that is not a P-256 public key.
    let conflict = enroll(&cluster, &stranger.enrollment(&other, "taken"))
        .await
        .expect_api_error(409);
    assert!(conflict.message.contains("taken"), "{}", conflict.message);
    let mut wrong_pool = stranger.enrollment(&other, "newcomer");
    wrong_pool["pool"] = json!("db");
    assert!(enroll(&cluster, &wrong_pool)
        .await
        .expect_api_error(400)
        .message
        .contains("pool"));
    let mut bad_key = stranger.enrollment(&other, "newcomer");
    bad_key["public_key"] = json!({ "kty": "EC", "crv": "P-256", "x": "AA", "y": "AA" });
    enroll(&cluster, &bad_key).await.expect_api_error(400);
    enroll(&cluster, &json!({ "token": other }))
        .await
        .expect_api_error(400);

    // Assertions: none, garbage, another key under the owner's credential id, another name.
    for bearer in [
        "",
        "garbage",
        &stranger.assertion(&credential_id, "taken"),
        &owner.assertion(&credential_id, "someone-else"),
    ] {
        let refused = as_agent(&cluster, "/v1/agent/report", bearer, "{}").await;
        refused.expect_api_error(401);
    }
    // Malformed reports from the real owner.
    as_agent(&cluster, "/v1/agent/report", &owner_assertion, "{not json")
        .await
        .expect_api_error(400);
    let huge = json!({ "checks": [{ "name": "x", "kind": "exec", "status": "passing", "output": "y".repeat(5000) }] });
    as_agent(
        &cluster,
        "/v1/agent/report",
        &owner_assertion,
        &huge.to_string(),
    )
    .await
    .expect_api_error(400);
    let negative = json!({ "load": -1.0 });
    as_agent(
        &cluster,
        "/v1/agent/report",
        &owner_assertion,
        &negative.to_string(),
    )
    .await
    .expect_api_error(400);

    assert_eq!(
        registry_index(&cluster).await,
        index,
        "a refusal changed the registry"
    );
    // The owner is untouched.
    as_agent(&cluster, "/v1/agent/report", &owner_assertion, "{}")
        .await
        .expect_status(200);

    // An agent started with a bad token stops with the server's reason.
    let mut bad = AgentProcess::start(
        tandem(),
        &cluster,
        "bad-token",
        "vpn",
        Some("0123456789abcdef.nope"),
        &[],
    );
    let status = bad.wait_for_exit().await;
    assert_eq!(status.code(), Some(1));
    assert!(bad.log().contains("join token"), "{}", bad.log());
}

/// Credential `id` as `GET /v1/auth/credentials` lists it.
async fn listed_credential(cluster: &Cluster, id: &str) -> Value {
    let listed = cluster.get(1, "/v1/auth/credentials").await.json();
    listed["credentials"]
        .as_array()
        .expect("credentials")
        .iter()
        .find(|c| c["id"] == id)
        .cloned()
        .unwrap_or_else(|| panic!("credential {id} is listed: {listed}"))
}

/// `method path` on node 1 with `bearer`.
async fn send_as(cluster: &Cluster, method: Method, path: &str, bearer: &str) -> HttpReply {
    cluster.send_with(1, method, path, None, bearer).await
}

#[tokio::test(flavor = "multi_thread")]
async fn an_agent_credential_holds_one_grant_and_is_listed_and_revoked_with_the_others() {
    let cluster = Cluster::start(tandem(), 3, &[]).await;
    cluster.leader().await;
    let token = join_token(&cluster, "edge", json!({})).await;
    let agent = Would::new();
    let credential_id = enroll(&cluster, &agent.enrollment(&token, "edge-1"))
        .await
        .expect_status(200)
        .json()["credential_id"]
        .as_str()
        .expect("a credential id")
        .to_string();
    let assertion = agent.assertion(&credential_id, "edge-1");

    // Outside its one grant, the agent is refused as a scoped credential is: 403 naming both.
    for (method, path, missing) in [
        (Method::GET, "/v1/kv/config/a", "kv:read:config/a"),
        (Method::GET, "/v1/agents", "agents:read"),
        (Method::GET, "/v1/cluster", "cluster:read"),
    ] {
        let refused = send_as(&cluster, method, path, &assertion)
            .await
            .expect_api_error(403);
        assert!(
            refused.message.contains(missing) && refused.message.contains("agent:edge-1"),
            "{path}: {}",
            refused.message
        );
    }

    // Listed beside the scoped credentials, with its grant.
    let shown = listed_credential(&cluster, &credential_id).await;
    assert_eq!(shown["kind"], "agent");
    assert_eq!(shown["name"], "edge-1");
    assert_eq!(shown["grants"], json!(["agent:edge-1"]));
    assert_eq!(shown["state"], "active");

    // Revoked by its id like any credential: the agent is refused, and the log says who.
    let revoked = cluster
        .delete(1, &format!("/v1/auth/credentials/{credential_id}"))
        .await
        .expect_status(200)
        .json();
    assert_eq!(revoked["revoked"]["kind"], "agent");
    assert_eq!(revoked["revoked"]["name"], "edge-1");
    let refused = as_agent(&cluster, "/v1/agent/report", &assertion, "{}")
        .await
        .expect_api_error(401);
    assert_eq!(refused.code, "credential_revoked");
    assert_eq!(
        listed_credential(&cluster, &credential_id).await["state"],
        "revoked"
    );
    let audit = cluster.get(1, "/v1/audit").await.json();
    assert!(
        audit["entries"]
            .as_array()
            .expect("entries")
            .iter()
            .any(|e| e["action"] == "agent.revoke" && e["detail"]["name"] == "edge-1"),
        "{audit}"
    );
}
