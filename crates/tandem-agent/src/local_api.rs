//! The agent's own HTTP endpoint, for the service beside it and for load balancers:
//! `GET /health` (200 only while registered and passing and, with the mesh on, able to carry
//! traffic in its mesh roles; else 503 and why), `GET /healthz` (all it knows, as JSON, the
//! mesh's peers and routes included), `POST /load` (the service pushes its load) and
//! `POST /drain`.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::json;
use tandem_registry::{health_of, CheckReport, CheckStatus};
use tokio::time::Instant;

use crate::status::{AgentStatus, Shared};

/// What `GET /health` answers: 200 only while registered and passing, else 503 with the first
/// reason that applies.
pub fn health(status: &AgentStatus, checks: &[CheckReport], now: Instant) -> (StatusCode, String) {
    let unavailable = |why: String| (StatusCode::SERVICE_UNAVAILABLE, why);
    let unreachable = status.unreachable_since.map(|since| {
        let seconds = now.saturating_duration_since(since).as_secs();
        let why = status.last_error.as_deref().unwrap_or("no answer");
        format!("servers unreachable for {seconds}s: {why}")
    });
    if let Some(why) = &status.revoked {
        return unavailable(format!("credential revoked: {why}"));
    }
    if status.draining || status.drain_wanted {
        return unavailable("draining".into());
    }
    if !status.registered {
        let detail = match (&unreachable, status.enrolled) {
            (Some(unreachable), _) => format!(": {unreachable}"),
            (None, false) => ": enrolling".into(),
            (None, true) => String::new(),
        };
        return unavailable(format!("not registered yet{detail}"));
    }
    if let Some(unreachable) = unreachable {
        return unavailable(unreachable);
    }
    let worst = health_of(checks);
    if worst != CheckStatus::Passing {
        if let Some(check) = checks.iter().find(|c| c.status == worst) {
            let first_line = check.output.lines().next().unwrap_or_default();
            return unavailable(format!(
                "check {} {}: {first_line}",
                check.name,
                worst.as_str()
            ));
        }
    }
    (StatusCode::OK, "registered and passing".into())
}

/// What `GET /health` answers with the mesh's verdict (`None`: the mesh is off): the agent's
/// own health first, then the mesh's, so that a load balancer drains an ingress that lost its
/// routes.
pub fn standing(
    status: &AgentStatus,
    checks: &[CheckReport],
    mesh: Option<Result<(), String>>,
    now: Instant,
) -> (StatusCode, String) {
    let agent = health(status, checks, now);
    match mesh {
        Some(Err(why)) if agent.0 == StatusCode::OK => {
            (StatusCode::SERVICE_UNAVAILABLE, format!("mesh: {why}"))
        }
        _ => agent,
    }
}

pub fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/health", get(health_handler))
        .route("/healthz", get(healthz_handler))
        .route("/load", post(load_handler))
        .route("/drain", post(drain_handler))
        .with_state(shared)
}

async fn health_handler(State(shared): State<Arc<Shared>>) -> Response {
    let checks = shared.checks.reports();
    let status = shared.status().clone();
    let (code, text) = standing(&status, &checks, shared.mesh_health(), Instant::now());
    (code, format!("{text}\n")).into_response()
}

async fn healthz_handler(State(shared): State<Arc<Shared>>) -> Response {
    let checks = shared.checks.reports();
    let status = shared.status().clone();
    let (code, _) = standing(&status, &checks, shared.mesh_health(), Instant::now());
    let mesh = shared.mesh.get().map(|mesh| mesh.status());
    Json(json!({
        "name": shared.name,
        "pool": status.pool,
        "state": status.state,
        "healthy": code == StatusCode::OK,
        "registered": status.registered,
        "draining": status.draining || status.drain_wanted,
        "servers": status.servers,
        "server": status.server,
        "checks": checks,
        "load": status.load,
        "last_report_ms": status.last_report_ms,
        "last_error": status.revoked.or(status.last_error),
        "mesh": mesh,
    }))
    .into_response()
}

fn error(status: StatusCode, code: &str, message: String) -> Response {
    (
        status,
        Json(json!({"error": {"code": code, "message": message}})),
    )
        .into_response()
}

async fn load_handler(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
    #[derive(serde::Deserialize)]
    struct Pushed {
        load: f64,
    }
    let pushed: Pushed = match serde_json::from_slice(&body) {
        Ok(pushed) => pushed,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                "bad_request",
                format!("send {{\"load\": <number of at least 0>}}: {e}"),
            )
        }
    };
    match shared.load.push(pushed.load) {
        Ok(()) => Json(json!({"load": pushed.load})).into_response(),
        Err(e) => error(StatusCode::BAD_REQUEST, "bad_request", e),
    }
}

/// How long `POST /drain` waits for the servers to confirm.
const DRAIN_WAIT: Duration = Duration::from_secs(5);

async fn drain_handler(State(shared): State<Arc<Shared>>) -> Response {
    shared.status().drain_wanted = true;
    shared.wake.notify_one();
    let deadline = Instant::now() + DRAIN_WAIT;
    loop {
        {
            let status = shared.status();
            if status.draining {
                return Json(json!({"draining": true})).into_response();
            }
            if let Some(why) = &status.revoked {
                return error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "credential_revoked",
                    why.clone(),
                );
            }
            if Instant::now() >= deadline {
                let why = status
                    .last_error
                    .clone()
                    .unwrap_or_else(|| "no answer yet".into());
                return error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "drain_unconfirmed",
                    format!(
                        "the drain is asked for and will be sent until the servers confirm it; they have not yet: {why}"
                    ),
                );
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[cfg(test)]
mod tests {
    use tandem_registry::CheckKind;

    use super::*;

    fn registered() -> AgentStatus {
        AgentStatus {
            enrolled: true,
            registered: true,
            ..Default::default()
        }
    }

    fn check(name: &str, status: CheckStatus, output: &str) -> CheckReport {
        CheckReport {
            name: name.into(),
            kind: CheckKind::Http,
            status,
            output: output.into(),
        }
    }

    #[test]
    fn health_says_why_for_each_situation() {
        let now = Instant::now();
        let passing = [check("http:a", CheckStatus::Passing, "HTTP 200 OK")];
        let ok = health(&registered(), &passing, now);
        assert_eq!(ok, (StatusCode::OK, "registered and passing".into()));
        assert_eq!(health(&registered(), &[], now).0, StatusCode::OK);

        let enrolling = AgentStatus::default();
        assert_eq!(
            health(&enrolling, &[], now),
            (
                StatusCode::SERVICE_UNAVAILABLE,
                "not registered yet: enrolling".into()
            )
        );
        let enrolled = AgentStatus {
            enrolled: true,
            ..Default::default()
        };
        assert_eq!(health(&enrolled, &[], now).1, "not registered yet");

        let cut_off = AgentStatus {
            unreachable_since: Some(now),
            last_error: Some("connection refused".into()),
            ..registered()
        };
        let later = now + Duration::from_secs(12);
        assert_eq!(
            health(&cut_off, &passing, later),
            (
                StatusCode::SERVICE_UNAVAILABLE,
                "servers unreachable for 12s: connection refused".into()
            )
        );
        let never_reached = AgentStatus {
            registered: false,
            ..cut_off.clone()
        };
        assert_eq!(
            health(&never_reached, &passing, later).1,
            "not registered yet: servers unreachable for 12s: connection refused"
        );

        let mixed = [
            check(
                "http:a",
                CheckStatus::Warning,
                "HTTP 429 Too Many Requests\nbusy",
            ),
            check("exec:b", CheckStatus::Critical, "db down\nmore"),
        ];
        assert_eq!(
            health(&registered(), &mixed, now),
            (
                StatusCode::SERVICE_UNAVAILABLE,
                "check exec:b critical: db down".into()
            )
        );
        assert_eq!(
            health(&registered(), &mixed[..1], now).1,
            "check http:a warning: HTTP 429 Too Many Requests"
        );

        let draining = AgentStatus {
            draining: true,
            ..registered()
        };
        assert_eq!(health(&draining, &mixed, now).1, "draining");
        let revoked = AgentStatus {
            revoked: Some("the credential of agent \"gw-1\" was revoked".into()),
            ..draining
        };
        assert_eq!(
            health(&revoked, &passing, now).1,
            "credential revoked: the credential of agent \"gw-1\" was revoked"
        );
    }

    #[test]
    fn the_mesh_makes_health_503_when_it_cannot_carry_traffic() {
        let now = Instant::now();
        let ok = standing(&registered(), &[], Some(Ok(())), now);
        assert_eq!(ok, (StatusCode::OK, "registered and passing".into()));
        assert_eq!(standing(&registered(), &[], None, now).0, StatusCode::OK);
        let lost = standing(
            &registered(),
            &[],
            Some(Err("ingress without routes".into())),
            now,
        );
        assert_eq!(
            lost,
            (
                StatusCode::SERVICE_UNAVAILABLE,
                "mesh: ingress without routes".into()
            )
        );
        // The agent's own reason comes first.
        let draining = AgentStatus {
            draining: true,
            ..registered()
        };
        assert_eq!(
            standing(&draining, &[], Some(Err("x".into())), now).1,
            "draining"
        );
    }
}
