//! The Helm chart in deploy/helm/tandem: linted and rendered by a real `helm`, every rendered
//! object validated against Kubernetes' own schemas (kubernetes-validate, strict, at the oldest
//! and newest versions the chart supports), wrong values refused with a message, and the rendered
//! servers run: each pod's container as the StatefulSet gives it (its arguments, environment and
//! secrets, its hostname) in a network namespace of its own whose `/etc/hosts` resolves the
//! pods' DNS names, until the three form a cluster and pass their readiness and liveness probes.

use std::path::{Path, PathBuf};
use std::process::Command;

use base64::Engine;
use serde_json::Value;
use tandem_testkit::{
    http_client, poll_for, ClusterNetwork, ServerProcess, DEADLINE, POLL_INTERVAL,
};

fn tandem() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_tandem"))
}

fn chart() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/helm/tandem")
}

/// The Kubernetes versions the rendered objects must be valid in: the chart's `kubeVersion`
/// floor and the newest that kubernetes-validate knows.
const KUBERNETES_VERSIONS: [&str; 2] = ["1.25.0", "1.37.0"];

const SECRETS: [&str; 2] = [
    "secrets.api=api-secret-for-the-chart-test",
    "secrets.cluster=cluster-secret-for-the-chart-test",
];

/// Runs a program to its end: its stdout, or its stderr when it fails.
fn run(program: &str, args: &[&str]) -> Result<String, String> {
    let output = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run {program} (scripts/test installs it; see docs/testing.md): {e}")
        });
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&output.stderr).into_owned())
    }
}

/// `helm template RELEASE` of the chart with these `--set` values.
fn render(release: &str, values: &[&str]) -> Result<String, String> {
    let chart = chart();
    let mut args = vec!["template", release, chart.to_str().expect("a UTF-8 path")];
    for value in values {
        args.extend(["--set", value]);
    }
    run("helm", &args)
}

/// The rendered YAML documents as JSON values, read by PyYAML (what kubernetes-validate reads
/// them with), so no YAML parser of the test's own decides what the chart means.
fn documents(yaml: &str) -> Vec<Value> {
    let dir = tempfile::tempdir().expect("a folder");
    let path = dir.path().join("rendered.yaml");
    std::fs::write(&path, yaml).expect("write the rendered chart");
    let json = run(
        "python3",
        &[
            "-c",
            "import json, sys, yaml; print(json.dumps([d for d in yaml.safe_load_all(open(sys.argv[1])) if d]))",
            path.to_str().expect("a UTF-8 path"),
        ],
    )
    .unwrap_or_else(|e| panic!("PyYAML could not read the rendered chart: {e}\n{yaml}"));
    serde_json::from_str::<Vec<Value>>(&json).expect("JSON from python")
}

fn object<'a>(documents: &'a [Value], kind: &str, name: &str) -> &'a Value {
    documents
        .iter()
        .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name} in the rendered chart"))
}

fn validate(yaml: &str, what: &str) {
    let dir = tempfile::tempdir().expect("a folder");
    let path = dir.path().join("rendered.yaml");
    std::fs::write(&path, yaml).expect("write the rendered chart");
    for version in KUBERNETES_VERSIONS {
        let verdict = run(
            "kubernetes-validate",
            &[
                "--strict",
                "--quiet",
                "-k",
                version,
                path.to_str().expect("a UTF-8 path"),
            ],
        );
        if let Err(message) = verdict {
            panic!("the chart rendered with {what} is not valid in Kubernetes {version}: {message}\n{yaml}");
        }
    }
}

#[test]
fn the_chart_lints_and_every_rendering_is_valid_kubernetes() {
    let chart = chart();
    let mut lint = vec!["lint", "--strict", chart.to_str().expect("a UTF-8 path")];
    for value in SECRETS {
        lint.extend(["--set", value]);
    }
    run("helm", &lint).unwrap_or_else(|e| panic!("helm lint --strict: {e}"));

    let renderings: [(&str, Vec<&str>); 3] = [
        (
            "three servers and a Secret of the chart's",
            SECRETS.to_vec(),
        ),
        (
            "one server and an existing Secret",
            vec!["server.replicas=1", "secrets.existingSecret=tandem-secrets"],
        ),
        (
            "five servers and agents",
            vec![
                "server.replicas=5",
                "secrets.existingSecret=tandem-secrets",
                "agents.enabled=true",
                "agents.joinTokenSecret=tandem-join",
            ],
        ),
    ];
    for (what, values) in renderings {
        let yaml = render("tandem", &values).unwrap_or_else(|e| panic!("{what}: {e}"));
        validate(&yaml, what);
    }

    let all = documents(&render("tandem", &SECRETS).expect("the default rendering"));
    let servers = object(&all, "StatefulSet", "tandem");
    assert_eq!(servers["spec"]["replicas"], 3);
    assert_eq!(servers["spec"]["podManagementPolicy"], "Parallel");
    let pod = &servers["spec"]["template"]["spec"];
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    let container = &pod["containers"][0];
    assert_eq!(container["readinessProbe"]["httpGet"]["path"], "/ready");
    assert_eq!(container["livenessProbe"]["httpGet"]["path"], "/health");
    assert_eq!(container["securityContext"]["readOnlyRootFilesystem"], true);
    let env = &container["env"];
    let secret_ref = |name: &str| {
        env.as_array()
            .expect("env")
            .iter()
            .find(|e| e["name"] == name)
            .map(|e| e["valueFrom"]["secretKeyRef"].clone())
            .unwrap_or_else(|| panic!("{name} in the server's environment"))
    };
    assert_eq!(secret_ref("TANDEM_SECRET_API")["key"], "secret-api");
    assert_eq!(secret_ref("TANDEM_SECRET_CLUSTER")["key"], "secret-cluster");
    let peers = object(&all, "Service", "tandem-peers");
    assert_eq!(peers["spec"]["clusterIP"], "None");
    assert_eq!(peers["spec"]["publishNotReadyAddresses"], true);
    let budget = object(&all, "PodDisruptionBudget", "tandem");
    assert_eq!(budget["spec"]["maxUnavailable"], 1);
}

#[test]
fn wrong_values_are_refused_with_a_message() {
    let refusals: [(&[&str], &str); 4] = [
        (
            &["server.replicas=2", SECRETS[0], SECRETS[1]],
            "server.replicas must be one of the following: 1, 3, 5",
        ),
        (&[], "set secrets.existingSecret"),
        (
            &["secrets.api=short", "secrets.cluster=short"],
            "each at least 16 characters",
        ),
        (
            &["agents.enabled=true", SECRETS[0], SECRETS[1]],
            "agents.enabled needs agents.joinTokenSecret",
        ),
    ];
    for (values, message) in refusals {
        match render("tandem", values) {
            Ok(yaml) => panic!("{values:?} rendered:\n{yaml}"),
            Err(error) => assert!(
                error.contains(message),
                "{values:?}: expected {message:?} in: {error}"
            ),
        }
    }
}

/// The value of a rendered container's environment variable, with a `secretKeyRef` read from
/// the rendered Secret, as the kubelet would.
fn env_value(entry: &Value, secret: &Value) -> String {
    if let Some(value) = entry["value"].as_str() {
        return value.to_string();
    }
    let key = entry["valueFrom"]["secretKeyRef"]["key"]
        .as_str()
        .unwrap_or_else(|| panic!("an environment entry the test cannot resolve: {entry}"));
    let encoded = secret["data"][key].as_str().expect("the key in the Secret");
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .expect("base64 in the Secret");
    String::from_utf8(decoded).expect("a UTF-8 secret")
}

#[tokio::test]
async fn the_rendered_servers_form_a_cluster_and_pass_their_probes() {
    let all = documents(&render("tandem", &SECRETS).expect("the default rendering"));
    let statefulset = object(&all, "StatefulSet", "tandem");
    let secret = object(&all, "Secret", "tandem");
    let pod = &statefulset["spec"]["template"]["spec"];
    let container = &pod["containers"][0];
    let replicas = statefulset["spec"]["replicas"].as_u64().expect("replicas") as usize;
    let api_port = container["ports"]
        .as_array()
        .expect("ports")
        .iter()
        .find(|p| p["name"] == "api")
        .and_then(|p| p["containerPort"].as_u64())
        .expect("the api port");
    let data_mount = container["volumeMounts"]
        .as_array()
        .expect("volume mounts")
        .iter()
        .find(|m| m["name"] == "data")
        .and_then(|m| m["mountPath"].as_str())
        .expect("the data volume's mount")
        .to_string();

    // Pod N's DNS name, through the headless Service, as the node list spells it.
    let peers = object(&all, "Service", "tandem-peers");
    let network = ClusterNetwork::create(replicas);
    let names: Vec<(String, String)> = (0..replicas)
        .map(|i| {
            let name = format!(
                "tandem-{i}.{}.default.svc.cluster.local",
                peers["metadata"]["name"].as_str().expect("a name")
            );
            (network.node_ip(i), name)
        })
        .collect();
    let folder = tempfile::tempdir().expect("a folder");
    let mut servers = Vec::new();
    for i in 0..replicas {
        network.set_hosts(i, &names);
        // The data volume: a folder of the test's own where the pod mounts its claim.
        let data = folder.path().join(format!("data-{i}"));
        std::fs::create_dir_all(&data).expect("a data folder");
        let mut env = vec![("HOSTNAME".to_string(), format!("tandem-{i}"))];
        for entry in container["env"].as_array().expect("env") {
            let name = entry["name"].as_str().expect("a name").to_string();
            let mut value = env_value(entry, secret);
            if value == data_mount {
                value = data.display().to_string();
            }
            env.push((name, value));
        }
        let args = container["args"]
            .as_array()
            .expect("args")
            .iter()
            .map(|a| a.as_str().expect("an argument").to_string())
            .collect();
        let mut server = ServerProcess::new(
            format!("pod tandem-{i}"),
            tandem(),
            args,
            folder.path().join(format!("tandem-{i}.log")),
            data.clone(),
        );
        server.set_namespace(Some(network.namespace(i).to_string()));
        server.set_env(env);
        server.spawn();
        servers.push(server);
    }

    let http = http_client();
    let probe = |i: usize, probe: &str| {
        let path = container[probe]["httpGet"]["path"]
            .as_str()
            .expect("an HTTP probe")
            .to_string();
        format!("http://{}:{api_port}{path}", network.node_ip(i))
    };
    for i in 0..replicas {
        for kind in ["readinessProbe", "livenessProbe"] {
            let url = probe(i, kind);
            let answered = poll_for(DEADLINE, POLL_INTERVAL, async || {
                let response = http.get(&url).send().await.ok()?;
                response.status().is_success().then_some(())
            })
            .await;
            if let Err(timed_out) = answered {
                let logs: Vec<String> = servers
                    .iter()
                    .map(|s| format!("== {}\n{}", s.label(), s.log_tail(30)))
                    .collect();
                panic!("{url} never answered 200: {timed_out}\n{}", logs.join("\n"));
            }
        }
    }

    // One cluster of three: every pod sees the same active node among the three.
    let api_secret = env_value(
        &serde_json::json!({"valueFrom": {"secretKeyRef": {"key": "secret-api"}}}),
        secret,
    );
    let mut actives = Vec::new();
    for i in 0..replicas {
        let url = format!("http://{}:{api_port}/v1/cluster", network.node_ip(i));
        let status: Value = http
            .get(&url)
            .bearer_auth(&api_secret)
            .send()
            .await
            .expect("GET /v1/cluster")
            .json()
            .await
            .expect("JSON");
        let members = status["members"].as_array().map(Vec::len);
        assert_eq!(members, Some(replicas), "pod {i} sees {status}");
        actives.push(status["active_node"]["id"].clone());
    }
    assert!(
        actives.iter().all(|a| *a == actives[0] && a.is_u64()),
        "one active node: {actives:?}"
    );
    for server in &servers {
        assert!(!server.has_panicked(), "{}", server.log_tail(40));
    }
}
