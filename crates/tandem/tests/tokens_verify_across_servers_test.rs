//! Every server signs with its own key, and a token from any of three servers verifies on the
//! other two and with an independent JOSE implementation (PyJWT) that reads the key set URL.

use std::collections::BTreeSet;
use std::path::Path;

use serde_json::json;
use tandem_testkit::jose::verify_with_pyjwt;
use tandem_testkit::{wait_for, Cluster, DEADLINE};

fn tandem() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_tandem"))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_token_from_any_server_verifies_on_every_server_and_with_pyjwt() {
    let cluster = Cluster::start(tandem(), 3, &[]).await;
    cluster.leader().await;
    for i in 0..3 {
        wait_for(
            DEADLINE,
            "every server to have a published signing key",
            async || cluster.signing_kid(i).await,
        )
        .await;
    }

    let mut signing_keys = BTreeSet::new();
    for issuer in 0..3 {
        let subject = format!("user-of-node-{issuer}");
        let issued = cluster
            .issue_token(issuer, json!({"sub": subject, "role": "reader"}), "5m")
            .await;
        signing_keys.insert(issued.kid.clone());
        for verifier in 0..3 {
            let claims = cluster
                .verify_token(verifier, &issued.token)
                .await
                .expect_status(200)
                .json()["claims"]
                .clone();
            assert_eq!(claims["sub"], subject, "verified on node index {verifier}");
            assert_eq!(claims["iss"], "tandem");
        }
        let other = (issuer + 1) % 3;
        let url = format!("{}/.well-known/jwks.json", cluster.api_url(other));
        let claims = verify_with_pyjwt(&url, &issued.token)
            .await
            .unwrap_or_else(|e| panic!("PyJWT refused node {issuer}'s token: {e}"));
        assert_eq!(claims["sub"], subject);
        assert_eq!(claims["role"], "reader");
    }
    assert_eq!(
        signing_keys.len(),
        3,
        "each server signs with a key of its own"
    );

    // The three paths serve one set, the same on every server.
    let sets: Vec<BTreeSet<String>> = key_sets_on_every_path(&cluster).await;
    assert!(sets.windows(2).all(|w| w[0] == w[1]), "{sets:?}");
    assert!(signing_keys.is_subset(&sets[0]));
    cluster.assert_no_panics();
}

async fn key_sets_on_every_path(cluster: &Cluster) -> Vec<BTreeSet<String>> {
    let mut sets = Vec::new();
    for i in 0..3 {
        for path in ["/.well-known/jwks.json", "/v1/keys/jwks", "/api/pkeys"] {
            sets.push(cluster.jwks_kids_at(i, path).await.into_iter().collect());
        }
    }
    sets
}
