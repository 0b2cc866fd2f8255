//! A client for Tandem's API that knows several servers: it tries each in turn when one is
//! down, follows a follower's redirect to the leader itself (so the secret travels with it),
//! and retries while the cluster has no leader, up to a deadline.
#![forbid(unsafe_code)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use reqwest::header::{HeaderMap, AUTHORIZATION, LOCATION};
pub use reqwest::{Method, StatusCode};

mod pick;
pub use pick::{PickError, PickOptions, PickedAgent, NO_HEALTHY_AGENT};

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
    #[error("cannot write the download: {0}")]
    Sink(String),
    #[error("the CA file holds no usable PEM certificate: {0}")]
    Ca(String),
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

    /// The error code of a JSON error answer (`{"error": {"code": ...}}`).
    pub fn error_code(&self) -> Option<String> {
        serde_json::from_slice::<serde_json::Value>(&self.body)
            .ok()?
            .pointer("/error/code")?
            .as_str()
            .map(str::to_string)
    }

    /// A 503 after which the request may or may not have been applied.
    pub fn outcome_unknown(&self) -> bool {
        self.status == StatusCode::SERVICE_UNAVAILABLE
            && self.error_code().as_deref() == Some("outcome_unknown")
    }

    /// A 503 that is the cluster's answer rather than its outage (a pick that found no healthy
    /// agent): trying another server or again at once would only repeat it.
    fn is_final_503(&self) -> bool {
        self.status == StatusCode::SERVICE_UNAVAILABLE
            && self.error_code().as_deref() == Some(pick::NO_HEALTHY_AGENT)
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

/// A server's answer to one attempt: read whole, or, for a download, a success still open.
enum Answer {
    Read(Reply),
    Open(reqwest::Response),
}

/// Makes the value sent as `Authorization: Bearer <value>`, once per request: an agent's
/// short-lived signed assertion, for one.
pub type BearerSource = Arc<dyn Fn() -> String + Send + Sync>;

/// How requests are authenticated.
enum Auth {
    None,
    /// The cluster's API secret, the same on every request.
    Secret(String),
    Bearer(BearerSource),
}

impl Auth {
    fn bearer(&self) -> Option<String> {
        match self {
            Auth::None => None,
            Auth::Secret(secret) => Some(secret.clone()),
            Auth::Bearer(source) => Some(source()),
        }
    }
}

pub struct Client {
    /// Base URLs. Replaced whole by [`Client::set_endpoints`]; a request works on the list it
    /// started with.
    endpoints: RwLock<Arc<[String]>>,
    auth: Auth,
    http: reqwest::Client,
    /// The endpoint that answered last: tried first next time. Taken modulo the list's length,
    /// so it stays usable when the list shrinks.
    preferred: AtomicUsize,
    deadline: Duration,
    request_timeout: Duration,
    /// The only CAs trusted for HTTPS, when given ([`Client::with_ca_pem`]).
    ca: Option<Vec<reqwest::Certificate>>,
}

/// `host:port` or a full URL; answers the base URL without a trailing slash.
pub fn base_url(endpoint: &str) -> String {
    let trimmed = endpoint.trim().trim_end_matches('/');
    if trimmed.starts_with("http://") || trimmed.starts_with("https://") {
        trimmed.to_string()
    } else {
        format!("http://{trimmed}")
    }
}

/// [`base_url`] over HTTPS: a bare `host:port` or an `http://` URL becomes `https://`.
fn https_url(endpoint: &str) -> String {
    let url = base_url(endpoint);
    match url.strip_prefix("http://") {
        Some(rest) => format!("https://{rest}"),
        None => url,
    }
}

const MAX_REDIRECTS: usize = 5;
const RETRY_PAUSE: Duration = Duration::from_millis(50);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// The longest a download may take in all; each read must still come within [`REQUEST_TIMEOUT`].
const DOWNLOAD_TIMEOUT: Duration = Duration::from_secs(24 * 3600);
/// The request header that asks a standby for a redirect to the active node instead of
/// forwarding the request there.
pub const NO_FORWARDING_HEADER: &str = "x-tandem-no-request-forwarding";

fn http_client(
    request_timeout: Duration,
    ca: Option<&[reqwest::Certificate]>,
) -> Result<reqwest::Client, ClientError> {
    let mut builder = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(Duration::from_secs(2))
        .timeout(request_timeout)
        .read_timeout(request_timeout);
    if let Some(ca) = ca {
        builder = builder.tls_certs_only(ca.iter().cloned());
    }
    builder.build().map_err(ClientError::Build)
}

impl Client {
    /// A client that sends `secret` (the cluster's API secret), if any, as its bearer token.
    pub fn new(endpoints: &[String], secret: Option<String>) -> Result<Client, ClientError> {
        Client::with_auth(endpoints, secret.map_or(Auth::None, Auth::Secret))
    }

    /// A client whose bearer token `bearer` makes anew for every request.
    pub fn with_bearer(endpoints: &[String], bearer: BearerSource) -> Result<Client, ClientError> {
        Client::with_auth(endpoints, Auth::Bearer(bearer))
    }

    fn with_auth(endpoints: &[String], auth: Auth) -> Result<Client, ClientError> {
        if endpoints.is_empty() {
            return Err(ClientError::NoEndpoints);
        }
        Ok(Client {
            endpoints: RwLock::new(endpoints.iter().map(|e| base_url(e)).collect()),
            auth,
            http: http_client(REQUEST_TIMEOUT, None)?,
            preferred: AtomicUsize::new(0),
            deadline: Duration::from_secs(15),
            request_timeout: REQUEST_TIMEOUT,
            ca: None,
        })
    }

    /// How long a request keeps retrying while no server can serve it.
    pub fn with_deadline(mut self, deadline: Duration) -> Self {
        self.deadline = deadline;
        self
    }

    /// How long one attempt at one server may take (30 s unless set): a server that hangs is
    /// given up after this long and the next one tried.
    pub fn with_request_timeout(mut self, timeout: Duration) -> Result<Self, ClientError> {
        self.http = http_client(timeout, self.ca.as_deref())?;
        self.request_timeout = timeout;
        Ok(self)
    }

    /// Reaches every server over HTTPS, trusting only the CA certificates in `pem` (what
    /// `tandem cluster ca` prints, or the CA of the servers' own certificates).
    pub fn with_ca_pem(mut self, pem: &[u8]) -> Result<Self, ClientError> {
        let ca = reqwest::Certificate::from_pem_bundle(pem)
            .map_err(|e| ClientError::Ca(e.to_string()))?;
        if ca.is_empty() {
            return Err(ClientError::Ca("no certificate found".into()));
        }
        self.http = http_client(self.request_timeout, Some(&ca))?;
        self.ca = Some(ca);
        let https: Arc<[String]> = self.endpoint_list().iter().map(|e| https_url(e)).collect();
        *self.endpoints.write().unwrap_or_else(|e| e.into_inner()) = https;
        Ok(self)
    }

    /// Replaces the servers this client talks to (an empty list is ignored), trying them from
    /// the first: the servers' answers to agents name the active server first.
    pub fn set_endpoints(&self, endpoints: &[String]) {
        if endpoints.is_empty() {
            return;
        }
        let tls = self.ca.is_some();
        let new: Arc<[String]> = endpoints
            .iter()
            .map(|e| if tls { https_url(e) } else { base_url(e) })
            .collect();
        *self.endpoints.write().unwrap_or_else(|e| e.into_inner()) = new;
        self.preferred.store(0, Ordering::Relaxed);
    }

    /// The servers this client talks to, as base URLs (`http://host:port`).
    pub fn endpoints(&self) -> Vec<String> {
        self.endpoint_list().to_vec()
    }

    /// The server tried first: the one that answered last.
    pub fn preferred_endpoint(&self) -> String {
        let endpoints = self.endpoint_list();
        endpoints[self.preferred.load(Ordering::Relaxed) % endpoints.len()].clone()
    }

    fn endpoint_list(&self) -> Arc<[String]> {
        self.endpoints
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// One attempt at one URL. A 2xx answer to a streamed request is handed over unread;
    /// everything else is read whole, since the retry rules look at it.
    async fn send_once(
        &self,
        method: &Method,
        url: &str,
        body: &Option<Vec<u8>>,
        content_type: &str,
        stream: bool,
    ) -> Result<Answer, reqwest::Error> {
        let mut request = self.http.request(method.clone(), url);
        if let Some(bearer) = self.auth.bearer() {
            request = request.header(AUTHORIZATION, format!("Bearer {bearer}"));
        }
        if let Some(body) = body {
            request = request
                .header(reqwest::header::CONTENT_TYPE, content_type)
                .body(body.clone());
        }
        if stream {
            // A large body takes as long as it takes; a stalled one is caught by the read
            // timeout instead. It comes straight from the node that makes it: a standby that
            // relayed it would read it whole first, within its request timeout.
            request = request
                .timeout(DOWNLOAD_TIMEOUT)
                .header(NO_FORWARDING_HEADER, "1");
        }
        let response = request.send().await?;
        let status = response.status();
        if stream && status.is_success() {
            return Ok(Answer::Open(response));
        }
        let headers = response.headers().clone();
        let body = response.bytes().await?.to_vec();
        Ok(Answer::Read(Reply {
            status,
            headers,
            body,
        }))
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
        match self
            .answer(method, path_and_query, body, content_type, false)
            .await?
        {
            Answer::Read(reply) => Ok(reply),
            Answer::Open(_) => unreachable!("only a streamed request is answered unread"),
        }
    }

    /// Downloads the answer to a GET into `sink` as it arrives, so a large body (a backup) is
    /// never held in memory, calling `progress(bytes so far, Content-Length)` after every
    /// chunk. Answers the headers and the number of bytes written. An error status is an
    /// error. A download cut off in the middle is an error too, not retried: the sink already
    /// holds part of it.
    pub async fn download<W>(
        &self,
        path_and_query: &str,
        sink: &mut W,
        mut progress: impl FnMut(u64, Option<u64>),
    ) -> Result<(HeaderMap, u64), ClientError>
    where
        W: tokio::io::AsyncWrite + Unpin,
    {
        use tokio::io::AsyncWriteExt;
        let mut response = match self
            .answer(Method::GET, path_and_query, None, "", true)
            .await?
        {
            Answer::Open(response) => response,
            Answer::Read(reply) => {
                reply.error_for_status()?;
                return Err(ClientError::Unreachable(format!(
                    "{path_and_query}: an answer that is neither a success nor an error"
                )));
            }
        };
        let total = response.content_length();
        let headers = response.headers().clone();
        let cut_off = |e: String| ClientError::Unreachable(format!("{path_and_query}: {e}"));
        let mut written = 0u64;
        progress(written, total);
        while let Some(chunk) = response.chunk().await.map_err(|e| cut_off(e.to_string()))? {
            sink.write_all(&chunk)
                .await
                .map_err(|e| ClientError::Sink(e.to_string()))?;
            written += chunk.len() as u64;
            progress(written, total);
        }
        sink.flush()
            .await
            .map_err(|e| ClientError::Sink(e.to_string()))?;
        if total.is_some_and(|total| total != written) {
            return Err(cut_off(format!(
                "the server announced {} bytes but sent {written}",
                total.unwrap_or_default()
            )));
        }
        Ok((headers, written))
    }

    /// The retry loop of [`Client::send`] and [`Client::download`].
    async fn answer(
        &self,
        method: Method,
        path_and_query: &str,
        body: Option<Vec<u8>>,
        content_type: &str,
        stream: bool,
    ) -> Result<Answer, ClientError> {
        let started = tokio::time::Instant::now();
        let endpoints = self.endpoint_list();
        let idempotent = is_idempotent(&method, path_and_query);
        let mut last_problem = String::new();
        let mut attempt = 0usize;
        loop {
            let index = (self.preferred.load(Ordering::Relaxed) + attempt) % endpoints.len();
            let mut url = format!("{}{}", endpoints[index], path_and_query);
            for _ in 0..=MAX_REDIRECTS {
                match self
                    .send_once(&method, &url, &body, content_type, stream)
                    .await
                {
                    // Sent but unanswered: only a request that may be repeated is sent again.
                    Err(e) if !e.is_connect() && !idempotent => {
                        return Err(ClientError::OutcomeUnknown(format!("{url}: {e}")));
                    }
                    Err(e) => {
                        last_problem = format!("{url}: {e}");
                        break;
                    }
                    Ok(Answer::Read(reply)) if reply.status == StatusCode::TEMPORARY_REDIRECT => {
                        let Some(location) =
                            reply.headers.get(LOCATION).and_then(|l| l.to_str().ok())
                        else {
                            return Ok(Answer::Read(reply));
                        };
                        url = location.to_string();
                        if let Some(known) =
                            endpoints.iter().position(|e| url.starts_with(e.as_str()))
                        {
                            self.preferred.store(known, Ordering::Relaxed);
                        }
                    }
                    Ok(Answer::Read(reply))
                        if reply.status == StatusCode::SERVICE_UNAVAILABLE
                            && !reply.is_final_503()
                            && (idempotent || !reply.outcome_unknown()) =>
                    {
                        last_problem = format!("{url}: {}", String::from_utf8_lossy(&reply.body));
                        if started.elapsed() >= self.deadline {
                            return Ok(Answer::Read(reply));
                        }
                        break;
                    }
                    Ok(answer) => {
                        if attempt > 0 {
                            self.preferred.store(index, Ordering::Relaxed);
                        }
                        return Ok(answer);
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
            if attempt.is_multiple_of(endpoints.len()) {
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

/// `GET /v1/cluster/ca` of the server at `addr` over HTTPS without checking its certificate,
/// as `curl -k` would: how a client gets the CA to check every later connection with. Only for
/// bootstrapping on a network the operator trusts.
pub async fn fetch_ca_unverified(addr: &str) -> Result<String, ClientError> {
    let http = reqwest::Client::builder()
        .tls_danger_accept_invalid_certs(true)
        .timeout(REQUEST_TIMEOUT)
        .build()
        .map_err(ClientError::Build)?;
    let url = format!("{}/v1/cluster/ca", https_url(addr));
    let response = http
        .get(&url)
        .send()
        .await
        .map_err(|e| ClientError::Unreachable(format!("{url}: {e}")))?;
    let status = response.status();
    let headers = response.headers().clone();
    let body = response
        .bytes()
        .await
        .map_err(|e| ClientError::Unreachable(format!("{url}: {e}")))?
        .to_vec();
    let reply = Reply {
        status,
        headers,
        body,
    }
    .error_for_status()?;
    Ok(String::from_utf8_lossy(&reply.body).into_owned())
}

/// May this request be sent again when its first attempt's outcome is unknown? GET, PUT and
/// DELETE may, unless they are conditional (`if_revision`: a retry of an applied compare-and-set
/// would fail and hide that it succeeded); POST may not, except an agent's calls about itself
/// (register, report, drain, deregister), which say the same thing again when repeated. Its
/// enrolment spends a join token, so it is not repeated.
fn is_idempotent(method: &Method, path_and_query: &str) -> bool {
    let (path, query) = path_and_query
        .split_once('?')
        .unwrap_or((path_and_query, ""));
    if *method == Method::POST {
        return path.starts_with("/v1/agent/") && path != "/v1/agent/enroll";
    }
    let conditional = query
        .split('&')
        .any(|pair| pair.starts_with("if_revision="));
    !(conditional && *method != Method::GET)
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
        assert_eq!(https_url("127.0.0.1:8200"), "https://127.0.0.1:8200");
        assert_eq!(https_url("http://a:1/"), "https://a:1");
        assert_eq!(https_url("https://a:1"), "https://a:1");
    }

    #[test]
    fn a_ca_file_without_a_certificate_is_refused() {
        let client = Client::new(&["a:1".to_string()], None).unwrap();
        let refused = client.with_ca_pem(b"not a certificate").err();
        assert!(matches!(refused, Some(ClientError::Ca(_))), "{refused:?}");
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
        assert!(is_idempotent(&Method::POST, "/v1/agent/report"));
        assert!(is_idempotent(&Method::POST, "/v1/agent/register"));
        assert!(!is_idempotent(&Method::POST, "/v1/agent/enroll"));
        assert!(!is_idempotent(&Method::POST, "/v1/agents/gw-1/drain"));
    }

    /// A server on a free local port that answers every request with 200 and an empty body, and
    /// hands over the `Authorization` header of each request it saw.
    async fn recording_server() -> (String, tokio::sync::mpsc::UnboundedReceiver<String>) {
        scripted_server(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n").await
    }

    /// A server on a free local port that writes `answer` (raw HTTP) to every request and then
    /// closes the connection, and hands over the `Authorization` header of each request.
    async fn scripted_server(
        answer: &'static [u8],
    ) -> (String, tokio::sync::mpsc::UnboundedReceiver<String>) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let (seen, heard) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let seen = seen.clone();
                tokio::spawn(async move {
                    let mut head = Vec::new();
                    let mut buf = [0u8; 1024];
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                        match stream.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => head.extend_from_slice(&buf[..n]),
                        }
                    }
                    let head = String::from_utf8_lossy(&head).to_string();
                    let auth = head
                        .lines()
                        .find_map(|l| {
                            let (name, value) = l.split_once(':')?;
                            name.eq_ignore_ascii_case("authorization")
                                .then(|| value.trim().to_string())
                        })
                        .unwrap_or_default();
                    let _ = seen.send(auth);
                    let _ = stream.write_all(answer).await;
                });
            }
        });
        (addr, heard)
    }

    #[tokio::test]
    async fn a_download_streams_the_body_and_reports_progress() {
        let (addr, _) = scripted_server(
            b"HTTP/1.1 200 OK\r\ncontent-length: 11\r\ntandem-applied-index: 7\r\nconnection: close\r\n\r\nhello world",
        )
        .await;
        let client = Client::new(&[addr], None).unwrap();
        let mut sink = Vec::new();
        let mut seen = Vec::new();
        let (headers, bytes) = client
            .download("/v1/backup", &mut sink, |done, total| {
                seen.push((done, total))
            })
            .await
            .unwrap();
        assert_eq!((bytes, sink.as_slice()), (11, &b"hello world"[..]));
        assert_eq!(headers["tandem-applied-index"], "7");
        assert_eq!(seen.first(), Some(&(0, Some(11))));
        assert_eq!(seen.last(), Some(&(11, Some(11))));
    }

    #[tokio::test]
    async fn a_download_cut_short_or_refused_is_an_error() {
        let (short, _) = scripted_server(
            b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\nconnection: close\r\n\r\nonly this",
        )
        .await;
        let client = Client::new(&[short], None).unwrap();
        let cut = client
            .download("/v1/backup", &mut Vec::new(), |_, _| {})
            .await
            .unwrap_err();
        assert!(matches!(cut, ClientError::Unreachable(_)), "{cut}");

        let (refusing, _) = scripted_server(
            b"HTTP/1.1 401 Unauthorized\r\ncontent-type: application/json\r\ncontent-length: 48\r\nconnection: close\r\n\r\n{\"error\":{\"code\":\"unauthorized\",\"message\":\"no\"}}",
        )
        .await;
        let client = Client::new(&[refusing], None).unwrap();
        let refused = client
            .download("/v1/backup", &mut Vec::new(), |_, _| {})
            .await
            .unwrap_err();
        assert!(
            matches!(&refused, ClientError::Api { status, code, .. } if *status == StatusCode::UNAUTHORIZED && code == "unauthorized"),
            "{refused}"
        );
    }

    /// A local address where nothing listens.
    fn closed_port() -> String {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().to_string()
    }

    #[tokio::test]
    async fn a_bearer_source_is_asked_for_every_request() {
        let (addr, mut heard) = recording_server().await;
        let count = Arc::new(AtomicUsize::new(0));
        let counter = count.clone();
        let bearer: BearerSource =
            Arc::new(move || format!("assertion-{}", counter.fetch_add(1, Ordering::SeqCst)));
        let client = Client::with_bearer(std::slice::from_ref(&addr), bearer).unwrap();
        for _ in 0..2 {
            assert_eq!(client.get("/v1/x").await.unwrap().status, StatusCode::OK);
        }
        assert_eq!(heard.recv().await.unwrap(), "Bearer assertion-0");
        assert_eq!(heard.recv().await.unwrap(), "Bearer assertion-1");

        let with_secret = Client::new(std::slice::from_ref(&addr), Some("s3cret".into())).unwrap();
        with_secret.get("/v1/x").await.unwrap();
        assert_eq!(heard.recv().await.unwrap(), "Bearer s3cret");
        let anonymous = Client::new(&[addr], None).unwrap();
        anonymous.get("/v1/x").await.unwrap();
        assert_eq!(heard.recv().await.unwrap(), "");
    }

    #[tokio::test]
    async fn the_server_list_can_be_replaced_while_in_use() {
        let (live, _heard) = recording_server().await;
        let dead = closed_port();
        let client = Client::new(std::slice::from_ref(&dead), None)
            .unwrap()
            .with_deadline(Duration::from_millis(200));
        assert!(client.get("/v1/x").await.is_err());

        client.set_endpoints(&[]);
        assert_eq!(client.endpoints(), vec![format!("http://{dead}")]);

        client.set_endpoints(&[dead.clone(), live.clone()]);
        assert_eq!(client.get("/v1/x").await.unwrap().status, StatusCode::OK);
        assert_eq!(client.preferred_endpoint(), format!("http://{live}"));

        // A new list is tried from its head (servers name the active one first).
        let other = closed_port();
        client.set_endpoints(&[other.clone(), dead.clone(), live.clone()]);
        assert_eq!(client.preferred_endpoint(), format!("http://{other}"));
        client.set_endpoints(std::slice::from_ref(&dead));
        assert_eq!(client.preferred_endpoint(), format!("http://{dead}"));
        client.set_endpoints(std::slice::from_ref(&live));
        assert_eq!(client.get("/v1/x").await.unwrap().status, StatusCode::OK);
        assert_eq!(client.endpoints(), vec![format!("http://{live}")]);
    }

    #[test]
    fn segments_are_escaped() {
        assert_eq!(segment("a b/c"), "a%20b%2Fc");
        assert_eq!(segment("plain-key_1.x"), "plain-key_1.x");
    }
}
