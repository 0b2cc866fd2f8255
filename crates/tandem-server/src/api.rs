//! The client API's router. Every route is registered once, here, with where it must be served
//! and the grant a scoped credential needs for it: the data endpoints come from their table
//! ([`ApiEndpoint`]), the rest are declared below as served by any node or only by the active
//! one. Authentication, grants and forwarding are layers in front of the handlers, not branches
//! inside them.

use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode, Uri};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put, MethodRouter};
use axum::Router;
use serde_json::{json, Value};
use tandem_store::rules::grants::Access;

use crate::active_channel::{ActiveChannel, STEP_DOWN_PATH};
use crate::agent_api::{self, require_agent_credential};
use crate::agents_api;
use crate::auth_api;
use crate::credentials::{authenticate, require};
use crate::data_api::ApiEndpoint;
use crate::error::ApiError;
use crate::events_api;
use crate::forward::Needs;
use crate::health::{self, NodeHealth};
use crate::membership_api;
use crate::replicated::Replicated;
use crate::rqlite_api;
use crate::state::{ApiCa, ApiState};
use crate::token_api;
use crate::ui;

pub fn router(state: ApiState, max_body_bytes: usize) -> Router {
    use Access::*;
    // Each route with the grant it needs (see docs/api.md, "Scoped credentials").
    let any_node: [(&str, MethodRouter<ApiState>, Access); 10] = [
        // Each server's own feed.
        ("/v1/events", get(events_api::list), ClusterRead),
        ("/v1/sys/active", get(sys_active), ClusterRead),
        // The same answer under its first name.
        ("/v1/sys/leader", get(sys_active), ClusterRead),
        ("/v1/cluster", get(cluster_status), ClusterRead),
        ("/v1/cluster/snapshot", post(take_snapshot), ClusterAdmin),
        ("/v1/keys", get(token_api::list), ClusterRead),
        ("/v1/keys/rotate", post(token_api::rotate_now), KeysAdmin),
        ("/v1/tokens", post(token_api::issue), TokensIssue),
        // Served here; a standby that lacks the token's key asks the active node itself.
        ("/v1/tokens/verify", post(token_api::verify), TokensVerify),
        ("/v1/audit", get(auth_api::audit), ClusterRead),
    ];
    // The registry's heartbeats, loads and watches live on the active node.
    let active_only: [(&str, MethodRouter<ApiState>, Access); 13] = [
        (STEP_DOWN_PATH, post(step_down), ClusterAdmin),
        (
            "/v1/cluster/members/{id}",
            put(membership_api::add).delete(membership_api::remove),
            ClusterAdmin,
        ),
        (
            "/v1/join-tokens",
            get(agents_api::list_tokens).post(agents_api::create_token),
            AgentsAdmin,
        ),
        (
            "/v1/join-tokens/{id}",
            delete(agents_api::revoke_token),
            AgentsAdmin,
        ),
        ("/v1/agents", get(agents_api::list), AgentsRead),
        ("/v1/agents/{name}", get(agents_api::show), AgentsRead),
        (
            "/v1/agents/{name}/drain",
            post(agents_api::drain),
            AgentsAdmin,
        ),
        (
            "/v1/agents/{name}/revoke",
            post(agents_api::revoke),
            AgentsAdmin,
        ),
        (
            "/v1/agents/{name}/announce",
            post(agents_api::restrict_announce),
            AgentsAdmin,
        ),
        (
            "/v1/pools/{pool}/pick",
            get(agents_api::pick_agent),
            AgentsRead,
        ),
        ("/v1/mesh", get(agents_api::mesh), AgentsRead),
        (
            "/v1/auth/credentials",
            get(auth_api::list).post(auth_api::create),
            ClusterAdmin,
        ),
        (
            "/v1/auth/credentials/{credential}",
            delete(auth_api::revoke),
            ClusterAdmin,
        ),
    ];
    // What agents call with their own credential (checked on the active node, after forwarding,
    // so a credential issued a moment ago is known wherever the agent sends it).
    let agent_credential =
        middleware::from_fn_with_state(state.registry.clone(), require_agent_credential);
    let agent_routes: [(&str, MethodRouter<ApiState>); 7] = [
        ("/v1/agent/enroll", post(agent_api::enroll)),
        (
            "/v1/agent/register",
            post(agent_api::register).route_layer(agent_credential.clone()),
        ),
        (
            "/v1/agent/report",
            post(agent_api::report).route_layer(agent_credential.clone()),
        ),
        (
            "/v1/agent/revoked",
            get(agent_api::revoked).route_layer(agent_credential.clone()),
        ),
        (
            "/v1/agent/mesh",
            get(agent_api::mesh_directory).route_layer(agent_credential.clone()),
        ),
        (
            "/v1/agent/drain",
            post(agent_api::drain_self).route_layer(agent_credential.clone()),
        ),
        (
            "/v1/agent/deregister",
            post(agent_api::deregister_self).route_layer(agent_credential),
        ),
    ];
    let mut agents = Router::new();
    for (path, route) in agent_routes {
        agents = agents.route(path, Needs::ActiveNode.serve(route, &state));
    }
    // The grant is checked outside the forwarding layer: a standby refuses before it forwards.
    let granted = |route, access: Access| require(route, move |_, _| access.clone());
    let mut authenticated = Router::new();
    for (path, route, access) in any_node {
        let route = Needs::AnyNode.serve(route, &state);
        authenticated = authenticated.route(path, granted(route, access));
    }
    for (path, route, access) in active_only {
        let route = Needs::ActiveNode.serve(route, &state);
        authenticated = authenticated.route(path, granted(route, access));
    }
    for endpoint in ApiEndpoint::ALL {
        authenticated = authenticated.route(endpoint.path(), endpoint.route(&state));
    }
    for (path, route, access) in rqlite_api::routes(&state) {
        authenticated = authenticated.route(path, granted(route, access));
    }
    let authenticated = authenticated.layer(middleware::from_fn_with_state(
        state.credentials.clone(),
        authenticate,
    ));
    Router::new()
        .route("/health", get(health::alive))
        .route("/ready", get(health::ready))
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(rqlite_api::readyz))
        .route("/v1/sys/health", get(health::sys_health))
        .route("/metrics", get(health::metrics))
        // The dashboard: the page is public, its data needs a session or the secret.
        .route("/ui", get(ui::page))
        .route("/ui/app.js", get(ui::script))
        .route("/ui/style.css", get(ui::style))
        .route("/ui/session", post(ui::sign_in))
        .route("/ui/session/end", post(ui::sign_out))
        // The public key set, at the paths verifiers look for it.
        .route("/v1/keys/jwks", get(token_api::jwks))
        .route("/.well-known/jwks.json", get(token_api::jwks))
        .route("/api/pkeys", get(token_api::jwks))
        // The CA clients check the API's certificate with; public, as a CA certificate is.
        .route("/v1/cluster/ca", get(api_ca))
        .merge(authenticated)
        .merge(agents)
        .fallback(unknown_route)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .layer(middleware::from_fn_with_state(
            state.health.clone(),
            served_by,
        ))
        .layer(middleware::from_fn(crate::server_metrics::count_requests))
        .with_state(state)
}

async fn unknown_route(method: Method, uri: Uri) -> ApiError {
    ApiError::not_found(format!(
        "no endpoint {method} {}; see docs/api.md",
        uri.path()
    ))
}

async fn method_not_allowed(method: Method, uri: Uri) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!(
            "{method} is not supported on {}; see docs/api.md",
            uri.path()
        ),
    )
}

/// Names the node that answered, on every response; a forwarded answer keeps the name of the
/// active node that served it.
async fn served_by(State(health): State<NodeHealth>, request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    response
        .headers_mut()
        .entry("tandem-node-id")
        .or_insert(HeaderValue::from(health.node_id));
    response
}

/// The API CA in PEM, when this server's certificate comes from it.
async fn api_ca(State(ca): State<ApiCa>) -> Result<Response, ApiError> {
    match ca.0 {
        Some(pem) => Ok((
            [(header::CONTENT_TYPE, "application/x-pem-file")],
            pem.to_string(),
        )
            .into_response()),
        None => Err(ApiError::not_found(
            "this server's API has no CA of the cluster's: it speaks plain HTTP, or its certificate comes from api_tls_cert_file (ask whoever issued it for the CA)",
        )),
    }
}

/// Who is active. The `leader_*` fields are the same facts under their first names.
async fn sys_active(State(active): State<ActiveChannel>) -> axum::Json<Value> {
    let view = active.view();
    let id = view.active.as_ref().map(|a| a.id);
    let api_addr = view.active.as_ref().map(|a| a.api_addr.clone());
    axum::Json(json!({
        "active_id": id,
        "active_api_addr": api_addr,
        "leader_id": id,
        "leader_api_addr": api_addr,
        "is_self": view.is_self,
        "fencing_token": view.fencing_token,
        "term": view.fencing_token,
    }))
}

async fn cluster_status(State(health): State<NodeHealth>) -> axum::Json<Value> {
    axum::Json(health.cluster_report())
}

/// Hands the active role to an up-to-date standby (reaches the active node through forwarding).
async fn step_down(State(health): State<NodeHealth>) -> Result<axum::Json<Value>, ApiError> {
    health
        .ha
        .step_down()
        .await
        .map_err(|e| ApiError::unavailable(format!("step-down failed: {e}")))?;
    let view = health.ha.view();
    Ok(axum::Json(
        json!({"stepped_down": true, "active_node": view.active.as_ref().map(|a| a.id)}),
    ))
}

async fn take_snapshot(State(data): State<Replicated>) -> Result<axum::Json<Value>, ApiError> {
    let index = data.snapshot().await?;
    Ok(axum::Json(json!({ "snapshot_index": index })))
}
