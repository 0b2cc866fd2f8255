//! Extractors that turn malformed input into the API's JSON errors instead of plain text.

use axum::body::Bytes;
use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{StatusCode, Uri};
use serde::de::DeserializeOwned;

use crate::error::ApiError;

/// Query parameters; a malformed query is a 400 that names the problem.
pub struct Query<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for Query<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        query_params(&parts.uri).map(Query)
    }
}

/// The query string of `uri` as `T`, exactly as the [`Query`] extractor reads it.
pub fn query_params<T: DeserializeOwned>(uri: &Uri) -> Result<T, ApiError> {
    axum::extract::Query::<T>::try_from_uri(uri)
        .map(|q| q.0)
        .map_err(|e| ApiError::bad_request(format!("bad query parameters: {}", e.body_text())))
}

/// A JSON body; malformed JSON is a 400 that says where it broke.
pub struct Json<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for Json<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        axum::Json::<T>::from_request(request, state)
            .await
            .map(|j| Json(j.0))
            .map_err(json_error)
    }
}

/// A JSON body as `T`, decoded as the [`Json`] extractor decodes it once the content type and
/// the size have been checked.
pub fn json_body<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    axum::Json::<T>::from_bytes(body)
        .map(|j| j.0)
        .map_err(json_error)
}

fn json_error(e: JsonRejection) -> ApiError {
    body_error("bad JSON body", e.status(), e.body_text())
}

/// A raw request body (a key/value or cache value); one over the size limit is a JSON 413.
pub struct RawBody(pub Bytes);

impl<S: Send + Sync> FromRequest<S> for RawBody {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        Bytes::from_request(request, state)
            .await
            .map(RawBody)
            .map_err(|e| body_error("cannot read the body", e.status(), e.body_text()))
    }
}

fn body_error(what: &str, status: StatusCode, detail: String) -> ApiError {
    if status == StatusCode::PAYLOAD_TOO_LARGE {
        return ApiError::new(
            status,
            "payload_too_large",
            format!("the body is larger than max_body_bytes allows: {detail}"),
        );
    }
    ApiError::bad_request(format!("{what}: {detail}"))
}

/// Parses a TTL such as `30s`, `5m`, `1h30m` or `250ms`.
pub fn parse_ttl(text: &str) -> Result<u64, ApiError> {
    let duration = humantime::parse_duration(text).map_err(|_| {
        ApiError::bad_request(format!("ttl {text:?} is not a duration like 30s, 5m or 1h"))
    })?;
    let ms = duration.as_millis();
    if ms == 0 {
        return Err(ApiError::bad_request(format!(
            "ttl {text:?} must be at least 1ms"
        )));
    }
    Ok(u64::try_from(ms).unwrap_or(u64::MAX))
}
