//! The agent against a stand-in for the servers' agent API: it enrols once without credentials,
//! signs every later request, reports a changed check at once (not at the next heartbeat),
//! carries pushed load, drains on request, registers again when forgotten, and stops with a
//! clear error when its credential is revoked or its token refused.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};
use tandem_agent::{AgentArgs, AgentError};
use tandem_registry::{AgentState, Credential, Enrollment, Report, ReportAnswer};
use tokio::time::Instant;

#[derive(Default)]
struct Servers {
    /// Every call: path, Authorization header, body.
    calls: Vec<(String, Option<String>, Value)>,
    public_key: Option<Value>,
    refuse_enrolment: bool,
    forget_once: bool,
    revoked: bool,
    draining: bool,
    addr: String,
}

type Shared = Arc<Mutex<Servers>>;

async fn agent_api(
    State(servers): State<Shared>,
    uri: Uri,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    let mut s = servers.lock().unwrap();
    let auth = headers
        .get("authorization")
        .map(|v| v.to_str().unwrap().to_string());
    s.calls.push((uri.path().to_string(), auth, body.clone()));
    let error = |status: StatusCode, code: &str, message: &str| {
        (
            status,
            Json(json!({"error": {"code": code, "message": message}})),
        )
            .into_response()
    };
    let answer = |s: &Servers| {
        Json(ReportAnswer {
            state: if s.draining {
                AgentState::Draining
            } else {
                AgentState::Passing
            },
            servers: vec![s.addr.clone()],
            report_every_ms: 60_000,
        })
        .into_response()
    };
    match uri.path() {
        "/v1/agent/enroll" => {
            if s.refuse_enrolment {
                return error(
                    StatusCode::UNAUTHORIZED,
                    "join_token_invalid",
                    "the join token is not valid",
                );
            }
            let enrollment: Enrollment = serde_json::from_value(body).unwrap();
            s.public_key = Some(enrollment.public_key);
            Json(Credential {
                name: enrollment.name,
                pool: "vpn".into(),
                credential_id: "cred-7".into(),
                certificate_pem: "CERT".into(),
                ca_certificate_pem: "CA".into(),
            })
            .into_response()
        }
        _ if s.revoked => error(
            StatusCode::UNAUTHORIZED,
            "credential_revoked",
            "the credential of agent \"gw-1\" was revoked; enrol again with a new join token",
        ),
        "/v1/agent/register" => answer(&s),
        "/v1/agent/report" if s.forget_once => {
            s.forget_once = false;
            error(StatusCode::NOT_FOUND, "agent_not_registered", "who?")
        }
        "/v1/agent/report" => answer(&s),
        "/v1/agent/drain" => {
            s.draining = true;
            Json(json!({})).into_response()
        }
        "/v1/agent/deregister" => Json(json!({})).into_response(),
        _ => error(StatusCode::NOT_FOUND, "not_found", "no such path"),
    }
}

async fn start_servers() -> (Shared, String) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let shared: Shared = Arc::new(Mutex::new(Servers {
        addr: addr.clone(),
        ..Default::default()
    }));
    let app = axum::Router::new()
        .fallback(agent_api)
        .with_state(shared.clone());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (shared, addr)
}

fn free_port() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().to_string()
}

/// Waits for `probe` to answer, for up to ten seconds.
async fn wait_for<T>(what: &str, probe: impl AsyncFnMut() -> Option<T>) -> T {
    tandem_testkit::wait_for(Duration::from_secs(10), what, probe).await
}

async fn health(listen: &str) -> Option<(u16, String)> {
    let response = reqwest::get(format!("http://{listen}/health")).await.ok()?;
    Some((response.status().as_u16(), response.text().await.ok()?))
}

fn calls_to(servers: &Shared, path: &str) -> Vec<(Option<String>, Value)> {
    servers
        .lock()
        .unwrap()
        .calls
        .iter()
        .filter(|(p, _, _)| p == path)
        .map(|(_, auth, body)| (auth.clone(), body.clone()))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn an_agent_enrols_reports_drains_and_stops_when_revoked() {
    let (servers, addr) = start_servers().await;
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("agent");
    let ready = dir.path().join("ready");
    let listen = free_port();
    let args = AgentArgs {
        servers: Some(vec![addr.clone()]),
        pool: Some("vpn".into()),
        join_token: Some("token-1".into()),
        address: Some("10.0.0.7:51820".into()),
        name: Some("gw-1".into()),
        data_dir: Some(data_dir.clone()),
        health_listen: Some(listen.clone()),
        check_exec: Some(vec![format!("test -e {} || exit 1", ready.display())]),
        check_interval: Some("100ms".parse().unwrap()),
        // Far longer than the test: every report it sees comes from a change or a drain.
        report_interval: Some("30s".parse().unwrap()),
        ..Default::default()
    };
    let agent = tokio::spawn(tandem_agent::run(args.clone()));

    // The check fails (exit 1: warning) until the file exists.
    let (code, text) = wait_for("a registered agent with a warning", async || {
        health(&listen)
            .await
            .filter(|(_, text)| text.contains("warning"))
    })
    .await;
    assert_eq!(code, 503);
    assert!(text.starts_with("check exec:test -e"), "{text}");

    let enrolments = calls_to(&servers, "/v1/agent/enroll");
    assert_eq!(enrolments.len(), 1);
    assert_eq!(enrolments[0].0, None, "enrolment carries no credentials");
    assert_eq!(enrolments[0].1["name"], "gw-1");
    assert_eq!(enrolments[0].1["pool"], "vpn");
    assert_eq!(enrolments[0].1["token"], "token-1");

    let registrations = calls_to(&servers, "/v1/agent/register");
    let (auth, body) = registrations.last().unwrap().clone();
    assert_eq!(body["address"], "10.0.0.7:51820");
    assert_eq!(body["version"], env!("CARGO_PKG_VERSION"));
    let token = auth.unwrap().strip_prefix("Bearer ").unwrap().to_string();
    let public_key = servers.lock().unwrap().public_key.clone().unwrap();
    let jwk = tandem_keys::public_jwk_from_json(&public_key.to_string()).unwrap();
    let claims = tandem_keys::verify_token(&token, |kid| {
        assert_eq!(kid, "cred-7");
        Some(jwk.clone())
    })
    .unwrap();
    assert_eq!(claims["sub"], "gw-1");
    assert_eq!(claims["iss"], "tandem-agent");

    use std::os::unix::fs::PermissionsExt;
    let mode =
        |path: &std::path::Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&data_dir), 0o700);
    assert_eq!(mode(&data_dir.join("credential.json")), 0o600);

    // A check that turns passing is reported at once, not at the next heartbeat.
    let before = calls_to(&servers, "/v1/agent/report").len()
        + calls_to(&servers, "/v1/agent/register").len();
    std::fs::write(&ready, "").unwrap();
    let changed_at = Instant::now();
    wait_for("a report of the passing check", async || {
        let reports = calls_to(&servers, "/v1/agent/report");
        let (_, last) = reports.last()?;
        let report: Report = serde_json::from_value(last.clone()).ok()?;
        (report.checks[0].status == tandem_registry::CheckStatus::Passing).then_some(())
    })
    .await;
    assert!(changed_at.elapsed() < Duration::from_secs(3));
    assert!(
        calls_to(&servers, "/v1/agent/report").len()
            + calls_to(&servers, "/v1/agent/register").len()
            > before
    );
    let (code, text) = wait_for("health 200", async || {
        health(&listen).await.filter(|(c, _)| *c == 200)
    })
    .await;
    assert_eq!((code, text.as_str()), (200, "registered and passing\n"));

    // The saved server list.
    let saved: Value =
        serde_json::from_slice(&std::fs::read(data_dir.join("servers.json")).unwrap()).unwrap();
    assert_eq!(saved["servers"], json!([addr]));

    // Pushed load, then a drain, which sends a report with it.
    let http = reqwest::Client::new();
    let pushed = http
        .post(format!("http://{listen}/load"))
        .json(&json!({"load": 0.4}))
        .send()
        .await
        .unwrap();
    assert_eq!(pushed.status(), 200);
    let bad = http
        .post(format!("http://{listen}/load"))
        .json(&json!({"load": -2}))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    tandem_agent::drain_local(&listen).await.unwrap();
    assert_eq!(calls_to(&servers, "/v1/agent/drain").len(), 1);
    let (_, last) = calls_to(&servers, "/v1/agent/report")
        .last()
        .unwrap()
        .clone();
    assert_eq!(last["load"], 0.4);
    let (code, text) = health(&listen).await.unwrap();
    assert_eq!((code, text.as_str()), (503, "draining\n"));
    let healthz: Value = reqwest::get(format!("http://{listen}/healthz"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(healthz["name"], "gw-1");
    assert_eq!(healthz["pool"], "vpn");
    assert_eq!(healthz["state"], "draining");
    assert_eq!(healthz["registered"], true);
    assert_eq!(healthz["draining"], true);
    assert_eq!(healthz["load"], 0.4);
    assert_eq!(healthz["checks"][0]["kind"], "exec");
    assert_eq!(healthz["checks"][0]["status"], "passing");
    assert_eq!(healthz["server"], format!("http://{addr}"));

    // Forgotten by the servers: the agent registers again at once.
    let registered_before = calls_to(&servers, "/v1/agent/register").len();
    servers.lock().unwrap().forget_once = true;
    std::fs::remove_file(&ready).unwrap();
    wait_for("a new registration", async || {
        (calls_to(&servers, "/v1/agent/register").len() > registered_before).then_some(())
    })
    .await;

    // Revoked: the agent stops with the fix in its error.
    servers.lock().unwrap().revoked = true;
    std::fs::write(&ready, "").unwrap();
    let stopped = tokio::time::timeout(Duration::from_secs(10), agent)
        .await
        .unwrap()
        .unwrap();
    let err = stopped.unwrap_err();
    assert!(matches!(err, AgentError::Revoked(_)), "{err}");
    assert_eq!(err.exit_code(), 1);
    let message = err.to_string();
    assert!(
        message.contains("was revoked")
            && message.contains(&format!(
                "remove {}",
                data_dir.join("credential.json").display()
            ))
            && message.contains("--join-token"),
        "{message}"
    );

    // A later start uses the saved credential, and never the token; as another agent it stops.
    let other = AgentArgs {
        name: Some("gw-2".into()),
        ..args.clone()
    };
    let err = tandem_agent::run(other).await.unwrap_err();
    assert_eq!(err.exit_code(), 2);
    assert!(err.to_string().contains("enrolled as \"gw-1\""), "{err}");
    let enrolments_before = calls_to(&servers, "/v1/agent/enroll").len();
    // A port of its own: the first run's may have been taken by another process since.
    let again = tokio::spawn(tandem_agent::run(AgentArgs {
        join_token: None,
        servers: None,
        health_listen: Some(free_port()),
        ..args
    }));
    let err = tokio::time::timeout(Duration::from_secs(10), again)
        .await
        .unwrap()
        .unwrap()
        .unwrap_err();
    assert!(matches!(err, AgentError::Revoked(_)), "{err}");
    assert_eq!(
        calls_to(&servers, "/v1/agent/enroll").len(),
        enrolments_before
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_refused_join_token_stops_the_agent_with_the_servers_message() {
    let (servers, addr) = start_servers().await;
    servers.lock().unwrap().refuse_enrolment = true;
    let dir = tempfile::tempdir().unwrap();
    let args = AgentArgs {
        servers: Some(vec![addr]),
        join_token: Some("wrong".into()),
        address: Some("10.0.0.7:51820".into()),
        name: Some("gw-1".into()),
        data_dir: Some(dir.path().join("agent")),
        health_listen: Some(free_port()),
        ..Default::default()
    };
    let err = tandem_agent::run(args.clone()).await.unwrap_err();
    assert!(matches!(err, AgentError::Enrolment(_)), "{err}");
    assert_eq!(err.exit_code(), 1);
    assert!(
        err.to_string().contains("the join token is not valid"),
        "{err}"
    );
    assert!(!dir.path().join("agent/credential.json").exists());

    let err = tandem_agent::run(AgentArgs {
        join_token: None,
        ..args
    })
    .await
    .unwrap_err();
    assert_eq!(err.exit_code(), 2);
    assert!(err.to_string().contains("--join-token"), "{err}");
}
