//! The dashboard in a real headless browser (Debian's chromium over WebDriver): a wrong secret is
//! refused, the right one signs in, the page shows three servers and the active one, shows the
//! new active server within 2 s of killing the old one, and an agent going down. With
//! `TANDEM_UPDATE_SCREENSHOTS=1` it also writes the screenshots in docs/images/.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::json;
use tandem_testkit::{join_token, AgentProcess, Browser, Cluster, API_SECRET, DEADLINE};

fn tandem() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_tandem"))
}

/// The page must show a new active server within this of the kill.
const SHOWS_FAILOVER_WITHIN: Duration = Duration::from_secs(2);

fn screenshot_path(name: &str) -> Option<PathBuf> {
    std::env::var_os("TANDEM_UPDATE_SCREENSHOTS").map(|_| {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../docs/images")
            .join(name)
    })
}

async fn keep_screenshot(browser: &Browser, name: &str) {
    if let Some(path) = screenshot_path(name) {
        std::fs::create_dir_all(path.parent().expect("a folder")).expect("docs/images");
        std::fs::write(&path, browser.screenshot().await).expect("write the screenshot");
    }
}

/// Polls `condition` on the page until it holds; panics with `what` after the deadline.
async fn until(browser: &Browser, what: &str, limit: Duration, script: &str) {
    let started = Instant::now();
    loop {
        if browser.eval(script).await.as_bool() == Some(true) {
            return;
        }
        assert!(
            started.elapsed() < limit,
            "the page did not show {what} within {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn the_dashboard_signs_in_and_shows_failover_and_agents_live() {
    let mut cluster = Cluster::start(tandem(), 3, &["--agent-down-after", "2s"]).await;
    let leader = cluster.leader().await;
    let leader_id = cluster.node_id(leader);
    let standby = (0..3).find(|&i| i != leader).expect("a standby");
    let token = join_token(&cluster, "web", json!({})).await;
    let agent = AgentProcess::start(tandem(), &cluster, "web-1", "web", Some(&token), &[]);

    let browser = Browser::start(1280, 1000).await;
    browser
        .goto(&format!("{}/ui", cluster.api_url(standby)))
        .await;
    until(
        &browser,
        "the sign-in form",
        DEADLINE,
        "return !document.getElementById('sign-in').hidden",
    )
    .await;
    browser.type_into("#secret", "not-the-secret").await;
    browser.click("#sign-in-form button").await;
    until(
        &browser,
        "the refusal",
        DEADLINE,
        "return document.getElementById('sign-in-error').textContent.includes('Wrong secret')",
    )
    .await;
    let cookie = browser.eval("return document.cookie").await;
    assert_eq!(
        cookie, "",
        "the session cookie is HttpOnly: scripts cannot read it"
    );
    browser.type_into("#secret", API_SECRET).await;
    browser.click("#sign-in-form button").await;
    until(
        &browser,
        "three servers with the active one",
        DEADLINE,
        &format!(
            "const t = document.getElementById('servers'); \
             return !document.getElementById('board').hidden && t.rows.length === 4 \
               && t.dataset.active === '{leader_id}'"
        ),
    )
    .await;
    let active_line = browser.text_of("#active-line").await;
    assert!(
        active_line.contains(&format!("node {leader_id}")),
        "{active_line}"
    );
    until(
        &browser,
        "the agent passing",
        DEADLINE,
        "return document.getElementById('agents').innerText.includes('PASSING')",
    )
    .await;
    let url = browser.eval("return location.href").await;
    assert!(
        !url.as_str().unwrap_or_default().contains(API_SECRET),
        "the secret never goes in the URL: {url}"
    );
    keep_screenshot(&browser, "dashboard.png").await;

    // The active server dies: the page (on a standby) shows the new one.
    let killed_at = Instant::now();
    cluster.kill(leader);
    until(
        &browser,
        "a new active server",
        SHOWS_FAILOVER_WITHIN,
        &format!(
            "const a = document.getElementById('servers').dataset.active; \
             return a !== '' && a !== '{leader_id}'"
        ),
    )
    .await;
    println!(
        "the page showed the new active server {:?} after the kill",
        killed_at.elapsed()
    );
    let events = browser.text_of("#events").await;
    assert!(events.contains("active_changed"), "{events}");

    // The agent dies: the page shows it down.
    drop(agent);
    until(
        &browser,
        "the agent down",
        DEADLINE,
        "return document.getElementById('agents').innerText.includes('DOWN')",
    )
    .await;
    keep_screenshot(&browser, "dashboard-failover.png").await;

    // A phone's width: nothing wider than the screen but the tables, which scroll.
    browser.resize(390, 844).await;
    let overflow = browser
        .eval("return document.documentElement.scrollWidth <= window.innerWidth")
        .await;
    assert_eq!(
        overflow.as_bool(),
        Some(true),
        "the page fits a phone's width"
    );
    keep_screenshot(&browser, "dashboard-phone.png").await;

    browser.click("#sign-out").await;
    until(
        &browser,
        "the sign-in form after signing out",
        DEADLINE,
        "return !document.getElementById('sign-in').hidden",
    )
    .await;
    browser.close().await;
}

#[tokio::test]
async fn the_session_cookie_reads_but_never_writes_and_a_wrong_secret_gets_none() {
    let cluster = Cluster::start(tandem(), 1, &[]).await;
    cluster.leader().await;
    let http = reqwest::Client::new();
    let url = |path: &str| format!("{}{path}", cluster.api_url(0));
    let wrong = http
        .post(url("/ui/session"))
        .json(&json!({"secret": "wrong-secret-0123456789"}))
        .send()
        .await
        .expect("an answer");
    assert_eq!(wrong.status(), reqwest::StatusCode::UNAUTHORIZED);
    assert!(wrong.headers().get("set-cookie").is_none());
    let signed_in = http
        .post(url("/ui/session"))
        .json(&json!({ "secret": API_SECRET }))
        .send()
        .await
        .expect("an answer");
    assert_eq!(signed_in.status(), reqwest::StatusCode::NO_CONTENT);
    let set_cookie = signed_in.headers()["set-cookie"]
        .to_str()
        .expect("text")
        .to_string();
    assert!(
        set_cookie.contains("HttpOnly") && set_cookie.contains("SameSite=Strict"),
        "{set_cookie}"
    );
    let cookie = set_cookie
        .split(';')
        .next()
        .expect("name=value")
        .to_string();
    let read = http
        .get(url("/v1/cluster"))
        .header("cookie", &cookie)
        .send()
        .await
        .expect("an answer");
    assert_eq!(read.status(), reqwest::StatusCode::OK);
    let write = http
        .put(url("/v1/kv/by-cookie"))
        .header("cookie", &cookie)
        .body("x")
        .send()
        .await
        .expect("an answer");
    assert_eq!(
        write.status(),
        reqwest::StatusCode::UNAUTHORIZED,
        "a cookie cannot write"
    );
    let forged = http
        .get(url("/v1/cluster"))
        .header("cookie", "tandem_ui=99999999999.forged")
        .send()
        .await
        .expect("an answer");
    assert_eq!(forged.status(), reqwest::StatusCode::UNAUTHORIZED);
}
