//! A single node started without secrets makes them, saves them with mode 0600, prints the API
//! secret once, and uses the same secrets again after a restart.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use reqwest::Method;
use tandem_testkit::{free_ports, http_client, wait_until, ServerProcess, DEADLINE};
use tempfile::TempDir;

fn tandem() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_tandem"))
}

async fn status_with(http: &reqwest::Client, url: &str, method: Method, bearer: &str) -> u16 {
    http.request(method.clone(), url)
        .bearer_auth(bearer)
        .body(if method == Method::PUT { "v" } else { "" })
        .send()
        .await
        .map(|r| r.status().as_u16())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread")]
async fn generated_secrets_are_saved_printed_once_and_reused() {
    let dir = TempDir::new().expect("temporary folder");
    let data = dir.path().join("data");
    let ports = free_ports(2).expect("free ports on 127.0.0.1");
    let api = format!("http://127.0.0.1:{}", ports[1]);
    let args = vec![
        "server".to_string(),
        "--data-dir".into(),
        data.display().to_string(),
        "--nodes".into(),
        format!("1 127.0.0.1:{} 127.0.0.1:{}", ports[0], ports[1]),
    ];
    let mut server = ServerProcess::new(
        "single node",
        tandem(),
        args,
        dir.path().join("server.log"),
        dir.path().to_path_buf(),
    );
    let first_stdout = dir.path().join("stdout-1.txt");
    server.set_stdout(Some(first_stdout.clone()));
    server.spawn();

    let secret_file = data.join("secret-api");
    // The node saves the API secret first and the cluster secret right after it.
    wait_until(DEADLINE, "the node to save both secrets", async || {
        ["secret-api", "secret-raft"].iter().all(|name| {
            std::fs::read_to_string(data.join(name)).is_ok_and(|s| !s.trim().is_empty())
        })
    })
    .await;
    let secret = std::fs::read_to_string(&secret_file)
        .expect("secret-api readable")
        .trim()
        .to_string();
    assert!(secret.len() >= 16, "generated secret is long enough");
    for name in ["secret-api", "secret-raft"] {
        let mode = std::fs::metadata(data.join(name))
            .unwrap_or_else(|e| panic!("{name} exists: {e}"))
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{name} has mode {:o}", mode & 0o777);
    }

    let http = http_client();
    let key = format!("{api}/v1/kv/defaults");
    wait_until(
        DEADLINE,
        "a write with the printed secret to succeed",
        async || status_with(&http, &key, Method::PUT, &secret).await == 200,
    )
    .await;
    assert_eq!(
        status_with(&http, &key, Method::GET, "wrong-secret-0000000000").await,
        401
    );
    let printed = std::fs::read_to_string(&first_stdout).expect("stdout captured");
    assert_eq!(
        printed.matches(secret.as_str()).count(),
        1,
        "the API secret is printed exactly once on stdout: {printed:?}"
    );

    let status = server.stop(Duration::from_secs(15)).await;
    assert!(
        status.success(),
        "SIGTERM ends the server cleanly: {status}"
    );

    let second_stdout = dir.path().join("stdout-2.txt");
    server.set_stdout(Some(second_stdout.clone()));
    server.spawn();
    wait_until(
        DEADLINE,
        "a read with the same secret after the restart",
        async || status_with(&http, &key, Method::GET, &secret).await == 200,
    )
    .await;
    let printed_again = std::fs::read_to_string(&second_stdout).expect("stdout captured");
    assert!(
        !printed_again.contains(&secret),
        "the secret is not printed again on restart: {printed_again:?}"
    );
    assert_eq!(
        std::fs::read_to_string(&secret_file)
            .expect("secret-api readable")
            .trim(),
        secret,
        "the saved secret did not change"
    );
    assert!(
        !server.log().contains(&secret),
        "the secret does not appear in the log"
    );
}
