//! Tokens and the key set over HTTP: the public JWKS (three paths, no secret), issuing and
//! verifying tokens, listing keys and rotating this server's key. All are served by the node
//! that receives them: each server signs with its own key. A standby that does not know the key
//! a token names asks the active node, through the one channel to it.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use serde::Deserialize;
use serde_json::{json, Value};
use tandem_keys::{issue_token, Claims, VerifyError, VerifyingKeys};

use tandem_ha::now_ms;
use tandem_raft::wire::FORWARDED_BY_HEADER;

use crate::active_channel::ActiveChannel;
use crate::credentials::Caller;
use crate::error::ApiError;
use crate::extract::{parse_ttl, Json, RawBody};
use crate::keys::{merged_key_set, rotate, verifying_keys, Keys};
use crate::replicated::Consistency;

/// Verifiers may cache the key set this long; a key is published before it signs, and standard
/// JWT libraries fetch the set again when a token names a key they have not seen.
const JWKS_CACHE_CONTROL: &str = "public, max-age=60";

pub async fn jwks(State(keys): State<Keys>) -> Result<Response, ApiError> {
    let set = merged_key_set(&keys)?;
    let mut response = axum::Json(set).into_response();
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static(JWKS_CACHE_CONTROL),
    );
    Ok(response)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IssueRequest {
    #[serde(default)]
    claims: Claims,
    ttl: Option<String>,
}

pub async fn issue(
    State(keys): State<Keys>,
    Json(request): Json<IssueRequest>,
) -> Result<axum::Json<Value>, ApiError> {
    let longest = keys.policy.token_duration;
    let longest_ms = longest.as_millis() as u64;
    let ttl_ms = match &request.ttl {
        Some(text) => parse_ttl(text)?,
        None => longest_ms,
    };
    if ttl_ms < 1000 || ttl_ms > longest_ms {
        return Err(ApiError::bad_request(format!(
            "ttl {} must be between 1s and token_duration ({})",
            request.ttl.as_deref().unwrap_or_default(),
            humantime::format_duration(longest)
        )));
    }
    let key = keys.ring.signer().ok_or_else(|| {
        ApiError::unavailable(
            "this server has no published signing key yet (the cluster may still be forming); retry shortly",
        )
    })?;
    let now_secs = (now_ms() / 1000) as u64;
    let ttl_secs = ttl_ms / 1000;
    let token = issue_token(
        &key,
        &keys.policy.token_issuer,
        request.claims,
        now_secs,
        ttl_secs,
    )
    .map_err(|e| ApiError::bad_request(e.to_string()))?;
    metrics::counter!("tandem_tokens_issued_total").increment(1);
    Ok(axum::Json(json!({
        "token": token,
        "kid": key.kid(),
        "expires_at": now_secs + ttl_secs,
    })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VerifyRequest {
    token: String,
}

pub async fn verify(
    State(keys): State<Keys>,
    State(active): State<ActiveChannel>,
    parts: Parts,
    RawBody(body): RawBody,
) -> Response {
    let token = match serde_json::from_slice::<VerifyRequest>(&body) {
        Ok(request) => request.token,
        Err(e) => return ApiError::bad_request(format!("bad JSON body: {e}")).into_response(),
    };
    let key_set = match key_set_knowing(&keys, &token).await {
        Ok(key_set) => key_set,
        Err(e) => return e.into_response(),
    };
    let unknown = tandem_keys::token_key_id(&token).filter(|kid| !key_set.knows(kid));
    if let Some(kid) = unknown {
        // A standby may be behind (cut off, or on a slow link): it asks the active node, which
        // has every published key, rather than call a key unknown that it may not have yet.
        let view = active.view();
        let forwarded = parts.headers.contains_key(FORWARDED_BY_HEADER);
        match view.other_active() {
            Some(target) if !forwarded => {
                let request = Request::from_parts(parts, Body::from(body));
                return active.forward(target.clone(), request).await;
            }
            None if !view.is_self => {
                return ApiError::unavailable(format!(
                    "key {kid:?} is not known here and no active node is known to ask; retry"
                ))
                .into_response()
            }
            _ => {
                // This node takes itself for the active one, but a deposed active node that has
                // not noticed yet is behind: before calling a key unknown, it confirms its role
                // and applies everything committed (a linearizable read), then looks again.
                let fresh = match keys.data.read_barrier(Consistency::Linearizable).await {
                    Ok(()) => verifying_keys(&keys),
                    Err(e) => Err(e),
                };
                return match fresh {
                    Ok(key_set) => verify_with(&key_set, &token).into_response(),
                    Err(e) => e.into_response(),
                };
            }
        }
    }
    verify_with(&key_set, &token).into_response()
}

fn verify_with(keys: &VerifyingKeys, token: &str) -> Result<axum::Json<Value>, ApiError> {
    let verified = keys.verify(token);
    let result = match &verified {
        Ok(_) => "valid",
        Err(e) => e.code(),
    };
    metrics::counter!("tandem_tokens_verified_total", "result" => result).increment(1);
    match verified {
        Ok(claims) => Ok(axum::Json(json!({ "claims": claims }))),
        Err(e) => Err(rejected(e)),
    }
}

fn rejected(e: VerifyError) -> ApiError {
    ApiError::new(StatusCode::UNAUTHORIZED, e.code(), e.to_string())
}

/// The key set, once it holds the key the token names or a short wait is over: a key is
/// published (committed) before it signs, but this node usually applies it a heartbeat later
/// than the server that signed with it.
async fn key_set_knowing(keys: &Keys, token: &str) -> Result<Arc<VerifyingKeys>, ApiError> {
    let kid = tandem_keys::token_key_id(token);
    let deadline = tokio::time::Instant::now() + keys.policy.key_arrival;
    loop {
        let key_set = verifying_keys(keys)?;
        let known = kid.as_deref().is_none_or(|kid| key_set.knows(kid));
        if known || tokio::time::Instant::now() >= deadline {
            return Ok(key_set);
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Every key in the set with its owner and dates, this server's signing key, and the peers.
pub async fn list(State(keys): State<Keys>) -> Result<axum::Json<Value>, ApiError> {
    let published = keys.data.read_now(|reads| reads.keys_published())?;
    let published: Vec<Value> = published
        .iter()
        .map(|k| {
            json!({
                "kid": k.kid,
                "node_id": k.node_id,
                "published_at_ms": k.published_at_ms,
                "retired_at_ms": k.retired_at_ms,
                "remove_at_ms": k.remove_at_ms,
            })
        })
        .collect();
    Ok(axum::Json(json!({
        "node_id": keys.node_id,
        "signing_kid": keys.ring.signer().map(|k| k.kid().to_string()),
        "keys": published,
        "peers": keys.ring.peer_statuses(),
    })))
}

/// Makes, publishes and starts signing with a new key on this server now; the previous key is
/// retired and stays in the key set until the last token it signed has expired.
pub async fn rotate_now(
    State(keys): State<Keys>,
    Extension(caller): Extension<Caller>,
) -> Result<axum::Json<Value>, ApiError> {
    let previous = keys.ring.signer().map(|k| k.kid().to_string());
    let kid = rotate(&keys, true, caller.who()).await?;
    metrics::counter!("tandem_signing_key_rotations_total").increment(1);
    Ok(axum::Json(json!({ "kid": kid, "previous_kid": previous })))
}
