//! The dashboard at `/ui`: one page served by the binary itself (no build step, no CDN) that
//! signs in with the API secret and then polls this server's API for the servers, agents, mesh,
//! signing keys and events.
//!
//! Signing in trades the secret (in a POST body, never a URL) for a session cookie, HttpOnly and
//! SameSite=Strict: `<expiry>.<HMAC-SHA256 of it under the API secret>`. Every server holds the
//! same secret, so the session holds on all of them (forwarded requests carry it) and ends when
//! the secret changes. It authorises reads only (GET), so a page elsewhere can change nothing
//! with it.

use aws_lc_rs::hmac;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::Deserialize;

use crate::error::{secrets_match, ApiError};
use crate::extract::Json;
use crate::state::ApiSecret;

const PAGE: &str = include_str!("ui/index.html");
const SCRIPT: &str = include_str!("ui/app.js");
const STYLE: &str = include_str!("ui/style.css");
pub const COOKIE: &str = "tandem_ui";
/// How long a session lasts.
const SESSION_SECS: u64 = 12 * 3600;

/// `GET /ui`: the page; it loads only its own script and style, from this server.
pub async fn page() -> Response {
    (
        [
            (header::CACHE_CONTROL, "no-store"),
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'self'; frame-ancestors 'none'",
            ),
        ],
        Html(PAGE),
    )
        .into_response()
}

pub async fn script() -> Response {
    asset("text/javascript; charset=utf-8", SCRIPT)
}

pub async fn style() -> Response {
    asset("text/css; charset=utf-8", STYLE)
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignIn {
    secret: String,
}

/// `POST /ui/session` with `{"secret": ...}`: a session cookie, or 401.
pub async fn sign_in(
    State(secret): State<ApiSecret>,
    Json(sign_in): Json<SignIn>,
) -> Result<Response, ApiError> {
    if !secrets_match(sign_in.secret.trim().as_bytes(), secret.0.as_bytes()) {
        return Err(ApiError::unauthorized());
    }
    let expires = unix_secs().saturating_add(SESSION_SECS);
    let cookie = format!(
        "{COOKIE}={}; Path=/; HttpOnly; SameSite=Strict; Max-Age={SESSION_SECS}",
        session(&secret, expires)
    );
    Ok(set_cookie(StatusCode::NO_CONTENT, &cookie))
}

/// `POST /ui/session/end`: the cookie is dropped.
pub async fn sign_out() -> Response {
    let cookie = format!("{COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0");
    set_cookie(StatusCode::NO_CONTENT, &cookie)
}

fn set_cookie(status: StatusCode, cookie: &str) -> Response {
    let mut response = status.into_response();
    if let Ok(value) = HeaderValue::from_str(cookie) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    response
}

/// Whether a request is a read carrying a valid session cookie.
pub fn has_session(method: &Method, headers: &HeaderMap, secret: &ApiSecret) -> bool {
    if method != Method::GET && method != Method::HEAD {
        return false;
    }
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().strip_prefix(COOKIE)?.strip_prefix('='))
        .any(|token| session_valid(secret, token, unix_secs()))
}

fn session(secret: &ApiSecret, expires: u64) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret.0.as_bytes());
    let tag = hmac::sign(&key, format!("tandem-ui-session:{expires}").as_bytes());
    format!("{expires}.{}", URL_SAFE_NO_PAD.encode(tag.as_ref()))
}

fn session_valid(secret: &ApiSecret, token: &str, now: u64) -> bool {
    let Some((expires, _)) = token.split_once('.') else {
        return false;
    };
    let Ok(expires) = expires.parse::<u64>() else {
        return false;
    };
    expires > now && secrets_match(token.as_bytes(), session(secret, expires).as_bytes())
}

fn unix_secs() -> u64 {
    u64::try_from(tandem_ha::now_ms() / 1000).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    fn secret(text: &str) -> ApiSecret {
        ApiSecret(Arc::from(text))
    }

    fn cookie(token: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        let value = format!("other=1; {COOKIE}={token}");
        headers.insert(
            header::COOKIE,
            HeaderValue::from_str(&value).expect("ascii"),
        );
        headers
    }

    #[test]
    fn a_session_holds_for_reads_until_it_expires_and_only_under_its_secret() {
        let ours = secret("the-api-secret-0123456789");
        let now = unix_secs();
        let token = session(&ours, now + 60);
        assert!(has_session(&Method::GET, &cookie(&token), &ours));
        assert!(
            !has_session(&Method::POST, &cookie(&token), &ours),
            "reads only"
        );
        let theirs = secret("another-secret-9876543210");
        assert!(!has_session(&Method::GET, &cookie(&token), &theirs));
        let expired = session(&ours, now - 1);
        assert!(!has_session(&Method::GET, &cookie(&expired), &ours));
        let (expiry, tag) = token.split_once('.').expect("two parts");
        let later: u64 = expiry.parse::<u64>().expect("a number") + 3600;
        assert!(
            !has_session(&Method::GET, &cookie(&format!("{later}.{tag}")), &ours),
            "the expiry is signed"
        );
        for garbage in ["", ".", "x.y", "99999999999.", "1.2.3"] {
            assert!(
                !has_session(&Method::GET, &cookie(garbage), &ours),
                "{garbage:?}"
            );
        }
    }
}
