//! TLS on the client API: three servers with `api_tls = auto` hand out one CA, clients that check
//! it are served (over HTTP/2 when they offer it) and redirected to `https://`, a client with
//! another CA or plain HTTP is refused; a server with its own certificate files picks up a
//! replaced certificate without a restart; an API beyond loopback with no TLS choice does not
//! start.

use std::path::{Path, PathBuf};
use std::time::Duration;

use tandem_testkit::{
    free_ports, local_node_list, poll_for, run_to_exit, tandem_command, ServerProcess, API_SECRET,
    CLUSTER_SECRET, DEADLINE, POLL_INTERVAL,
};

fn tandem() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_tandem"))
}

/// Servers started by hand: the test kit's cluster speaks plain HTTP.
struct TlsServers {
    apis: Vec<String>,
    processes: Vec<ServerProcess>,
    folder: tempfile::TempDir,
}

fn start(nodes: usize, tls_args: &[String]) -> TlsServers {
    let folder = tempfile::tempdir().expect("a folder");
    let (list, apis) = local_node_list(nodes).expect("free ports");
    let processes = (0..nodes)
        .map(|i| {
            let data = folder.path().join(format!("node-{}", i + 1));
            let mut args: Vec<String> = [
                "server",
                "--node-id",
                &(i + 1).to_string(),
                "--nodes",
                &list,
                "--secret-cluster",
                CLUSTER_SECRET,
                "--secret-api",
                API_SECRET,
                "--data-dir",
            ]
            .iter()
            .map(|a| a.to_string())
            .collect();
            args.push(data.display().to_string());
            args.extend(tls_args.iter().cloned());
            let mut process = ServerProcess::new(
                format!("node {}", i + 1),
                tandem(),
                args,
                folder.path().join(format!("node-{}.log", i + 1)),
                folder.path().to_path_buf(),
            );
            process.spawn();
            process
        })
        .collect();
    TlsServers {
        apis,
        processes,
        folder,
    }
}

impl TlsServers {
    fn logs(&self) -> String {
        self.processes
            .iter()
            .map(|p| format!("== {}\n{}", p.label(), p.log_tail(20)))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// Runs the CLI; answers its status, stdout and stderr.
async fn cli(args: &[&str]) -> (bool, String, String) {
    let mut command = tandem_command(tandem());
    command.args(args).env("TANDEM_SECRET_API", API_SECRET);
    let output = run_to_exit(command, DEADLINE).await;
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// `curl` with these arguments: its exit code and what it printed.
async fn curl(args: &[&str]) -> (i32, String) {
    let mut command = tokio::process::Command::new("curl");
    command.args(["-s", "--max-time", "10"]).args(args);
    let output = run_to_exit(command, DEADLINE).await;
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
    )
}

#[tokio::test]
async fn clients_that_check_the_cluster_ca_are_served_and_others_refused() {
    let servers = start(3, &["--api-tls".into(), "auto".into()]);
    let ca_path = servers.folder.path().join("ca.pem");
    let ca = poll_for(DEADLINE, POLL_INTERVAL, async || {
        let (ok, pem, _) = cli(&["cluster", "ca", "--addr", &servers.apis[0], "--insecure"]).await;
        (ok && pem.contains("BEGIN CERTIFICATE")).then_some(pem)
    })
    .await
    .unwrap_or_else(|e| panic!("the CA: {e}\n{}", servers.logs()));
    std::fs::write(&ca_path, &ca).expect("save the CA");
    let ca_file = ca_path.to_str().expect("a UTF-8 path");

    // Every server derives the same CA, and a verified fetch from another says so.
    let (ok, again, err) = cli(&[
        "cluster",
        "ca",
        "--addr",
        &servers.apis[2],
        "--ca-file",
        ca_file,
    ])
    .await;
    assert!(ok && again == ca, "{err}");

    // The CLI, given the CA, writes and reads through any server once a leader is elected.
    let all = servers.apis.join(",");
    let wrote = poll_for(DEADLINE, POLL_INTERVAL, async || {
        let (ok, _, _) = cli(&[
            "kv",
            "put",
            "tls-key",
            "v1",
            "--addr",
            &all,
            "--ca-file",
            ca_file,
        ])
        .await;
        ok.then_some(())
    })
    .await;
    assert!(wrote.is_ok(), "a write over HTTPS\n{}", servers.logs());
    for api in &servers.apis {
        let (ok, value, err) =
            cli(&["kv", "get", "tls-key", "--addr", api, "--ca-file", ca_file]).await;
        assert!(ok && value.trim() == "v1", "{api}: {value} {err}");
    }

    // curl checking the CA is answered over HTTP/2; a standby asked for a redirect names the
    // active server with https.
    let bearer = format!("Authorization: Bearer {API_SECRET}");
    let mut redirects = Vec::new();
    for api in &servers.apis {
        let url = format!("https://{api}/v1/kv/tls-key");
        let (code, out) = curl(&[
            "--cacert",
            ca_file,
            "--http2",
            "-H",
            &bearer,
            "-H",
            "x-tandem-no-request-forwarding: 1",
            "-o",
            "/dev/null",
            "-w",
            "%{http_version} %{http_code} %{redirect_url}",
            &url,
        ])
        .await;
        assert_eq!(code, 0, "curl {url}: {out}");
        let fields: Vec<&str> = out.split(' ').collect();
        assert_eq!(fields[0], "2", "HTTP/2 is offered: {out}");
        if fields[1] == "307" {
            redirects.push(fields.get(2).copied().unwrap_or_default().to_string());
        }
    }
    assert_eq!(
        redirects.len(),
        2,
        "the two standbys redirect: {redirects:?}"
    );
    assert!(
        redirects
            .iter()
            .all(|r| r.starts_with("https://127.0.0.1:")),
        "{redirects:?}"
    );

    // A client with another cluster's CA, or none, is refused in the handshake; plain HTTP gets
    // no answer from a TLS port.
    let other = servers.folder.path().join("other-ca.pem");
    let other_ca =
        tandem_tls::ApiTls::from_secret("another-cluster-secret-entirely", vec!["x".into()])
            .expect("another CA");
    std::fs::write(&other, other_ca.ca_pem().expect("a CA")).expect("save");
    let url = format!("https://{}/health", servers.apis[0]);
    let (code, _) = curl(&["--cacert", other.to_str().unwrap(), &url]).await;
    assert_eq!(
        code, 60,
        "a certificate from another CA is refused (curl: 60)"
    );
    let (code, _) = curl(&[&url]).await;
    assert_eq!(code, 60, "without the CA too");
    let (code, _) = curl(&[&format!("http://{}/health", servers.apis[0])]).await;
    assert_ne!(code, 0, "plain HTTP to a TLS port");
    let (ok, _, err) = cli(&[
        "kv",
        "get",
        "tls-key",
        "--addr",
        &servers.apis[0],
        "--ca-file",
        other.to_str().unwrap(),
    ])
    .await;
    assert!(!ok, "the CLI refuses a server its CA did not sign: {err}");
}

/// A CA and a certificate for 127.0.0.1 that it signed, as PEM files in `folder`; answers the
/// CA's path.
fn own_certificate(folder: &Path, name: &str) -> (PathBuf, PathBuf, PathBuf) {
    let ca_key = rcgen::KeyPair::generate().expect("a CA key");
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, format!("{name} CA"));
    let ca_cert = ca_params.self_signed(&ca_key).expect("the CA");
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let key = rcgen::KeyPair::generate().expect("a key");
    let params = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()]).expect("params");
    let cert = params.signed_by(&key, &issuer).expect("a certificate");
    let paths = (
        folder.join(format!("{name}-ca.pem")),
        folder.join(format!("{name}-cert.pem")),
        folder.join(format!("{name}-key.pem")),
    );
    std::fs::write(&paths.0, ca_cert.pem()).expect("write");
    std::fs::write(&paths.1, cert.pem()).expect("write");
    std::fs::write(&paths.2, key.serialize_pem()).expect("write");
    paths
}

#[tokio::test]
async fn a_replaced_certificate_file_is_used_without_a_restart() {
    let folder = tempfile::tempdir().expect("a folder");
    let (first_ca, cert, key) = own_certificate(folder.path(), "first");
    let servers = start(
        1,
        &[
            "--api-tls-cert-file".into(),
            cert.display().to_string(),
            "--api-tls-key-file".into(),
            key.display().to_string(),
        ],
    );
    let url = format!("https://{}/health", servers.apis[0]);
    let served = poll_for(DEADLINE, POLL_INTERVAL, async || {
        (curl(&["--cacert", first_ca.to_str().unwrap(), &url])
            .await
            .0
            == 0)
            .then_some(())
    })
    .await;
    assert!(
        served.is_ok(),
        "served with the first certificate\n{}",
        servers.logs()
    );
    // The API CA exists only for auto: asked for it, the server says where the CA comes from.
    let (_, body) = curl(&[
        "--cacert",
        first_ca.to_str().unwrap(),
        &format!("https://{}/v1/cluster/ca", servers.apis[0]),
    ])
    .await;
    assert!(body.contains("api_tls_cert_file"), "{body}");

    // Renewed in place, as certbot or cert-manager would.
    let (second_ca, second_cert, second_key) = own_certificate(folder.path(), "second");
    std::fs::copy(&second_key, &key).expect("replace the key");
    std::fs::copy(&second_cert, &cert).expect("replace the certificate");
    let renewed = poll_for(Duration::from_secs(10), POLL_INTERVAL, async || {
        (curl(&["--cacert", second_ca.to_str().unwrap(), &url])
            .await
            .0
            == 0)
            .then_some(())
    })
    .await;
    assert!(
        renewed.is_ok(),
        "the new certificate in use\n{}",
        servers.logs()
    );
    let (code, _) = curl(&["--cacert", first_ca.to_str().unwrap(), &url]).await;
    assert_eq!(code, 60, "the old CA no longer matches");
    assert!(servers.processes[0].is_running());
}

#[tokio::test]
async fn an_api_beyond_loopback_needs_a_tls_choice() {
    let ports = free_ports(2).expect("free ports");
    let folder = tempfile::tempdir().expect("a folder");
    let nodes = format!("1 127.0.0.1:{} 0.0.0.0:{}", ports[0], ports[1]);
    let data = folder.path().display().to_string();
    let (ok, _, err) = cli(&["server", "--nodes", &nodes, "--data-dir", &data]).await;
    assert!(!ok, "refused");
    assert!(
        err.contains("--api-tls off") && err.contains("--api-tls auto"),
        "{err}"
    );
    let (ok, _, err) = cli(&[
        "server",
        "--nodes",
        &nodes,
        "--data-dir",
        &data,
        "--api-tls",
        "auto",
        "--api-tls-cert-file",
        "c.pem",
        "--api-tls-key-file",
        "k.pem",
    ])
    .await;
    assert!(!ok && err.contains("cannot be combined"), "{err}");
}
