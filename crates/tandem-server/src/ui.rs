//! The dashboard at `/ui`: one page served by the binary itself (no build step, no CDN) that
//! signs in with the API secret or a scoped credential and then polls this server's API for the
//! servers, agents, mesh, signing keys and events.
//!
//! Signing in trades the secret (in a POST body, never a URL) for a session cookie, HttpOnly and
//! SameSite=Strict: `<expiry>.<subject>.<HMAC-SHA256 of both under the API secret>`, where the
//! subject is "root" or the credential's id. Every server holds the same secret, so the session
//! holds on all of them (forwarded requests carry it) and ends when the secret changes or the
//! credential is revoked. It authorises reads only (GET), within the credential's grants, so a
//! page elsewhere can change nothing with it.

use aws_lc_rs::hmac;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::Deserialize;

use crate::credentials::Credentials;
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

/// `POST /ui/session` with `{"secret": ...}` (the API secret or a scoped credential): a session
/// cookie, or 401.
pub async fn sign_in(
    State(credentials): State<Credentials>,
    Json(sign_in): Json<SignIn>,
) -> Result<Response, ApiError> {
    let caller = credentials
        .identify(&sign_in.secret)?
        .ok_or_else(ApiError::unauthorized)?;
    let expires = unix_secs().saturating_add(SESSION_SECS);
    let cookie = format!(
        "{COOKIE}={}; Path=/; HttpOnly; SameSite=Strict; Max-Age={SESSION_SECS}",
        session(&credentials.secret, caller.session_subject(), expires)
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

/// Who a read's valid session cookie names ("root" or a credential's id), if it carries one.
pub fn session_subject(method: &Method, headers: &HeaderMap, secret: &ApiSecret) -> Option<String> {
    if method != Method::GET && method != Method::HEAD {
        return None;
    }
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().strip_prefix(COOKIE)?.strip_prefix('='))
        .find_map(|token| session_valid(secret, token, unix_secs()))
}

fn session(secret: &ApiSecret, subject: &str, expires: u64) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret.0.as_bytes());
    let tag = hmac::sign(
        &key,
        format!("tandem-ui-session:{expires}:{subject}").as_bytes(),
    );
    format!(
        "{expires}.{subject}.{}",
        URL_SAFE_NO_PAD.encode(tag.as_ref())
    )
}

/// The subject of a session token that is signed and unexpired.
fn session_valid(secret: &ApiSecret, token: &str, now: u64) -> Option<String> {
    let mut parts = token.splitn(3, '.');
    let expires = parts.next()?.parse::<u64>().ok()?;
    let subject = parts.next()?;
    let valid = expires > now
        && secrets_match(
            token.as_bytes(),
            session(secret, subject, expires).as_bytes(),
        );
    valid.then(|| subject.to_string())
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
        let has = |method: &Method, token: &str, secret: &ApiSecret| {
            session_subject(method, &cookie(token), secret)
        };
        let token = session(&ours, "root", now + 60);
        assert_eq!(has(&Method::GET, &token, &ours).as_deref(), Some("root"));
        assert_eq!(has(&Method::POST, &token, &ours), None, "reads only");
        let theirs = secret("another-secret-9876543210");
        assert_eq!(has(&Method::GET, &token, &theirs), None);
        let expired = session(&ours, "root", now - 1);
        assert_eq!(has(&Method::GET, &expired, &ours), None);
        let (expiry, rest) = token.split_once('.').expect("three parts");
        let later: u64 = expiry.parse::<u64>().expect("a number") + 3600;
        assert_eq!(
            has(&Method::GET, &format!("{later}.{rest}"), &ours),
            None,
            "the expiry is signed"
        );
        let (subject, tag) = rest.split_once('.').expect("subject and tag");
        assert_eq!(subject, "root");
        assert_eq!(
            has(
                &Method::GET,
                &format!("{expiry}.0123456789abcdef.{tag}"),
                &ours
            ),
            None,
            "the subject is signed"
        );
        let scoped = session(&ours, "0123456789abcdef", now + 60);
        assert_eq!(
            has(&Method::GET, &scoped, &ours).as_deref(),
            Some("0123456789abcdef")
        );
        for garbage in ["", ".", "x.y", "99999999999.", "1.2.3", "99999999999.root."] {
            assert_eq!(has(&Method::GET, garbage, &ours), None, "{garbage:?}");
        }
    }
}
