//! A client for Tandem's API that knows several servers: it tries each in turn when one is
//! down, follows a follower's redirect to the leader itself (so the secret travels with it),
//! and retries while the cluster has no leader, up to a deadline.
#![forbid(unsafe_code)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use reqwest::header::{HeaderMap, AUTHORIZATION, LOCATION};
pub use reqwest::{Method, StatusCode};

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("no endpoints given; pass --addr HOST:PORT")]
    NoEndpoints,
    #[error("no server answered: {0}")]
    Unreachable(String),
    #[error("{message} (HTTP {status}, {code})")]
    Api {
        status: StatusCode,
        code: String,
        message: String,
    },
    #[error("gave up after {0:?}: {1}")]
    Deadline(Duration, String),
    #[error("{0}: the request may or may not have been applied; not retried because it is not idempotent")]
    OutcomeUnknown(String),
    #[error("cannot build the HTTP client: {0}")]
    Build(reqwest::Error),
}

/// An answer from a server, whatever its status.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn json(&self) -> Result<serde_json::Value, ClientError> {
        serde_json::from_slice(&self.body).map_err(|e| ClientError::Api {
            status: self.status,
            code: "bad_reply".into(),
            message: format!("the server's answer is not JSON: {e}"),
        })
    }

    /// A 503 after which the request may or may not have been applied.
    pub fn outcome_unknown(&self) -> bool {
        self.status == StatusCode::SERVICE_UNAVAILABLE
            && serde_json::from_slice::<serde_json::Value>(&self.body)
                .is_ok_and(|v| v["error"]["code"] == "outcome_unknown")
    }

    /// Turns an error status into [`ClientError::Api`] with the server's code and message.
    pub fn error_for_status(self) -> Result<Reply, ClientError> {
        if self.status.is_success() {
            return Ok(self);
        }
        let parsed: Option<serde_json::Value> = serde_json::from_slice(&self.body).ok();
        let field = |name: &str| {
            parsed
                .as_ref()
                .and_then(|v| v["error"][name].as_str())
                .map(str::to_string)
        };
        Err(ClientError::Api {
            status: self.status,
            code: field("code").unwrap_or_else(|| "error".into()),
            message: field("message")
                .unwrap_or_else(|| String::from_utf8_lossy(&self.body).into_owned()),
        })
    }
}

pub struct Client {
    endpoints: Vec<String>,
    secret: Option<String>,
    http: reqwest::Client,
    /// The endpoint that answered last: tried first next time.
    preferred: AtomicUsize,
    deadline: Duration,
}

/// `host:port` or a full URL; answers the base URL without a trailing slash.
fn base_url(endpoint: &str) -> String {
    let trimmed = endpoint.trim().trim_end_matches('/');
    if trimmed.starts_with("http://") || trimmed.starts_with("https://") {
        trimmed.to_string()
    } else {
        format!("http://{trimmed}")
    }
}

const MAX_REDIRECTS: usize = 5;
const RETRY_PAUSE: Duration = Duration::from_millis(50);

impl Client {
    pub fn new(endpoints: &[String], secret: Option<String>) -> Result<Client, ClientError> {
        if endpoints.is_empty() {
            return Err(ClientError::NoEndpoints);
        }
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(Duration::from_secs(2))
            .timeout(Duration::from_secs(30))
            .build()
            .map_err(ClientError::Build)?;
        Ok(Client {
            endpoints: endpoints.iter().map(|e| base_url(e)).collect(),
            secret,
            http,
            preferred: AtomicUsize::new(0),
            deadline: Duration::from_secs(15),
        })
    }

    /// How long a request keeps retrying while no server can serve it.
    pub fn with_deadline(mut self, deadline: Duration) -> Self {
        self.deadline = deadline;
        self
    }

    async fn send_once(
        &self,
        method: &Method,
        url: &str,
        body: &Option<Vec<u8>>,
        content_type: &str,
    ) -> Result<Reply, reqwest::Error> {
        let mut request = self.http.request(method.clone(), url);
        if let Some(secret) = &self.secret {
            request = request.header(AUTHORIZATION, format!("Bearer {secret}"));
        }
        if let Some(body) = body {
            request = request
                .header(reqwest::header::CONTENT_TYPE, content_type)
                .body(body.clone());
        }
        let response = request.send().await?;
        let status = response.status();
        let headers = response.headers().clone();
        let body = response.bytes().await?.to_vec();
        Ok(Reply {
            status,
            headers,
            body,
        })
    }

    /// Sends a request to the cluster and answers the first reply that is not a redirect or a
    /// "no leader yet" 503. Error statuses are returned as replies, not errors. A POST whose
    /// outcome is unknown (a 503 `outcome_unknown`, or a connection lost after sending) is not
    /// repeated: it is not idempotent. Unconditional PUT and DELETE, and GET, are.
    pub async fn send(
        &self,
        method: Method,
        path_and_query: &str,
        body: Option<Vec<u8>>,
        content_type: &str,
    ) -> Result<Reply, ClientError> {
        let started = tokio::time::Instant::now();
        let idempotent = is_idempotent(&method, path_and_query);
        let mut last_problem = String::new();
        let mut attempt = 0usize;
        loop {
            let index = (self.preferred.load(Ordering::Relaxed) + attempt) % self.endpoints.len();
            let mut url = format!("{}{}", self.endpoints[index], path_and_query);
            for _ in 0..=MAX_REDIRECTS {
                match self.send_once(&method, &url, &body, content_type).await {
                    // Sent but unanswered: only a request that may be repeated is sent again.
                    Err(e) if !e.is_connect() && !idempotent => {
                        return Err(ClientError::OutcomeUnknown(format!("{url}: {e}")));
                    }
                    Err(e) => {
                        last_problem = format!("{url}: {e}");
                        break;
                    }
                    Ok(reply) if reply.status == StatusCode::TEMPORARY_REDIRECT => {
                        let Some(location) =
                            reply.headers.get(LOCATION).and_then(|l| l.to_str().ok())
                        else {
                            return Ok(reply);
                        };
                        url = location.to_string();
                        if let Some(known) = self
                            .endpoints
                            .iter()
                            .position(|e| url.starts_with(e.as_str()))
                        {
                            self.preferred.store(known, Ordering::Relaxed);
                        }
                    }
                    Ok(reply)
                        if reply.status == StatusCode::SERVICE_UNAVAILABLE
                            && (idempotent || !reply.outcome_unknown()) =>
                    {
                        last_problem = format!("{url}: {}", String::from_utf8_lossy(&reply.body));
                        if started.elapsed() >= self.deadline {
                            return Ok(reply);
                        }
                        break;
                    }
                    Ok(reply) => {
                        if attempt > 0 {
                            self.preferred.store(index, Ordering::Relaxed);
                        }
                        return Ok(reply);
                    }
                }
            }
            attempt += 1;
            if started.elapsed() >= self.deadline {
                return Err(if last_problem.contains("error sending request") {
                    ClientError::Unreachable(last_problem)
                } else {
                    ClientError::Deadline(self.deadline, last_problem)
                });
            }
            // Every endpoint tried once: pause briefly. A new leader is usually known within a
            // few hundred milliseconds, so short pauses beat the server's one-second Retry-After.
            if attempt.is_multiple_of(self.endpoints.len()) {
                tokio::time::sleep(RETRY_PAUSE).await;
            }
        }
    }

    pub async fn get(&self, path: &str) -> Result<Reply, ClientError> {
        self.send(Method::GET, path, None, "").await
    }

    pub async fn post_json(
        &self,
        path: &str,
        body: &serde_json::Value,
    ) -> Result<Reply, ClientError> {
        self.send(
            Method::POST,
            path,
            Some(body.to_string().into_bytes()),
            "application/json",
        )
        .await
    }

    pub async fn put_bytes(&self, path: &str, body: Vec<u8>) -> Result<Reply, ClientError> {
        self.send(Method::PUT, path, Some(body), "application/octet-stream")
            .await
    }

    pub async fn delete(&self, path: &str) -> Result<Reply, ClientError> {
        self.send(Method::DELETE, path, None, "").await
    }
}

/// May this request be sent again when its first attempt's outcome is unknown? GET, PUT and
/// DELETE may, unless they are conditional (`if_revision`: a retry of an applied compare-and-set
/// would fail and hide that it succeeded); POST may not.
fn is_idempotent(method: &Method, path_and_query: &str) -> bool {
    let conditional = path_and_query.split_once('?').is_some_and(|(_, query)| {
        query
            .split('&')
            .any(|pair| pair.starts_with("if_revision="))
    });
    *method != Method::POST && !(conditional && *method != Method::GET)
}

/// Escapes one path segment (a key, namespace or lock name) for a URL.
pub fn segment(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(byte as char)
            }
            other => out.push_str(&format!("%{other:02X}")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_become_base_urls() {
        assert_eq!(base_url("127.0.0.1:8200"), "http://127.0.0.1:8200");
        assert_eq!(base_url("http://a:1/"), "http://a:1");
    }

    #[test]
    fn only_unconditional_puts_deletes_and_reads_are_repeated() {
        assert!(is_idempotent(&Method::GET, "/v1/kv/a"));
        assert!(is_idempotent(&Method::PUT, "/v1/kv/a?ttl=5s"));
        assert!(is_idempotent(&Method::DELETE, "/v1/kv/a"));
        assert!(!is_idempotent(&Method::POST, "/v1/sql/execute"));
        assert!(!is_idempotent(&Method::PUT, "/v1/kv/a?if_revision=3"));
        assert!(!is_idempotent(
            &Method::DELETE,
            "/v1/kv/a?ttl=1s&if_revision=3"
        ));
    }

    #[test]
    fn segments_are_escaped() {
        assert_eq!(segment("a b/c"), "a%20b%2Fc");
        assert_eq!(segment("plain-key_1.x"), "plain-key_1.x");
    }
}
