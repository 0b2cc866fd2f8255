//! Every API error is JSON `{"error": {"code", "message"}}` with the status that fits it.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use tandem_store::{Rejection, RejectionKind};

/// The error code of a 503 after which a request may or may not have been applied.
pub const OUTCOME_UNKNOWN: &str = "outcome_unknown";

#[derive(Clone, Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    /// Where the client should send the request instead (307).
    pub location: Option<String>,
    /// Seconds after which a retry may succeed (503).
    pub retry_after: Option<u32>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            location: None,
            retry_after: None,
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    pub fn unauthorized() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "missing or wrong secret: send `Authorization: Bearer <secret-api>`, or HTTP basic auth with the secret as the password",
        )
    }

    pub fn unavailable(message: impl Into<String>) -> Self {
        let mut e = Self::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", message);
        e.retry_after = Some(1);
        e
    }

    /// The request may or may not have been applied: retrying it is safe only when it is
    /// idempotent (PUT, DELETE, a compare-and-set, a read).
    pub fn outcome_unknown(message: impl Into<String>) -> Self {
        let mut e = Self::new(StatusCode::SERVICE_UNAVAILABLE, OUTCOME_UNKNOWN, message);
        e.retry_after = Some(1);
        e
    }

    pub fn internal(message: impl std::fmt::Display) -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            message.to_string(),
        )
    }

    pub fn redirect(location: String, active: u64) -> Self {
        let mut e = Self::new(
            StatusCode::TEMPORARY_REDIRECT,
            "not_active",
            format!("this node is a standby; node {active} is the active node at {location}"),
        );
        e.location = Some(location);
        e
    }
}

impl From<Rejection> for ApiError {
    fn from(r: Rejection) -> Self {
        let (status, code) = match r.kind {
            RejectionKind::Invalid => (StatusCode::BAD_REQUEST, "bad_request"),
            RejectionKind::Conflict => (StatusCode::CONFLICT, "conflict"),
            RejectionKind::Fenced => (StatusCode::CONFLICT, "fenced"),
            RejectionKind::NotFound => (StatusCode::NOT_FOUND, "not_found"),
            RejectionKind::Unauthorized => (StatusCode::UNAUTHORIZED, "unauthorized"),
        };
        ApiError::new(status, code, r.message)
    }
}

impl From<tandem_store::StoreError> for ApiError {
    fn from(e: tandem_store::StoreError) -> Self {
        tracing::error!(error = %e, "state database error");
        ApiError::internal(e)
    }
}

impl From<tandem_store::ReadError> for ApiError {
    fn from(e: tandem_store::ReadError) -> Self {
        match e {
            tandem_store::ReadError::Rejected(r) => r.into(),
            tandem_store::ReadError::Store(s) => s.into(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({"error": {"code": self.code, "message": self.message}});
        let mut response = (self.status, axum::Json(body)).into_response();
        if let Some(location) = self.location.and_then(|l| HeaderValue::from_str(&l).ok()) {
            response.headers_mut().insert(header::LOCATION, location);
        }
        if let Some(seconds) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

/// Compares secrets in time that does not depend on where they differ.
pub fn secrets_match(given: &[u8], expected: &[u8]) -> bool {
    if given.len() != expected.len() {
        return false;
    }
    given
        .iter()
        .zip(expected)
        .fold(0u8, |acc, (a, b)| acc | (a ^ b))
        == 0
}
