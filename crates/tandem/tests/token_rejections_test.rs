//! A token that was tampered with, has expired, names a key nobody publishes, or is not a JWT
//! is refused with 401 and the reason; a request for a token that the server would have to
//! bend its rules for is refused with 400. Runs with EdDSA keys, checked by PyJWT as well.

use std::path::Path;

use serde_json::json;
use tandem_keys::{issue_token, SigningAlgorithm, SigningKey};
use tandem_testkit::jose::verify_with_pyjwt;
use tandem_testkit::{http_client, wait_for, wait_until, Cluster, DEADLINE};

fn tandem() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_tandem"))
}

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("a clock after 1970")
        .as_secs()
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_tokens_are_refused_with_their_reason() {
    let cluster = Cluster::start(tandem(), 1, &["--key-algorithm", "eddsa"]).await;
    cluster.leader().await;
    wait_for(DEADLINE, "a signing key", async || {
        cluster.signing_kid(0).await
    })
    .await;

    let good = cluster.issue_token(0, json!({"sub": "ann"}), "1m").await;
    let jwks_url = format!("{}/.well-known/jwks.json", cluster.api_url(0));
    let claims = verify_with_pyjwt(&jwks_url, &good.token)
        .await
        .expect("PyJWT accepts it");
    assert_eq!(claims["sub"], "ann");
    let header = cluster.get(0, "/.well-known/jwks.json").await;
    assert_eq!(header.header("cache-control"), Some("public, max-age=60"));
    assert_eq!(header.json()["keys"][0]["alg"], "EdDSA");

    // One character of the payload changed, the signature kept.
    let mut parts: Vec<String> = good.token.split('.').map(str::to_string).collect();
    let flipped = if parts[1].ends_with('A') { 'B' } else { 'A' };
    parts[1].pop();
    parts[1].push(flipped);
    let tampered = parts.join(".");
    let error = cluster
        .verify_token(0, &tampered)
        .await
        .expect_api_error(401);
    assert_eq!(error.code, "token_bad_signature", "{}", error.message);
    assert!(verify_with_pyjwt(&jwks_url, &tampered).await.is_err());

    let stranger = SigningKey::generate(SigningAlgorithm::Es256, "stranger-1".into()).unwrap();
    let foreign = issue_token(&stranger, "elsewhere", Default::default(), now_secs(), 60).unwrap();
    let error = cluster
        .verify_token(0, &foreign)
        .await
        .expect_api_error(401);
    assert_eq!(error.code, "token_unknown_key");
    assert!(error.message.contains("stranger-1"), "{}", error.message);

    let error = cluster
        .verify_token(0, "not.a.jwt")
        .await
        .expect_api_error(401);
    assert_eq!(error.code, "token_malformed");

    let short = cluster.issue_token(0, json!({"sub": "brief"}), "1s").await;
    wait_until(
        DEADLINE,
        "the 1s token to be refused as expired",
        async || {
            let reply = cluster.verify_token(0, &short.token).await;
            reply.status == 401 && reply.json()["error"]["code"] == "token_expired"
        },
    )
    .await;

    // The server sets iss, iat and exp; a lifetime beyond token_duration is refused.
    let reserved = cluster
        .post_json(0, "/v1/tokens", &json!({"claims": {"exp": 1}}))
        .await
        .expect_api_error(400);
    assert!(reserved.message.contains("\"exp\""), "{}", reserved.message);
    let too_long = cluster
        .post_json(0, "/v1/tokens", &json!({"ttl": "2h"}))
        .await
        .expect_api_error(400);
    assert!(
        too_long.message.contains("token_duration"),
        "{}",
        too_long.message
    );

    // Issuing needs the API secret; the key set does not.
    let anonymous = http_client()
        .post(format!("{}/v1/tokens", cluster.api_url(0)))
        .json(&json!({}))
        .send()
        .await
        .expect("an answer");
    assert_eq!(anonymous.status(), 401);
    let public = http_client()
        .get(&jwks_url)
        .send()
        .await
        .expect("an answer");
    assert_eq!(public.status(), 200);
    cluster.assert_no_panics();
}
