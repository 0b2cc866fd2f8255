//! Token and key-set requests the signing-key tests make of a node.

use serde_json::{json, Value};

use crate::cluster::Cluster;
use crate::http::HttpReply;

/// A token as `POST /v1/tokens` answered it.
#[derive(Clone, Debug)]
pub struct IssuedToken {
    pub token: String,
    pub kid: String,
}

impl Cluster {
    /// Issues a token on node `i` (panics unless it answers 200).
    pub async fn issue_token(&self, i: usize, claims: Value, ttl: &str) -> IssuedToken {
        let reply = self
            .post_json(i, "/v1/tokens", &json!({"claims": claims, "ttl": ttl}))
            .await
            .expect_status(200)
            .json();
        IssuedToken {
            token: reply["token"].as_str().expect("a token").to_string(),
            kid: reply["kid"].as_str().expect("a kid").to_string(),
        }
    }

    /// `POST /v1/tokens/verify` on node `i`.
    pub async fn verify_token(&self, i: usize, token: &str) -> HttpReply {
        self.post_json(i, "/v1/tokens/verify", &json!({ "token": token }))
            .await
    }

    /// The key ids in node `i`'s public key set.
    pub async fn jwks_kids(&self, i: usize) -> Vec<String> {
        self.jwks_kids_at(i, "/.well-known/jwks.json").await
    }

    /// The key ids in the key set node `i` serves at `path`.
    pub async fn jwks_kids_at(&self, i: usize, path: &str) -> Vec<String> {
        let set = self.get(i, path).await.expect_status(200).json();
        set["keys"]
            .as_array()
            .map(|keys| {
                keys.iter()
                    .filter_map(|k| k["kid"].as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The key id node `i` signs with, once it has one.
    pub async fn signing_kid(&self, i: usize) -> Option<String> {
        let keys = self.get(i, "/v1/keys").await;
        if keys.status != 200 {
            return None;
        }
        keys.json()["signing_kid"].as_str().map(str::to_string)
    }
}
