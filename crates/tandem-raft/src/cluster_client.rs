use std::sync::Arc;
use std::time::Duration;

use crate::wire::{
    self, ProbeReply, PROTOCOL_HEADER, PROTOCOL_VERSION, SECRET_HEADER, SECRET_HEADER_BEFORE,
};

/// How this node speaks to its peers' cluster ports: one HTTP client (mutual TLS in a running
/// server), the scheme it speaks, and the cluster secret every request carries. Raft RPCs,
/// forwarded requests, probes and address publishing all go through it.
#[derive(Clone)]
pub struct ClusterClient {
    http: reqwest::Client,
    /// `https` when the client speaks mutual TLS, `http` otherwise.
    scheme: &'static str,
    secret: Arc<str>,
}

impl ClusterClient {
    pub fn new(http: reqwest::Client, scheme: &'static str, secret: Arc<str>) -> Self {
        ClusterClient {
            http,
            scheme,
            secret,
        }
    }

    /// A POST to `path` on the cluster port at `addr`, carrying the cluster secret.
    pub fn post(&self, addr: &str, path: &str) -> reqwest::RequestBuilder {
        self.http
            .post(format!("{}://{addr}{path}", self.scheme))
            .header(SECRET_HEADER, &*self.secret)
            // Also under the header's earlier name, which nodes of the previous release read,
            // so that a rolling upgrade keeps every node in touch.
            .header(SECRET_HEADER_BEFORE, &*self.secret)
            .header(PROTOCOL_HEADER, PROTOCOL_VERSION)
    }

    /// The answer of the node at `addr` to [`wire::PROBE_PATH`], or `None` when it gives none
    /// within `timeout`.
    pub async fn probe(&self, addr: &str, timeout: Duration) -> Option<ProbeReply> {
        let reply = self
            .post(addr, wire::PROBE_PATH)
            .timeout(timeout)
            .send()
            .await
            .ok()?;
        reply.json().await.ok()
    }
}
