//! Every grant allows exactly its area: a table of requests × scoped credentials, each answered
//! 2xx or 403, and a 403 changes nothing. Requests go to every server in turn, so standbys that
//! forward are checked as well as the active node. `tandem auth create` prints the credential
//! alone on its last line; malformed grants are refused with 400; the dashboard signs in with a
//! credential and reads only within its grants.

use std::path::Path;
use std::time::Duration;

use reqwest::Method;
use serde_json::{json, Value};
use tandem_testkit::{run_to_exit, tandem_command, wait_until, Cluster, API_SECRET, DEADLINE};

fn tandem() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_tandem"))
}

/// Creates a credential through the API and answers it.
async fn create(cluster: &Cluster, name: &str, grants: &[&str]) -> String {
    let reply = cluster
        .post_json(
            0,
            "/v1/auth/credentials",
            &json!({ "name": name, "grants": grants }),
        )
        .await
        .expect_status(201);
    reply.json()["credential"]
        .as_str()
        .expect("the answer carries the credential")
        .to_string()
}

/// What a 403 must leave as it was: every key, cache entry and lock the table touches, the
/// SQL schema, the credentials, this cluster's signing keys and the audit log, read as root
/// from the active node.
async fn fingerprint(cluster: &Cluster) -> Value {
    let leader = cluster.leader().await;
    let read = |path: &'static str| async move {
        let reply = cluster.get(leader, path).await;
        (reply.status.as_u16(), reply.text())
    };
    let schema = cluster
        .post_json(
            leader,
            "/v1/sql/query",
            &json!({"sql": "SELECT name FROM sqlite_master ORDER BY name"}),
        )
        .await
        .expect_status(200)
        .json();
    let keys = cluster
        .get(leader, "/v1/keys")
        .await
        .expect_status(200)
        .json();
    json!({
        "kv": read("/v1/kv?prefix=").await,
        "cache": [read("/v1/cache/sessions/k").await, read("/v1/cache/other/k").await],
        "lock": read("/v1/locks/jobs-nightly").await,
        "schema": schema,
        "credentials": cluster.get(leader, "/v1/auth/credentials").await.json()["credentials"]
            .as_array().map(Vec::len),
        "keys": keys["keys"].as_array().map(Vec::len),
        "audit": cluster.get(leader, "/v1/audit").await.json()["last_seq"],
        "join_tokens": read("/v1/join-tokens").await,
    })
}

struct Case {
    what: &'static str,
    method: Method,
    path: &'static str,
    body: Option<Value>,
    /// The credentials (by name) that may do it; the others get 403.
    allowed: &'static [&'static str],
}

fn case(
    what: &'static str,
    method: Method,
    path: &'static str,
    body: Option<Value>,
    allowed: &'static [&'static str],
) -> Case {
    Case {
        what,
        method,
        path,
        body,
        allowed,
    }
}

fn cases() -> Vec<Case> {
    use Method as M;
    let sql = |q: &str| Some(json!({ "sql": q }));
    vec![
        case(
            "kv write in billing/",
            M::PUT,
            "/v1/kv/billing/a",
            None,
            &["billing", "admin-kv"],
        ),
        case(
            "kv read in billing/",
            M::GET,
            "/v1/kv/billing/a",
            None,
            &["billing", "reader", "admin-kv"],
        ),
        case(
            "kv write elsewhere",
            M::PUT,
            "/v1/kv/other/a",
            None,
            &["admin-kv"],
        ),
        case(
            "kv read elsewhere",
            M::GET,
            "/v1/kv/other/a",
            None,
            &["reader", "admin-kv"],
        ),
        case(
            "kv list of billing/",
            M::GET,
            "/v1/kv?prefix=billing/",
            None,
            &["billing", "reader", "admin-kv"],
        ),
        case(
            "kv list of everything",
            M::GET,
            "/v1/kv?prefix=",
            None,
            &["reader", "admin-kv"],
        ),
        case(
            "kv delete elsewhere",
            M::DELETE,
            "/v1/kv/other/a",
            None,
            &["admin-kv"],
        ),
        case(
            "cache write in sessions",
            M::PUT,
            "/v1/cache/sessions/k",
            None,
            &["billing"],
        ),
        case(
            "cache write elsewhere",
            M::PUT,
            "/v1/cache/other/k",
            None,
            &[],
        ),
        case(
            "sql read",
            M::POST,
            "/v1/sql/query",
            sql("SELECT 1"),
            &["reader"],
        ),
        case(
            "sql write",
            M::POST,
            "/v1/sql/execute",
            sql("CREATE TABLE t_forbidden (x)"),
            &[],
        ),
        case(
            "rqlite query",
            M::GET,
            "/db/query?q=SELECT%201",
            None,
            &["reader"],
        ),
        case(
            "lock acquire",
            M::POST,
            "/v1/locks/jobs-nightly/acquire",
            Some(json!({"holder": "h", "ttl": "30s"})),
            &[],
        ),
        case(
            "issue a token",
            M::POST,
            "/v1/tokens",
            Some(json!({"claims": {"sub": "u"}})),
            &["billing"],
        ),
        case(
            "verify a token",
            M::POST,
            "/v1/tokens/verify",
            Some(json!({"token": "x.y.z"})),
            &[],
        ),
        case(
            "rotate keys",
            M::POST,
            "/v1/keys/rotate",
            Some(json!({})),
            &[],
        ),
        case(
            "cluster status",
            M::GET,
            "/v1/cluster",
            None,
            &["reader", "admin"],
        ),
        case("audit log", M::GET, "/v1/audit", None, &["reader", "admin"]),
        case("list agents", M::GET, "/v1/agents", None, &["reader"]),
        case(
            "create a join token",
            M::POST,
            "/v1/join-tokens",
            Some(json!({"pool": "p"})),
            &[],
        ),
        case(
            "list credentials",
            M::GET,
            "/v1/auth/credentials",
            None,
            &["admin"],
        ),
        case(
            "create a credential",
            M::POST,
            "/v1/auth/credentials",
            Some(json!({"name": "made", "grants": ["sql:read"]})),
            &["admin"],
        ),
        case("take a backup", M::GET, "/v1/backup", None, &["admin"]),
    ]
}

#[tokio::test(flavor = "multi_thread")]
async fn every_grant_allows_exactly_its_area() {
    let cluster = Cluster::start(tandem(), 3, &[]).await;
    cluster.leader().await;

    // The CLI prints the credential alone on its last line.
    let mut command = tandem_command(tandem());
    let addrs: Vec<&str> = (0..cluster.len()).map(|i| cluster.api_addr(i)).collect();
    command.env("TANDEM_SECRET_API", API_SECRET).args([
        "auth",
        "create",
        "--name",
        "billing",
        "--grant",
        "kv:read:billing/",
        "--grant",
        "kv:write:billing/",
        "--grant",
        "cache:sessions",
        "--grant",
        "tokens:issue",
        "--ttl",
        "30d",
        "--addr",
        &addrs.join(","),
    ]);
    let out = run_to_exit(command, Duration::from_secs(60)).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let billing = stdout.lines().last().expect("a last line").to_string();
    assert!(!billing.contains(' '), "the credential alone: {stdout}");

    let credentials = [
        ("billing", billing),
        (
            "reader",
            create(
                &cluster,
                "reader",
                &["sql:read", "kv:read", "agents:read", "cluster:read"],
            )
            .await,
        ),
        (
            "admin-kv",
            create(&cluster, "admin-kv", &["kv:read", "kv:write"]).await,
        ),
        ("admin", create(&cluster, "admin", &["cluster:admin"]).await),
    ];

    // Every server's first signing key is published (and audited) before the table begins, so
    // that nothing but the requests below changes the state.
    wait_until(DEADLINE, "three signing keys", async || {
        let keys = cluster.get(0, "/v1/keys").await.json();
        keys["keys"].as_array().map(Vec::len) == Some(3)
    })
    .await;
    for (n, case) in cases().into_iter().enumerate() {
        for (c, (name, credential)) in credentials.iter().enumerate() {
            let node = (n + c) % cluster.len();
            let before = fingerprint(&cluster).await;
            let body = case
                .body
                .as_ref()
                .map(|b| ("application/json", b.to_string().into_bytes()))
                .or_else(|| {
                    (case.method == Method::PUT)
                        .then(|| ("application/octet-stream", b"v".to_vec()))
                });
            let reply = cluster
                .send_with(node, case.method.clone(), case.path, body, credential)
                .await;
            let status = reply.status.as_u16();
            if case.allowed.contains(name) {
                assert_ne!(status, 403, "{name} may {}: {}", case.what, reply.text());
                assert_ne!(status, 401, "{name}: {}", reply.text());
            } else {
                let error = reply.expect_api_error(403);
                assert!(
                    error.message.contains("lacks the grant"),
                    "{name} {}: {}",
                    case.what,
                    error.message
                );
                assert_eq!(
                    fingerprint(&cluster).await,
                    before,
                    "{name}'s refused {} changed nothing",
                    case.what
                );
            }
        }
    }

    // The refusal names the grant that is missing.
    let reader = &credentials[1].1;
    let refused = cluster
        .send_with(
            0,
            Method::PUT,
            "/v1/kv/billing/x",
            Some(("application/octet-stream", b"v".to_vec())),
            reader,
        )
        .await
        .expect_api_error(403);
    assert!(
        refused.message.contains("kv:write:billing/x"),
        "{}",
        refused.message
    );

    // The API secret stays root; rqlite clients present a credential as a basic-auth password.
    cluster
        .put(1, "/v1/kv/other/root", "v")
        .await
        .expect_status(200);
    let basic = |credential: &str| {
        cluster
            .http()
            .get(format!("{}/db/query?q=SELECT%201", cluster.api_url(1)))
            .basic_auth("app", Some(credential))
            .send()
    };
    assert_eq!(
        basic(reader).await.expect("an answer").status().as_u16(),
        200
    );
    assert_eq!(
        basic(&credentials[0].1)
            .await
            .expect("an answer")
            .status()
            .as_u16(),
        403
    );

    // Malformed grants are refused with 400, naming the bad one and the valid forms.
    let bad = cluster
        .post_json(
            0,
            "/v1/auth/credentials",
            &json!({"name": "bad", "grants": ["kv:read:x", "kv:rw:x"]}),
        )
        .await
        .expect_api_error(400);
    assert!(bad.message.contains("\"kv:rw:x\""), "{}", bad.message);
    assert!(bad.message.contains("cache:<namespace>"), "{}", bad.message);

    // The dashboard signs in with a credential, and reads only what it grants.
    for (name, credential, cluster_status) in
        [("reader", reader, 200), ("billing", &credentials[0].1, 403)]
    {
        let signed_in = cluster
            .http()
            .post(format!("{}/ui/session", cluster.api_url(2)))
            .json(&json!({ "secret": credential }))
            .send()
            .await
            .expect("an answer");
        assert_eq!(signed_in.status().as_u16(), 204, "{name} signs in");
        let cookie = signed_in.headers()["set-cookie"]
            .to_str()
            .expect("ascii")
            .split(';')
            .next()
            .expect("a cookie")
            .to_string();
        let status = cluster
            .http()
            .get(format!("{}/v1/cluster", cluster.api_url(2)))
            .header("cookie", &cookie)
            .send()
            .await
            .expect("an answer")
            .status()
            .as_u16();
        assert_eq!(status, cluster_status, "{name}'s session reads the cluster");
    }
    cluster.assert_no_panics();
}
