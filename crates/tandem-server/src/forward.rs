//! Any server answers any request. Each route declares where it must be served when it is
//! registered ([`Needs`]); this layer, in front of the handlers, serves a request here when it
//! can, and otherwise forwards it to the active node through the [`ActiveChannel`], or redirects
//! the client there (307) when the client asks for that or the active node cannot be reached, or
//! refuses with 503 when no active node is known.

use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::MethodRouter;
use tandem_ha::{ActiveNode, ActiveView};
use tandem_raft::wire::FORWARDED_BY_HEADER;

use crate::active_channel::ActiveChannel;
use crate::error::ApiError;
use crate::state::ApiState;

pub use tandem_client::NO_FORWARDING_HEADER;

/// How a client says what it wants of this layer: in Tandem's own words, or in rqlite's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dialect {
    /// `?consistency=stale` reads locally; the `X-Tandem-No-Request-Forwarding` header asks for
    /// a redirect, which is a 307.
    Tandem,
    /// `?level=none` reads locally; `?redirect` (or Tandem's header) asks for a redirect, which
    /// is a 301, the one rqlite clients follow.
    Rqlite,
}

impl Dialect {
    fn reads_locally(self, uri: &Uri) -> bool {
        match self {
            Dialect::Tandem => uri
                .query()
                .is_some_and(|q| q.split('&').any(|pair| pair == "consistency=stale")),
            Dialect::Rqlite => crate::rqlite::reads_locally(uri),
        }
    }

    fn wants_redirect(self, uri: &Uri, headers: &HeaderMap) -> bool {
        headers.contains_key(NO_FORWARDING_HEADER)
            || (self == Dialect::Rqlite && crate::rqlite::wants_redirect(uri))
    }

    /// A redirect answered in this dialect. rqlite clients follow a 301, and only expect one
    /// when they asked for it: otherwise a standby that cannot forward says so (503), and the
    /// client retries, where a redirect could pin it to an active node that just died.
    fn answer_redirect(self, response: Response, asked: bool) -> Response {
        if self != Dialect::Rqlite || response.status() != StatusCode::TEMPORARY_REDIRECT {
            return response;
        }
        if !asked {
            return ApiError::unavailable(
                "this node cannot reach the active node right now; retry shortly (or ask for a redirect with ?redirect)",
            )
            .into_response();
        }
        let mut response = response;
        *response.status_mut() = StatusCode::MOVED_PERMANENTLY;
        response
    }
}

/// Where a request must be served.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Needs {
    /// Any node can serve it from its own state.
    AnyNode,
    /// Only the active node can: writes and step-down.
    ActiveNode,
    /// A read: the active node serves it, unless the client asks for `consistency=stale`.
    ActiveUnlessStale,
}

impl Needs {
    /// Where this request must be served, given how it says it.
    pub fn of(self, dialect: Dialect, uri: &Uri) -> Needs {
        match self {
            Needs::ActiveUnlessStale if dialect.reads_locally(uri) => Needs::AnyNode,
            Needs::ActiveUnlessStale => Needs::ActiveNode,
            other => other,
        }
    }

    /// `route` behind this layer, declaring what it needs.
    pub fn serve(self, route: MethodRouter<ApiState>, state: &ApiState) -> MethodRouter<ApiState> {
        self.serve_in(Dialect::Tandem, route, state)
    }

    /// `route` behind this layer, for clients that speak `dialect`.
    pub fn serve_in(
        self,
        dialect: Dialect,
        route: MethodRouter<ApiState>,
        state: &ApiState,
    ) -> MethodRouter<ApiState> {
        if self == Needs::AnyNode {
            return route;
        }
        let guard = RouteGuard {
            needs: self,
            dialect,
            channel: state.active.clone(),
        };
        route.route_layer(middleware::from_fn_with_state(guard, route_to_active))
    }
}

/// What this node does with a request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Route {
    Local,
    Forward(ActiveNode),
    Redirect(ActiveNode),
    Unavailable,
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

fn no_active() -> Response {
    ApiError::unavailable(
        "no active node is known right now (an election may be under way); retry shortly",
    )
    .into_response()
}

#[derive(Clone)]
struct RouteGuard {
    needs: Needs,
    dialect: Dialect,
    channel: ActiveChannel,
}

async fn route_to_active(
    State(guard): State<RouteGuard>,
    request: Request,
    next: Next,
) -> Response {
    let dialect = guard.dialect;
    let asked = dialect.wants_redirect(request.uri(), request.headers());
    let decision = route(
        guard.needs.of(dialect, request.uri()),
        &guard.channel.view(),
        request.headers().contains_key(FORWARDED_BY_HEADER),
        asked,
    );
    let counted = |decision: &'static str| {
        metrics::counter!("tandem_api_routed_total", "decision" => decision).increment(1);
    };
    let response = match decision {
        Route::Local => {
            counted("local");
            next.run(request).await
        }
        Route::Unavailable => {
            counted("unavailable");
            no_active()
        }
        Route::Redirect(active) => {
            counted("redirect");
            guard.channel.redirect(&active, request.uri())
        }
        Route::Forward(active) => {
            counted("forward");
            guard.channel.forward(active, request).await
        }
    };
    dialect.answer_redirect(response, asked)
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
    fn a_read_needs_the_active_node_unless_it_asks_for_stale() {
        let uri = |s: &str| s.parse::<Uri>().unwrap();
        let read = Needs::ActiveUnlessStale;
        let tandem = Dialect::Tandem;
        assert_eq!(read.of(tandem, &uri("/v1/kv/a")), Needs::ActiveNode);
        assert_eq!(
            read.of(tandem, &uri("/v1/kv/a?consistency=stale")),
            Needs::AnyNode
        );
        assert_eq!(
            read.of(tandem, &uri("/v1/kv/a?consistency=linearizable")),
            Needs::ActiveNode
        );
        assert_eq!(
            Needs::ActiveNode.of(tandem, &uri("/v1/kv/a?consistency=stale")),
            Needs::ActiveNode,
            "a write is never served by a standby"
        );
        assert_eq!(Needs::AnyNode.of(tandem, &uri("/health")), Needs::AnyNode);
    }

    #[test]
    fn rqlite_clients_say_it_in_their_words() {
        let uri = |s: &str| s.parse::<Uri>().unwrap();
        let read = Needs::ActiveUnlessStale;
        let rqlite = Dialect::Rqlite;
        assert_eq!(
            read.of(rqlite, &uri("/db/query?level=none&q=x")),
            Needs::AnyNode
        );
        assert_eq!(
            read.of(rqlite, &uri("/db/query?level=weak")),
            Needs::ActiveNode
        );
        assert_eq!(
            read.of(Dialect::Tandem, &uri("/db/query?level=none")),
            Needs::ActiveNode,
            "each dialect reads only its own words"
        );
        let none = HeaderMap::new();
        assert!(rqlite.wants_redirect(&uri("/db/execute?redirect"), &none));
        assert!(!rqlite.wants_redirect(&uri("/db/execute?pretty"), &none));
        assert!(!Dialect::Tandem.wants_redirect(&uri("/v1/kv/a?redirect"), &none));
        let redirect = || ApiError::redirect("http://h2:8200/db/execute".into(), 2).into_response();
        let asked = rqlite.answer_redirect(redirect(), true);
        assert_eq!(asked.status(), StatusCode::MOVED_PERMANENTLY);
        assert_eq!(
            asked.headers()["location"],
            "http://h2:8200/db/execute",
            "the location is kept"
        );
        assert_eq!(
            rqlite.answer_redirect(redirect(), false).status(),
            StatusCode::SERVICE_UNAVAILABLE
        );
        assert_eq!(
            Dialect::Tandem.answer_redirect(redirect(), false).status(),
            StatusCode::TEMPORARY_REDIRECT
        );
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
