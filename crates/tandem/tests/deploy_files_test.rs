//! The deployment files in the repository, run the way they describe: the Dockerfile's runtime
//! stage (its environment, user, working folder, entry point and command) runs the server in a
//! network namespace of its own, reachable on the ports the image exposes; the systemd units pass
//! `systemd-analyze verify` with nothing to say; the example settings beside them start a server
//! and an agent.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use tandem_testkit::{
    free_ports, http_client, join_token, poll_for, run_to_exit, tandem_command,
    wait_for_agent_states, AgentProcess, Cluster, ClusterNetwork, ServerProcess, DEADLINE,
    POLL_INTERVAL,
};

fn tandem() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_tandem"))
}

fn repository_file(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(path)
}

fn read(path: &str) -> String {
    std::fs::read_to_string(repository_file(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Words as a shell splits them: on blanks outside double quotes, quotes removed.
fn shell_words(text: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word = None::<String>;
    let mut quoted = false;
    for c in text.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                word.get_or_insert_with(String::new);
            }
            c if c.is_whitespace() && !quoted => words.extend(word.take()),
            c => word.get_or_insert_with(String::new).push(c),
        }
    }
    words.extend(word);
    words
}

/// The instructions of a Dockerfile's last stage, `(INSTRUCTION, arguments)`, with continued
/// lines joined and comments left out.
fn runtime_stage(dockerfile: &str) -> Vec<(String, String)> {
    let mut instructions: Vec<(String, String)> = Vec::new();
    let mut pending = String::new();
    for line in dockerfile.lines() {
        let line = line.trim();
        if line.starts_with('#') || (line.is_empty() && pending.is_empty()) {
            continue;
        }
        match line.strip_suffix('\\') {
            Some(start) => pending.push_str(start),
            None => {
                pending.push_str(line);
                let (instruction, arguments) = pending.split_once(' ').unwrap_or((&pending, ""));
                if instruction.eq_ignore_ascii_case("FROM") {
                    instructions.clear();
                }
                instructions.push((instruction.to_uppercase(), arguments.trim().to_string()));
                pending.clear();
            }
        }
    }
    instructions
}

/// The single value of an instruction of the stage.
fn single<'a>(stage: &'a [(String, String)], instruction: &str) -> &'a str {
    let found: Vec<&str> = stage
        .iter()
        .filter(|(i, _)| i == instruction)
        .map(|(_, a)| a.as_str())
        .collect();
    assert_eq!(found.len(), 1, "one {instruction} in the runtime stage");
    found[0]
}

fn json_words(arguments: &str) -> Vec<String> {
    serde_json::from_str(arguments)
        .unwrap_or_else(|e| panic!("{arguments} is not in the JSON (exec) form: {e}"))
}

#[tokio::test]
async fn the_image_runs_a_reachable_server_as_an_unprivileged_user() {
    let stage = runtime_stage(&read("Dockerfile"));
    let env: Vec<(String, String)> = stage
        .iter()
        .filter(|(i, _)| i == "ENV")
        .flat_map(|(_, a)| shell_words(a))
        .map(|pair| {
            let (k, v) = pair.split_once('=').expect("ENV KEY=value");
            (k.to_string(), v.to_string())
        })
        .collect();
    let (uid, gid) = single(&stage, "USER")
        .split_once(':')
        .expect("USER uid:gid");
    assert!(
        uid.parse::<u32>().is_ok_and(|u| u != 0),
        "a numeric, unprivileged user (Kubernetes' runAsNonRoot checks the number): {uid}"
    );
    let entrypoint = json_words(single(&stage, "ENTRYPOINT"));
    let command = json_words(single(&stage, "CMD"));
    let workdir = single(&stage, "WORKDIR");
    let volume = json_words(single(&stage, "VOLUME"));
    assert_eq!(
        volume,
        vec![workdir.to_string()],
        "the data folder is the volume"
    );
    let exposed: Vec<u16> = shell_words(single(&stage, "EXPOSE"))
        .iter()
        .filter(|p| !p.ends_with("/udp"))
        .map(|p| p.trim_end_matches("/tcp").parse().expect("a port"))
        .collect();

    // The image's file system, as far as the server sees it: the binary where the entry point
    // says, and the volume, owned by the image's user.
    let root = tempfile::tempdir().expect("a folder");
    std::fs::set_permissions(root.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let binary = root.path().join("tandem");
    std::fs::copy(tandem(), &binary).expect("copy the binary");
    let data = root.path().join("volume");
    std::fs::create_dir(&data).expect("the volume");
    std::os::unix::fs::chown(
        &data,
        Some(uid.parse().expect("uid")),
        Some(gid.parse().expect("gid")),
    )
    .expect("chown the volume (the test runs as root)");
    let env: Vec<(String, String)> = env
        .into_iter()
        .map(|(k, v)| match v == workdir {
            true => (k, data.display().to_string()),
            false => (k, v),
        })
        .collect();
    assert!(
        entrypoint.len() == 1 && entrypoint[0].ends_with("/tandem"),
        "the entry point is the binary: {entrypoint:?}"
    );
    let mut args = vec![
        format!("--reuid={uid}"),
        format!("--regid={gid}"),
        "--clear-groups".to_string(),
        binary.display().to_string(),
    ];
    args.extend(command);

    let network = ClusterNetwork::create(1);
    let mut container = ServerProcess::new(
        "container",
        Path::new("/usr/bin/setpriv"),
        args,
        root.path().join("container.log"),
        data.clone(),
    );
    container.set_namespace(Some(network.namespace(0).to_string()));
    container.set_env(env);
    container.spawn();

    let http = http_client();
    let ip = network.node_ip(0);
    for port in &exposed {
        let reached = poll_for(DEADLINE, POLL_INTERVAL, async || {
            tokio::net::TcpStream::connect((ip.as_str(), *port))
                .await
                .ok()
        })
        .await;
        assert!(
            reached.is_ok(),
            "exposed port {port} reachable from outside the container:\n{}",
            container.log_tail(30)
        );
    }
    let ready_url = format!("http://{ip}:8200/ready");
    let ready = poll_for(DEADLINE, POLL_INTERVAL, async || {
        let response = http.get(&ready_url).send().await.ok()?;
        response.status().is_success().then_some(())
    })
    .await;
    assert!(ready.is_ok(), "{ready_url}:\n{}", container.log_tail(30));

    // The secret generated on the first start, in the volume, written by the image's user.
    let secret_file = data.join("secret-api");
    let secret = std::fs::read_to_string(&secret_file).expect("the generated API secret");
    let owner = std::os::unix::fs::MetadataExt::uid(&std::fs::metadata(&secret_file).unwrap());
    assert_eq!(
        owner.to_string(),
        uid,
        "files in the volume belong to the image's user"
    );
    let put = http
        .put(format!("http://{ip}:8200/v1/kv/from-the-image"))
        .bearer_auth(secret.trim())
        .body("stored")
        .send()
        .await
        .expect("PUT a key");
    assert!(
        put.status().is_success(),
        "{}",
        put.text().await.unwrap_or_default()
    );
    assert!(!container.has_panicked(), "{}", container.log_tail(30));
}

/// A unit file with its `/usr/local/bin/tandem` replaced by the binary under test, which
/// `systemd-analyze verify` checks exists.
fn unit_for_this_binary(unit: &str, folder: &Path) -> PathBuf {
    let text = read(&format!("deploy/systemd/{unit}"))
        .replace("/usr/local/bin/tandem", &tandem().display().to_string());
    let path = folder.join(unit);
    std::fs::write(&path, text).expect("write the unit");
    path
}

#[tokio::test]
async fn the_systemd_units_verify_with_nothing_to_say() {
    let folder = tempfile::tempdir().expect("a folder");
    for unit in ["tandem-server.service", "tandem-agent.service"] {
        let path = unit_for_this_binary(unit, folder.path());
        let mut verify = tokio::process::Command::new("systemd-analyze");
        verify.arg("verify").arg(&path);
        let output = run_to_exit(verify, DEADLINE).await;
        let said = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(
            output.status.success() && said.trim().is_empty(),
            "systemd-analyze verify {unit}: {}\n{said}",
            output.status
        );
    }
}

/// `KEY=value` lines of an environment file, comments left out.
fn environment_file(path: &str) -> BTreeMap<String, String> {
    read(path)
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
        .map(|l| {
            let (k, v) = l.split_once('=').expect("KEY=value");
            (k.to_string(), v.to_string())
        })
        .collect()
}

/// The `Environment=` settings of a unit.
fn unit_environment(unit: &str) -> Vec<(String, String)> {
    read(&format!("deploy/systemd/{unit}"))
        .lines()
        .filter_map(|l| l.strip_prefix("Environment="))
        .map(|pair| {
            let (k, v) = pair.split_once('=').expect("Environment=KEY=value");
            (k.to_string(), v.to_string())
        })
        .collect()
}

#[tokio::test]
async fn the_example_server_settings_start_a_server() {
    let folder = tempfile::tempdir().expect("a folder");
    let secrets = environment_file("deploy/systemd/server.env");
    let data = folder.path().join("state");
    // The unit's settings, with the state folder (systemd's StateDirectory) the test's own, and
    // the example node list, whose addresses are the reader's, replaced by free local ports.
    let mut env: Vec<(String, String)> = unit_environment("tandem-server.service")
        .into_iter()
        .map(|(k, v)| match k.as_str() {
            "TANDEM_DATA_DIR" => (k, data.display().to_string()),
            _ => (k, v),
        })
        .collect();
    env.extend(secrets.clone());
    let ports = free_ports(2).expect("free ports");
    let api = format!("127.0.0.1:{}", ports[1]);
    let mut server = ServerProcess::new(
        "server from the example settings",
        tandem(),
        vec![
            "server".into(),
            "--config".into(),
            repository_file("deploy/systemd/server.toml")
                .display()
                .to_string(),
            "--nodes".into(),
            format!("1 127.0.0.1:{} {api}", ports[0]),
        ],
        folder.path().join("server.log"),
        folder.path().to_path_buf(),
    );
    server.set_env(env);
    server.spawn();
    // The example's API speaks TLS with the cluster's CA: fetched once unverified, as the
    // example's comment says, then every request checks the certificate against it.
    let ca = poll_for(DEADLINE, POLL_INTERVAL, async || {
        tandem_client::fetch_ca_unverified(&api).await.ok()
    })
    .await;
    let ca = ca.unwrap_or_else(|e| panic!("the CA from {api}: {e}\n{}", server.log_tail(30)));
    let secret = &secrets["TANDEM_SECRET_API"];
    let client = tandem_client::Client::new(std::slice::from_ref(&api), Some(secret.clone()))
        .and_then(|c| c.with_ca_pem(ca.as_bytes()))
        .expect("a client that checks the CA");
    let answered = client.get("/v1/cluster").await;
    assert!(
        answered.as_ref().is_ok_and(|r| r.status.is_success()),
        "the server answers over HTTPS with the example's API secret: {answered:?}\n{}",
        server.log_tail(30)
    );
    assert!(
        std::fs::read_dir(&data).is_ok_and(|mut entries| entries.next().is_some()),
        "the data lands in the unit's state folder"
    );
    // The example's log format is JSON: one object per line.
    let log = server.log();
    let json_lines = log
        .lines()
        .filter(|l| serde_json::from_str::<serde_json::Value>(l).is_ok())
        .count();
    assert!(
        json_lines > 0,
        "JSON log lines, as the example sets:\n{log}"
    );
}

#[tokio::test]
async fn the_example_agent_settings_register_an_agent_with_its_check() {
    let cluster = Cluster::start(tandem(), 1, &[]).await;
    let example: toml::Value = toml::from_str(&read("deploy/systemd/agent.toml")).expect("TOML");
    let pool = example["agent"]["pool"]
        .as_str()
        .expect("a pool")
        .to_string();
    let token = join_token(&cluster, &pool, serde_json::json!({})).await;
    let config = repository_file("deploy/systemd/agent.toml");
    // The servers and the service address are the reader's; the harness gives its own (flags
    // win over the file). The pool and the check come from the file.
    let agent = AgentProcess::start(
        tandem(),
        &cluster,
        "from-the-example",
        &pool,
        Some(&token),
        &["--config", config.to_str().expect("a UTF-8 path")],
    );
    // The example's check reaches a service that does not run here: the agent reports it.
    wait_for_agent_states(&cluster, &[agent.name()], "critical").await;
    let mut show = tandem_command(tandem());
    show.args([
        "agents",
        "show",
        agent.name(),
        "--addr",
        cluster.api_addr(0),
    ])
    .env("TANDEM_SECRET_API", tandem_testkit::API_SECRET);
    let output = run_to_exit(show, DEADLINE).await;
    let shown = String::from_utf8_lossy(&output.stdout);
    assert!(
        shown.contains("127.0.0.1:443"),
        "the example's check is the agent's: {shown}"
    );
}
