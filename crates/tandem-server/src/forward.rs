//! Any server answers any request. A request that needs the active node is served here when this
//! node is active; on a standby it is forwarded to the active node over the cluster channel, or
//! redirected there (307) when the client asks for that or forwarding fails, or refused with 503
//! when no active node is known. This layer is the only place that makes that choice.

use std::sync::Arc;
use std::time::Duration;

use axum::body::{to_bytes, Body};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, Uri};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tandem_ha::{ActiveNode, ActiveView};
use tandem_raft::wire::{self, FORWARDED_BY_HEADER, FORWARD_METHOD_HEADER, FORWARD_URI_HEADER};

use crate::error::ApiError;
use crate::node::Node;

/// The client header that asks for a redirect instead of forwarding.
pub const NO_FORWARDING_HEADER: &str = "x-tandem-no-request-forwarding";
/// Response header naming the standby that forwarded the request.
pub const FORWARDED_VIA_HEADER: &str = "tandem-forwarded-via";
pub const STEP_DOWN_PATH: &str = "/v1/sys/step-down";
/// Headers a forwarded request carries to the active node.
const FORWARDED_REQUEST_HEADERS: [&str; 3] = ["authorization", "content-type", "accept"];
/// Hop-by-hop headers that are not relayed back.
const HOP_HEADERS: [&str; 4] = [
    "connection",
    "transfer-encoding",
    "content-length",
    "keep-alive",
];

/// Where a request must be served.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Needs {
    /// Any node can serve it from its own state.
    AnyNode,
    /// Only the active node can: writes, linearizable and leader reads, step-down.
    ActiveNode,
}

/// What this node does with a request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Route {
    Local,
    Forward(ActiveNode),
    Redirect(ActiveNode),
    Unavailable,
}

/// Which requests need the active node: every data request except a stale read, the backup
/// (consistent by default) and step-down.
pub fn needs(method: &Method, uri: &Uri) -> Needs {
    let path = uri.path();
    let stale = uri
        .query()
        .is_some_and(|q| q.split('&').any(|pair| pair == "consistency=stale"));
    let data = [
        "/v1/sql/",
        "/v1/kv",
        "/v1/cache/",
        "/v1/locks/",
        "/v1/backup",
    ]
    .iter()
    .any(|prefix| path.starts_with(prefix));
    let is_read = *method == Method::GET || *method == Method::HEAD || path == "/v1/sql/query";
    if path == STEP_DOWN_PATH || (data && !(is_read && stale)) {
        Needs::ActiveNode
    } else {
        Needs::AnyNode
    }
}

/// The decision, from what is known: where the request must go, this node's view of the active
/// role, whether the request was already forwarded once, and whether the client wants a redirect.
pub fn route(
    needs: Needs,
    view: &ActiveView,
    already_forwarded: bool,
    wants_redirect: bool,
) -> Route {
    if needs == Needs::AnyNode || view.is_self {
        return Route::Local;
    }
    match view.other_active() {
        None => Route::Unavailable,
        // A forwarded request is never forwarded again: at most one hop.
        Some(active) if already_forwarded || wants_redirect => Route::Redirect(active.clone()),
        Some(active) => Route::Forward(active.clone()),
    }
}

fn redirect(active: &ActiveNode, uri: &Uri) -> Response {
    let path = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    ApiError::redirect(format!("http://{}{}", active.api_addr, path), active.id).into_response()
}

fn no_active() -> Response {
    ApiError::unavailable(
        "no active node is known right now (an election may be under way); retry shortly",
    )
    .into_response()
}

pub async fn route_to_active(
    State(node): State<Arc<Node>>,
    request: Request,
    next: Next,
) -> Response {
    let headers = request.headers();
    let decision = route(
        needs(request.method(), request.uri()),
        &node.ha.view(),
        headers.contains_key(FORWARDED_BY_HEADER),
        headers.contains_key(NO_FORWARDING_HEADER),
    );
    match decision {
        Route::Local => next.run(request).await,
        Route::Unavailable => no_active(),
        Route::Redirect(active) => redirect(&active, request.uri()),
        Route::Forward(active) => forward(&node, active, request).await,
    }
}

/// Sends the request to the active node and relays its answer. If the active node cannot be
/// reached the client is redirected; if it was reached but no answer came back, or leadership
/// moved meanwhile, the client is told the outcome is unknown.
pub(crate) async fn forward(node: &Node, active: ActiveNode, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let body = match to_bytes(body, node.settings.max_body_bytes).await {
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
    let mut outgoing = node
        .cluster
        .post(&active.cluster_addr, wire::FORWARD_PATH)
        .header(FORWARD_METHOD_HEADER, parts.method.as_str())
        .header(FORWARD_URI_HEADER, &uri)
        .header(FORWARDED_BY_HEADER, node.id.to_string())
        .timeout(node.request_timeout() + Duration::from_secs(1))
        .body(body);
    for name in FORWARDED_REQUEST_HEADERS {
        if let Some(value) = parts.headers.get(name) {
            outgoing = outgoing.header(name, value);
        }
    }
    let mut view = node.ha.watch();
    // A step-down moves leadership by design: its answer is awaited, not abandoned.
    let abandon_on_move = parts.uri.path() != STEP_DOWN_PATH;
    let leadership_moved = async {
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
        _ = leadership_moved => {
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
            return redirect(&active, &parts.uri);
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
        HeaderValue::from(node.id),
    );
    match reply.bytes().await {
        Ok(bytes) => (status, headers, Body::from(bytes)).into_response(),
        Err(e) => ApiError::outcome_unknown(format!(
            "the active node's answer was cut off ({e}); the request may or may not have been applied"
        ))
        .into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn active(id: u64) -> ActiveNode {
        ActiveNode {
            id,
            api_addr: format!("h{id}:8200"),
            cluster_addr: format!("h{id}:8100"),
        }
    }

    fn standby_of(id: u64) -> ActiveView {
        ActiveView {
            active: Some(active(id)),
            fencing_token: 3,
            is_self: false,
            stepping_down: false,
        }
    }

    #[test]
    fn classification() {
        let uri = |s: &str| s.parse::<Uri>().unwrap();
        assert_eq!(needs(&Method::PUT, &uri("/v1/kv/a")), Needs::ActiveNode);
        assert_eq!(needs(&Method::GET, &uri("/v1/kv/a")), Needs::ActiveNode);
        assert_eq!(
            needs(&Method::GET, &uri("/v1/kv/a?consistency=stale")),
            Needs::AnyNode
        );
        assert_eq!(
            needs(&Method::POST, &uri("/v1/sql/query?consistency=stale")),
            Needs::AnyNode
        );
        assert_eq!(
            needs(&Method::POST, &uri("/v1/sql/execute?consistency=stale")),
            Needs::ActiveNode
        );
        assert_eq!(needs(&Method::GET, &uri("/v1/cluster")), Needs::AnyNode);
        assert_eq!(
            needs(&Method::POST, &uri("/v1/sys/step-down")),
            Needs::ActiveNode
        );
        assert_eq!(needs(&Method::GET, &uri("/health")), Needs::AnyNode);
    }

    #[test]
    fn the_active_node_serves_locally() {
        let mut view = standby_of(1);
        view.is_self = true;
        assert_eq!(route(Needs::ActiveNode, &view, false, false), Route::Local);
        assert_eq!(
            route(Needs::AnyNode, &standby_of(1), false, false),
            Route::Local
        );
    }

    #[test]
    fn a_standby_forwards_or_redirects() {
        assert_eq!(
            route(Needs::ActiveNode, &standby_of(2), false, false),
            Route::Forward(active(2))
        );
        assert_eq!(
            route(Needs::ActiveNode, &standby_of(2), false, true),
            Route::Redirect(active(2))
        );
    }

    #[test]
    fn a_forwarded_request_is_never_forwarded_again() {
        assert_eq!(
            route(Needs::ActiveNode, &standby_of(2), true, false),
            Route::Redirect(active(2))
        );
    }

    #[test]
    fn without_an_active_node_the_answer_is_unavailable() {
        assert_eq!(
            route(Needs::ActiveNode, &ActiveView::default(), false, false),
            Route::Unavailable
        );
        let stepping = ActiveView {
            stepping_down: true,
            ..ActiveView::default()
        };
        assert_eq!(
            route(Needs::ActiveNode, &stepping, false, true),
            Route::Unavailable
        );
    }
}
