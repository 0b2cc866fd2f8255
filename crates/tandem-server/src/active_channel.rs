//! The one way a server reaches the active node. Client requests a standby cannot serve are
//! relayed here whole ([`ActiveChannel::forward`]); commands a server makes itself (its signing
//! keys) and the addresses it advertises are carried here too. Every call goes over the cluster
//! channel, with the cluster secret, and is served locally when this node is the active one.

use std::time::Duration;

use axum::body::{to_bytes, Body};
use axum::extract::Request;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Uri};
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::sync::Arc;
use tandem_ha::{ActiveNode, ActiveView, HaBackend};
use tandem_raft::wire::{self, FORWARDED_BY_HEADER, FORWARD_METHOD_HEADER, FORWARD_URI_HEADER};
use tandem_raft::{ClusterClient, NodeId};
use tandem_store::{Applied, Command, Outcome};

use crate::error::ApiError;
use crate::replicated::Replicated;

/// The client headers a forwarded request carries to the active node (the cluster port rebuilds
/// the request from exactly these).
/// The dashboard's session cookie authorises its reads on the active node as here.
pub const FORWARDED_REQUEST_HEADERS: [&str; 4] =
    ["authorization", "cookie", "content-type", "accept"];
/// Response header naming the standby that forwarded the request.
pub const FORWARDED_VIA_HEADER: &str = "tandem-forwarded-via";
pub const STEP_DOWN_PATH: &str = "/v1/sys/step-down";
/// Hop-by-hop headers that are not relayed back.
const HOP_HEADERS: [&str; 4] = [
    "connection",
    "transfer-encoding",
    "content-length",
    "keep-alive",
];

/// The addresses a member asks clients and peers to use, as it publishes them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Advertised {
    pub node_id: NodeId,
    pub cluster_addr: String,
    pub api_addr: String,
}

/// Cheap to clone: handlers and the forwarding layer hold one, and axum clones it per request.
#[derive(Clone)]
pub struct ActiveChannel(Arc<ChannelParts>);

struct ChannelParts {
    node_id: NodeId,
    ha: Arc<dyn HaBackend>,
    cluster: ClusterClient,
    /// Where a call is served when this node is the active one.
    local: Replicated,
    request_timeout: Duration,
    max_body_bytes: usize,
    /// `http` or `https`: how clients reach every server's API (the same on all of them).
    api_scheme: &'static str,
}

impl ActiveChannel {
    pub fn new(
        node_id: NodeId,
        ha: Arc<dyn HaBackend>,
        cluster: ClusterClient,
        local: Replicated,
        request_timeout: Duration,
        max_body_bytes: usize,
        api_scheme: &'static str,
    ) -> ActiveChannel {
        ActiveChannel(Arc::new(ChannelParts {
            node_id,
            ha,
            cluster,
            local,
            request_timeout,
            max_body_bytes,
            api_scheme,
        }))
    }

    pub fn view(&self) -> ActiveView {
        self.0.ha.view()
    }

    /// Proposes a command this server made itself, on the active node: here when this node is
    /// active, otherwise there. Clients' requests are forwarded whole instead.
    pub async fn propose(&self, command: Command) -> Result<Outcome, ApiError> {
        let view = self.view();
        if view.is_self {
            return self.0.local.propose(command).await;
        }
        let applied: Applied = self.call(&view, wire::PROPOSE_PATH, &command).await?;
        Ok(applied?)
    }

    /// Records the addresses a member advertises in the cluster membership, on the active node.
    pub async fn advertise(&self, addresses: Advertised) -> Result<(), ApiError> {
        let view = self.view();
        if view.is_self {
            return record_advertised(&self.0.local, addresses).await;
        }
        let _: serde_json::Value = self.call(&view, wire::ADVERTISE_PATH, &addresses).await?;
        Ok(())
    }

    /// Sends `message` to the active node's cluster endpoint `path` and reads its JSON answer.
    async fn call<T: Serialize, R: DeserializeOwned>(
        &self,
        view: &ActiveView,
        path: &str,
        message: &T,
    ) -> Result<R, ApiError> {
        let active = view
            .other_active()
            .ok_or_else(|| ApiError::unavailable("no active node is known yet"))?;
        let body = wire::encode_request(message).map_err(ApiError::internal)?;
        let unreachable = |e: reqwest::Error| {
            ApiError::unavailable(format!("cannot reach the active node {}: {e}", active.id))
        };
        let reply = self
            .0
            .cluster
            .post(&active.cluster_addr, path)
            .timeout(self.0.request_timeout)
            .body(body)
            .send()
            .await
            .map_err(unreachable)?;
        let status = reply.status();
        let bytes = reply.bytes().await.map_err(unreachable)?;
        if !status.is_success() {
            return Err(ApiError::unavailable(format!(
                "the active node {} refused the request ({status}): {}",
                active.id,
                String::from_utf8_lossy(&bytes)
            )));
        }
        serde_json::from_slice(&bytes)
            .map_err(|e| ApiError::internal(format!("unreadable answer of the active node: {e}")))
    }

    /// Sends a client's request to the active node and relays its answer. If the active node
    /// cannot be reached the client is redirected; if it was reached but no answer came back, or
    /// the active role moved meanwhile, the client is told the outcome is unknown.
    pub async fn forward(&self, active: ActiveNode, request: Request) -> Response {
        let (parts, body) = request.into_parts();
        let body = match to_bytes(body, self.0.max_body_bytes).await {
            Ok(body) => body,
            Err(e) => {
                return ApiError::bad_request(format!("cannot read the request body: {e}"))
                    .into_response()
            }
        };
        let uri = parts
            .uri
            .path_and_query()
            .map(|p| p.as_str())
            .unwrap_or("/")
            .to_string();
        let mut outgoing = self
            .0
            .cluster
            .post(&active.cluster_addr, wire::FORWARD_PATH)
            .header(FORWARD_METHOD_HEADER, parts.method.as_str())
            .header(FORWARD_URI_HEADER, &uri)
            .header(FORWARDED_BY_HEADER, self.0.node_id.to_string())
            .timeout(self.0.request_timeout + Duration::from_secs(1))
            .body(body);
        for name in FORWARDED_REQUEST_HEADERS {
            if let Some(value) = parts.headers.get(name) {
                outgoing = outgoing.header(name, value);
            }
        }
        let mut view = self.0.ha.watch();
        // A step-down moves the active role by design: its answer is awaited, not abandoned.
        let abandon_on_move = parts.uri.path() != STEP_DOWN_PATH;
        let active_moved = async {
            if abandon_on_move {
                let _ = view
                    .wait_for(|v| v.active.as_ref().map(|a| a.id) != Some(active.id))
                    .await;
            } else {
                std::future::pending::<()>().await;
            }
        };
        let reply = tokio::select! {
            reply = outgoing.send() => reply,
            _ = active_moved => {
                return ApiError::outcome_unknown(
                    "the active node changed while the request was forwarded; it may or may not have been applied",
                )
                .into_response();
            }
        };
        let reply = match reply {
            Ok(reply) => reply,
            // Never reached the active node: nothing happened, and the client may go there itself.
            Err(e) if e.is_connect() => {
                tracing::debug!(active = active.id, error = %e, "cannot reach the active node; redirecting the client");
                return self.redirect(&active, &parts.uri);
            }
            // Reached it, but no answer came back (it died or stalled): it may have been applied.
            Err(e) => {
                return ApiError::outcome_unknown(format!(
                    "the active node did not answer the forwarded request ({e}); it may or may not have been applied"
                ))
                .into_response();
            }
        };
        let status = reply.status();
        let mut headers = HeaderMap::new();
        for (name, value) in reply.headers() {
            if !HOP_HEADERS.contains(&name.as_str()) {
                headers.append(name.clone(), value.clone());
            }
        }
        headers.insert(
            HeaderName::from_static(FORWARDED_VIA_HEADER),
            HeaderValue::from(self.0.node_id),
        );
        match reply.bytes().await {
            Ok(bytes) => (status, headers, Body::from(bytes)).into_response(),
            Err(e) => ApiError::outcome_unknown(format!(
                "the active node's answer was cut off ({e}); the request may or may not have been applied"
            ))
            .into_response(),
        }
    }
}

impl ActiveChannel {
    /// Sends the client to the active node's API (307), keeping the path and query.
    pub fn redirect(&self, active: &ActiveNode, uri: &Uri) -> Response {
        let path = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
        let location = format!("{}://{}{}", self.0.api_scheme, active.api_addr, path);
        ApiError::redirect(location, active.id).into_response()
    }
}

/// On the active node: records a member's advertised addresses.
pub async fn record_advertised(local: &Replicated, addresses: Advertised) -> Result<(), ApiError> {
    local
        .replicator()
        .record_addresses(
            addresses.node_id,
            addresses.cluster_addr,
            addresses.api_addr,
        )
        .await
        .map_err(ApiError::from)
}
