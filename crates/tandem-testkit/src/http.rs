//! Raw HTTP for tests: no redirects are followed (so tests see 307s) and no connection is
//! reused (a node restarted on the same port must not meet a stale pooled connection).

use std::time::Duration;

use reqwest::header::HeaderMap;
use reqwest::{Method, StatusCode};
use serde_json::Value;

/// A reqwest client that shows redirects to the caller instead of following them.
pub fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .pool_max_idle_per_host(0)
        .connect_timeout(Duration::from_secs(2))
        .timeout(Duration::from_secs(15))
        .build()
        .expect("the test HTTP client builds")
}

/// A client for the cluster port. With a secret it presents a certificate from the CA derived
/// from that secret, as a node does; without one it speaks TLS with no certificate at all.
pub fn cluster_port_client(secret: Option<&str>) -> reqwest::Client {
    let builder = match secret {
        Some(secret) => {
            tandem_tls::ClusterTls::from_secret(tandem_tls::DerivedCaSettings::new(9_999, secret))
                .expect("a test cluster identity")
                .https_client_builder()
        }
        None => reqwest::Client::builder().tls_danger_accept_invalid_certs(true),
    };
    builder
        .redirect(reqwest::redirect::Policy::none())
        .pool_max_idle_per_host(0)
        .connect_timeout(Duration::from_secs(2))
        .timeout(Duration::from_secs(15))
        .build()
        .expect("the test cluster-port client builds")
}

/// An answer, whatever its status, with the URL it came from for failure messages.
#[derive(Debug)]
pub struct HttpReply {
    pub url: String,
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

/// The body of every API error: `{"error": {"code", "message"}}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiErrorBody {
    pub code: String,
    pub message: String,
}

impl HttpReply {
    pub async fn read(url: String, response: reqwest::Response) -> Result<Self, reqwest::Error> {
        let status = response.status();
        let headers = response.headers().clone();
        let body = response.bytes().await?.to_vec();
        Ok(HttpReply {
            url,
            status,
            headers,
            body,
        })
    }

    /// The same checks for an answer that came through [`tandem_client::Client`];
    /// `what` names the request in failure messages.
    pub fn from_client(what: impl Into<String>, reply: tandem_client::Reply) -> Self {
        HttpReply {
            url: what.into(),
            status: reply.status,
            headers: reply.headers,
            body: reply.body,
        }
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body as JSON; panics with the body when it is not.
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "{} answered {} with a body that is not JSON ({e}): {:?}",
                self.url,
                self.status,
                self.text()
            )
        })
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Panics unless the status is `expected`; answers self for chaining.
    #[track_caller]
    pub fn expect_status(self, expected: u16) -> Self {
        assert_eq!(
            self.status.as_u16(),
            expected,
            "{} answered {} (expected {expected}): {}",
            self.url,
            self.status,
            self.text()
        );
        self
    }

    /// Checks that this is an API error with `expected` status and a JSON body
    /// `{"error": {"code", "message"}}` whose code and message are not empty.
    #[track_caller]
    pub fn expect_api_error(&self, expected: u16) -> ApiErrorBody {
        assert_eq!(
            self.status.as_u16(),
            expected,
            "{} answered {} (expected {expected}): {}",
            self.url,
            self.status,
            self.text()
        );
        let content_type = self.header("content-type").unwrap_or_default();
        assert!(
            content_type.starts_with("application/json"),
            "{}: error answer has content-type {content_type:?}, not JSON: {}",
            self.url,
            self.text()
        );
        let body = self.json();
        let field = |name: &str| {
            body["error"][name]
                .as_str()
                .unwrap_or_else(|| {
                    panic!(
                        "{}: error body has no string error.{name}: {body}",
                        self.url
                    )
                })
                .to_string()
        };
        let (code, message) = (field("code"), field("message"));
        assert!(!code.is_empty(), "{}: empty error code: {body}", self.url);
        assert!(
            !message.trim().is_empty(),
            "{}: empty error message: {body}",
            self.url
        );
        ApiErrorBody { code, message }
    }
}

/// How a request presents the API secret.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Auth<'a> {
    /// `Authorization: Bearer <secret>`, as Tandem's clients send it.
    Bearer(&'a str),
    /// HTTP basic auth with the secret as the password, as rqlite clients send it.
    Basic { user: &'a str, secret: &'a str },
}

/// Sends one request, authenticated as `auth` says.
pub(crate) async fn send(
    http: &reqwest::Client,
    method: Method,
    url: String,
    auth: Option<Auth<'_>>,
    body: Option<(&str, Vec<u8>)>,
    timeout: Option<Duration>,
) -> Result<HttpReply, reqwest::Error> {
    let mut request = http.request(method, &url);
    match auth {
        Some(Auth::Bearer(secret)) => request = request.bearer_auth(secret),
        Some(Auth::Basic { user, secret }) => request = request.basic_auth(user, Some(secret)),
        None => {}
    }
    if let Some((content_type, bytes)) = body {
        request = request
            .header(reqwest::header::CONTENT_TYPE, content_type)
            .body(bytes);
    }
    if let Some(timeout) = timeout {
        request = request.timeout(timeout);
    }
    let response = request.send().await?;
    HttpReply::read(url, response).await
}
