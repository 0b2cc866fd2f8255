//! The command line talks to a running cluster: key/value, SQL and status, given every node's
//! address and the API secret in TANDEM_SECRET_API.

use std::path::Path;
use std::process::Output;
use std::time::Duration;

use serde_json::{json, Value};
use tandem_testkit::{run_to_exit, tandem_command, Cluster, API_SECRET};
use tempfile::TempDir;

fn tandem() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_tandem"))
}

struct Cli {
    addrs: String,
    work_dir: TempDir,
}

impl Cli {
    async fn run(&self, args: &[&str]) -> Output {
        let mut command = tandem_command(tandem());
        command
            // No ./tandem-data/secret-api to fall back on: the secret must come from the env.
            .current_dir(self.work_dir.path())
            .env("TANDEM_SECRET_API", API_SECRET)
            .args(args)
            .arg("--addr")
            .arg(&self.addrs);
        run_to_exit(command, Duration::from_secs(60)).await
    }

    /// Runs and answers stdout, checking the command succeeded.
    async fn ok(&self, args: &[&str]) -> String {
        let output = self.run(args).await;
        assert!(
            output.status.success(),
            "tandem {args:?} failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }
}

fn parse(what: &str, stdout: &str) -> Value {
    serde_json::from_str(stdout)
        .unwrap_or_else(|e| panic!("{what} printed no JSON ({e}): {stdout}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn the_cli_writes_reads_and_reports_status() {
    let cluster = Cluster::start(tandem(), 3, &[]).await;
    let leader = cluster.leader().await;
    let cli = Cli {
        addrs: (0..cluster.len())
            .map(|i| cluster.api_addr(i).to_string())
            .collect::<Vec<_>>()
            .join(","),
        work_dir: TempDir::new().expect("temporary folder"),
    };

    let put = parse(
        "kv put",
        &cli.ok(&["kv", "put", "cli-key", "cli value"]).await,
    );
    assert!(
        put["revision"].as_u64().is_some(),
        "kv put prints the revision: {put}"
    );
    assert_eq!(cli.ok(&["kv", "get", "cli-key"]).await, "cli value\n");

    let missing = cli.run(&["kv", "get", "no-such-key"]).await;
    assert!(!missing.status.success(), "reading a missing key fails");
    let stderr = String::from_utf8_lossy(&missing.stderr);
    assert!(stderr.contains("no-such-key"), "names the key: {stderr}");

    cli.ok(&[
        "sql",
        "CREATE TABLE cli_items (id INTEGER PRIMARY KEY, name TEXT NOT NULL)",
    ])
    .await;
    cli.ok(&[
        "sql",
        "INSERT INTO cli_items (name) VALUES (?), (?)",
        "first",
        "second",
    ])
    .await;
    let rows = parse(
        "sql SELECT",
        &cli.ok(&["sql", "SELECT id, name FROM cli_items ORDER BY id"])
            .await,
    );
    assert_eq!(rows["columns"], json!(["id", "name"]), "{rows}");
    assert_eq!(rows["rows"], json!([[1, "first"], [2, "second"]]), "{rows}");

    let status = parse("status", &cli.ok(&["status", "--json"]).await);
    assert_eq!(
        status["leader_id"].as_u64(),
        Some(cluster.node_id(leader)),
        "{status}"
    );
    assert_eq!(
        status["members"].as_array().map(Vec::len),
        Some(cluster.len()),
        "{status}"
    );

    // Tokens: issue on one server, verify, rotate, and see both keys in the key set.
    tandem_testkit::wait_for(tandem_testkit::DEADLINE, "a signing key", async || {
        cluster.signing_kid(0).await
    })
    .await;
    let token = cli
        .ok(&[
            "keys",
            "issue",
            "--claims",
            r#"{"sub":"cli"}"#,
            "--ttl",
            "5m",
        ])
        .await;
    let verified = parse(
        "keys verify",
        &cli.ok(&["keys", "verify", token.trim()]).await,
    );
    assert_eq!(verified["claims"]["sub"], "cli", "{verified}");
    let rotated = parse("keys rotate", &cli.ok(&["keys", "rotate"]).await);
    let jwks = parse("keys jwks", &cli.ok(&["keys", "jwks"]).await);
    assert!(
        jwks["keys"]
            .as_array()
            .is_some_and(|keys| keys.iter().any(|k| k["kid"] == rotated["kid"])),
        "{jwks}"
    );
    let listed = parse("keys list", &cli.ok(&["keys", "list", "--json"]).await);
    assert_eq!(listed["signing_kid"], rotated["kid"], "{listed}");
    let table = cli.ok(&["keys", "list"]).await;
    let rotated_kid = rotated["kid"].as_str().expect("a kid");
    let signing_row = table
        .lines()
        .find(|line| line.starts_with(rotated_kid))
        .unwrap_or_else(|| panic!("the new key is listed: {table}"));
    assert!(signing_row.trim_end().ends_with("yes"), "{table}");
    assert!(table.starts_with("KID"), "{table}");

    // Without the secret the CLI is refused.
    let mut command = tandem_command(tandem());
    command
        .current_dir(cli.work_dir.path())
        .args(["kv", "get", "cli-key", "--addr", &cli.addrs]);
    let refused = run_to_exit(command, Duration::from_secs(60)).await;
    assert!(!refused.status.success(), "no secret, no answer");
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("401"), "says it was unauthorized: {stderr}");
}
