//! Who sends a client request, and whether they may. [`authenticate`], in front of every
//! authenticated route, names the [`Caller`]: the API secret (root), a scoped credential, an
//! enrolled agent's own credential, or a dashboard session of root or a scoped credential. [`require`], on each route, describes what the request does and
//! asks [`tandem_store::rules::grants::allows`]. Both run on every node a request passes
//! through, each against its own applied copy of the credentials: a standby refuses before it
//! forwards, and the active node checks again before it serves. A credential or agent a standby
//! does not know yet (made a moment ago, not applied here yet) is not refused there: the request
//! goes to the active node, which has applied every acknowledged change and answers for it.

use axum::extract::rejection::RawPathParamsRejection;
use axum::extract::{RawPathParams, Request, State};
use axum::http::{header, HeaderMap, Method, StatusCode, Uri};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::MethodRouter;
use std::borrow::Cow;

use base64::Engine as _;
use tandem_raft::wire::FORWARDED_BY_HEADER;
use tandem_store::rules::grants::{allows, parse_grants, Access, Grant};
use tandem_store::{CredentialRecord, ROOT};

use crate::active_channel::ActiveChannel;
use crate::agent_api;
use crate::error::{secrets_match, ApiError};
use crate::forward::{route, Needs, Route};
use crate::issued_secret::parse_issued;
use crate::registry::Registry;
use crate::replicated::Replicated;
use crate::state::{ApiSecret, ApiState};
use crate::ui;

/// Who a request comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Caller {
    /// The API secret: every grant.
    Root,
    Scoped {
        id: String,
        name: String,
        grants: Vec<Grant>,
    },
    /// An enrolled agent, by an assertion signed with its own credential: it holds one grant,
    /// `agent:<name>`, to act as itself.
    Agent { name: String, credential_id: String },
}

impl Caller {
    /// The name the audit log gives them.
    pub fn who(&self) -> &str {
        match self {
            Caller::Root => ROOT,
            Caller::Scoped { name, .. } | Caller::Agent { name, .. } => name,
        }
    }

    /// What a dashboard session of this caller carries: "root" or the credential's id.
    pub fn session_subject(&self) -> &str {
        match self {
            Caller::Root => ROOT,
            Caller::Scoped { id, .. } => id,
            Caller::Agent { credential_id, .. } => credential_id,
        }
    }

    /// The grants the caller holds; `None` for root, which needs none.
    fn grants(&self) -> Option<Cow<'_, [Grant]>> {
        match self {
            Caller::Root => None,
            Caller::Scoped { grants, .. } => Some(Cow::Borrowed(grants)),
            Caller::Agent { name, .. } => Some(Cow::Owned(vec![Grant::Agent(name.clone())])),
        }
    }

    /// Whether the caller may do `access`, or the refusal that names the missing grant.
    pub fn may(&self, access: &Access) -> Result<(), ApiError> {
        let Some(grants) = self.grants() else {
            return Ok(());
        };
        let whose = match self {
            Caller::Agent { name, .. } => format!("the credential of agent {name:?}"),
            caller => format!("credential {:?}", caller.who()),
        };
        allows(&grants, access).map_err(|missing| {
            ApiError::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                format!(
                    "{whose} lacks the grant {missing}; it holds {}",
                    grants
                        .iter()
                        .map(|g| g.to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            )
        })
    }
}

/// What identifies callers: the API secret, and the scoped and agents' credentials in this
/// node's state.
#[derive(Clone)]
pub struct Credentials {
    pub secret: ApiSecret,
    pub data: Replicated,
    pub registry: Registry,
    /// Where a credential unknown here is asked about.
    pub active: ActiveChannel,
}

impl Credentials {
    /// The caller a presented secret names, if it is the API secret or a usable credential.
    pub fn identify(&self, presented: &str) -> Result<Option<Caller>, ApiError> {
        let presented = presented.trim();
        if secrets_match(presented.as_bytes(), self.secret.0.as_bytes()) {
            return Ok(Some(Caller::Root));
        }
        let Some((id, hash)) = parse_issued(presented) else {
            return Ok(None);
        };
        Ok(self
            .usable(&id)?
            .filter(|record| secrets_match(&hash, &record.secret_sha256))
            .map(scoped))
    }

    /// The agent whose signed assertion was presented, if it is one of an enrolled agent. A
    /// revoked agent is told so; anything else that is not an agent's is no caller at all.
    fn agent(&self, presented: &str) -> Result<Option<Caller>, ApiError> {
        if !is_assertion(presented) {
            return Ok(None);
        }
        match agent_api::identify(&self.registry, presented.trim()) {
            Ok(identity) => Ok(Some(Caller::Agent {
                name: identity.name,
                credential_id: identity.credential_id,
            })),
            Err(revoked) if revoked.code == agent_api::CREDENTIAL_REVOKED => Err(revoked),
            Err(_) => Ok(None),
        }
    }

    /// The caller a dashboard session names, if its credential is still usable.
    fn of_session(&self, subject: &str) -> Result<Option<Caller>, ApiError> {
        if subject == ROOT {
            return Ok(Some(Caller::Root));
        }
        Ok(self.usable(subject)?.map(scoped))
    }

    /// The credential `id` when it is neither revoked nor expired.
    fn usable(&self, id: &str) -> Result<Option<CredentialRecord>, ApiError> {
        let record = self.data.read_now(|reads| reads.credential(id))?;
        Ok(record.filter(|r| r.usable_at(tandem_ha::now_ms())))
    }

    fn caller(&self, method: &Method, headers: &HeaderMap) -> Result<Option<Caller>, ApiError> {
        if let Some(presented) = presented(headers) {
            return match self.identify(&presented)? {
                Some(caller) => Ok(Some(caller)),
                None => self.agent(&presented),
            };
        }
        match ui::session_subject(method, headers, &self.secret) {
            Some(subject) => self.of_session(&subject),
            None => Ok(None),
        }
    }
}

fn scoped(record: CredentialRecord) -> Caller {
    Caller::Scoped {
        // Stored only after they were parsed: one that no longer parses grants nothing.
        grants: parse_grants(&record.grants).unwrap_or_default(),
        id: record.id,
        name: record.name,
    }
}

/// Names the caller of every request it guards (a [`Caller`] in the request's extensions), or
/// answers 401.
pub async fn authenticate(
    State(credentials): State<Credentials>,
    mut request: Request,
    next: Next,
) -> Response {
    match credentials.caller(request.method(), request.headers()) {
        Ok(Some(caller)) => {
            request.extensions_mut().insert(caller);
            next.run(request).await
        }
        Ok(None) => {
            let view = credentials.active.view();
            let forwarded = request.headers().contains_key(FORWARDED_BY_HEADER);
            match route(Needs::ActiveNode, &view, forwarded, false) {
                Route::Forward(active) if presents_issued(request.headers()) => {
                    credentials.active.forward(active, request).await
                }
                _ => ApiError::unauthorized().into_response(),
            }
        }
        Err(e) => e.into_response(),
    }
}

/// The secret the `Authorization` header presents, if any.
fn presented(headers: &HeaderMap) -> Option<String> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(presented_secret)
}

/// True when the request presents something the cluster issues (a credential, or an agent's
/// assertion, a JWT), rather than a wrong API secret.
fn presents_issued(headers: &HeaderMap) -> bool {
    presented(headers).is_some_and(|p| {
        let p = p.trim();
        parse_issued(p).is_some() || is_assertion(p)
    })
}

/// An agent's assertion is a JWT: three parts separated by dots.
fn is_assertion(presented: &str) -> bool {
    presented.split('.').count() == 3
}

/// `route`, served only to callers whose grants allow what `describe` says a request to it
/// does (from its path names and query).
pub fn require<D>(route: MethodRouter<ApiState>, describe: D) -> MethodRouter<ApiState>
where
    D: Fn(Option<RawPathParams>, &Uri) -> Access + Clone + Send + Sync + 'static,
{
    route.route_layer(middleware::from_fn_with_state(describe, check_grants::<D>))
}

async fn check_grants<D>(
    State(describe): State<D>,
    names: Result<RawPathParams, RawPathParamsRejection>,
    request: Request,
    next: Next,
) -> Response
where
    D: Fn(Option<RawPathParams>, &Uri) -> Access + Clone + Send + Sync + 'static,
{
    let Some(caller) = request.extensions().get::<Caller>() else {
        return ApiError::unauthorized().into_response();
    };
    match caller.may(&describe(names.ok(), request.uri())) {
        Ok(()) => next.run(request).await,
        Err(refused) => refused.into_response(),
    }
}

/// The secret an `Authorization` header presents: `Bearer <secret>`, or HTTP basic auth with
/// the secret as the password (any user name), which is how rqlite clients send credentials.
fn presented_secret(authorization: &str) -> Option<String> {
    if let Some(secret) = authorization.strip_prefix("Bearer ") {
        return Some(secret.to_string());
    }
    let encoded = authorization.strip_prefix("Basic ")?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let (_user, password) = std::str::from_utf8(&decoded).ok()?.split_once(':')?;
    Some(password.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_what_the_cluster_issues_is_asked_about_on_the_active_node() {
        let bearer = |value: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(header::AUTHORIZATION, value.parse().unwrap());
            headers
        };
        let credential = crate::issued_secret::issue_secret().token;
        assert!(presents_issued(&bearer(&format!("Bearer {credential}"))));
        assert!(presents_issued(&bearer("Bearer header.claims.signature")));
        // A wrong API secret, or nothing at all, is refused where it arrives.
        assert!(!presents_issued(&bearer("Bearer not-the-api-secret")));
        assert!(!presents_issued(&HeaderMap::new()));
    }

    #[test]
    fn the_secret_comes_as_a_bearer_token_or_a_basic_auth_password() {
        assert_eq!(presented_secret("Bearer s3cret").as_deref(), Some("s3cret"));
        // "rqlite:s3cret:with:colons" in base64: the password runs to the end.
        assert_eq!(
            presented_secret("Basic cnFsaXRlOnMzY3JldDp3aXRoOmNvbG9ucw==").as_deref(),
            Some("s3cret:with:colons")
        );
        assert_eq!(presented_secret("Basic not base64!"), None);
        // "nocolon" in base64: no password at all.
        assert_eq!(presented_secret("Basic bm9jb2xvbg=="), None);
        assert_eq!(presented_secret("Digest x"), None);
    }

    #[test]
    fn a_refusal_names_the_missing_grant_and_root_may_do_anything() {
        let caller = Caller::Scoped {
            id: "0123456789abcdef".into(),
            name: "billing".into(),
            grants: vec![Grant::KvRead("billing/".into())],
        };
        assert!(caller.may(&Access::KvRead("billing/x".into())).is_ok());
        let refused = caller
            .may(&Access::KvWrite("billing/x".into()))
            .expect_err("not granted");
        assert_eq!(refused.status, StatusCode::FORBIDDEN);
        assert!(
            refused.message.contains("kv:write:billing/x"),
            "{}",
            refused.message
        );
        assert!(Caller::Root.may(&Access::ClusterAdmin).is_ok());
        assert_eq!(Caller::Root.who(), "root");
        assert_eq!(caller.who(), "billing");
        let agent = Caller::Agent {
            name: "edge-1".into(),
            credential_id: "c1".into(),
        };
        assert!(agent.may(&Access::Agent("edge-1".into())).is_ok());
        let refused = agent
            .may(&Access::KvRead("config/".into()))
            .expect_err("an agent reads no keys");
        assert!(
            refused.message.contains("agent \"edge-1\"")
                && refused.message.contains("kv:read:config/")
                && refused.message.contains("it holds agent:edge-1"),
            "{}",
            refused.message
        );
    }
}
