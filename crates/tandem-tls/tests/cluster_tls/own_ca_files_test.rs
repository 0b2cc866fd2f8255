//! Bring-your-own CA: PEM files made here with rcgen, as an operator's tooling would.

use std::path::Path;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, PKCS_ECDSA_P256_SHA256,
};
use tandem_tls::{ClusterPemFiles, ClusterTls, TlsError};

use crate::support::{assert_refused, node, ping, presented_certificate, serve, SECRET};

fn operator_ca() -> (Issuer<'static, KeyPair>, String) {
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).expect("CA key");
    let mut params = CertificateParams::default();
    params
        .distinguished_name
        .push(DnType::CommonName, "Example Corp cluster CA");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let pem = params.self_signed(&key).expect("CA certificate").pem();
    (Issuer::new(params, key), pem)
}

/// Writes `<name>.pem` and `<name>.key` for a node certificate issued by `ca`.
fn write_node_files(dir: &Path, name: &str, ca: &Issuer<'static, KeyPair>) -> (String, String) {
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).expect("node key");
    let mut params = CertificateParams::new(vec![
        "cluster.tandem".to_string(),
        format!("{name}.cluster.tandem"),
    ])
    .expect("node params");
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    let cert = params.signed_by(&key, ca).expect("node certificate");
    let cert_path = dir.join(format!("{name}.pem"));
    let key_path = dir.join(format!("{name}.key"));
    std::fs::write(&cert_path, cert.pem()).expect("write certificate");
    std::fs::write(&key_path, key.serialize_pem()).expect("write key");
    (
        cert_path.display().to_string(),
        key_path.display().to_string(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_with_operator_certificates_talk_over_mutual_tls() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (ca, ca_pem) = operator_ca();
    let ca_path = dir.path().join("ca.pem");
    std::fs::write(&ca_path, ca_pem).expect("write CA");
    let (cert1, key1) = write_node_files(dir.path(), "node-1", &ca);
    let (cert2, key2) = write_node_files(dir.path(), "node-2", &ca);

    let server_node =
        ClusterTls::from_pem_files(ClusterPemFiles::new(&ca_path, &cert1, &key1)).expect("node 1");
    let client_node =
        ClusterTls::from_pem_files(ClusterPemFiles::new(&ca_path, &cert2, &key2)).expect("node 2");
    let server = serve(&server_node).await;
    let client = client_node.https_client().expect("https client");
    assert_eq!(
        ping(&client, server.addr).await,
        Ok(reqwest::StatusCode::OK)
    );

    // Replacing the files on disk and rotating swaps the certificate without a restart.
    let before = presented_certificate(client_node.client_config(), server.addr).await;
    write_node_files(dir.path(), "node-1", &ca);
    server_node.rotate().expect("rotate from files");
    let after = presented_certificate(client_node.client_config(), server.addr).await;
    assert_ne!(before, after);
    assert_eq!(
        ping(&client, server.addr).await,
        Ok(reqwest::StatusCode::OK)
    );

    // A node of the derived CA is no member of this cluster.
    let derived = node(3, SECRET).https_client().expect("https client");
    assert_refused(ping(&derived, server.addr).await, "UnknownIssuer");
}

#[test]
fn unreadable_and_mismatched_files_are_named() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (ca, ca_pem) = operator_ca();
    let ca_path = dir.path().join("ca.pem");
    std::fs::write(&ca_path, ca_pem).expect("write CA");
    let (cert1, _key1) = write_node_files(dir.path(), "node-1", &ca);
    let (_cert2, key2) = write_node_files(dir.path(), "node-2", &ca);

    let err = ClusterTls::from_pem_files(ClusterPemFiles::new(&ca_path, &cert1, &key2))
        .expect_err("a key of another certificate");
    assert!(matches!(err, TlsError::KeyMismatch { .. }), "{err}");

    let garbage = dir.path().join("garbage.pem");
    std::fs::write(&garbage, "hello").expect("write");
    let err = ClusterTls::from_pem_files(ClusterPemFiles::new(&garbage, &cert1, &key2))
        .expect_err("a CA file without certificates");
    let message = err.to_string();
    assert!(
        message.contains("garbage.pem") && message.contains("not PEM"),
        "{message}"
    );

    let err = ClusterTls::from_pem_files(ClusterPemFiles::new(&ca_path, &cert1, &garbage))
        .expect_err("a key file without a key");
    assert!(matches!(err, TlsError::NotPemKey { .. }), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_rotation_keeps_the_current_certificate() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (ca, ca_pem) = operator_ca();
    let ca_path = dir.path().join("ca.pem");
    std::fs::write(&ca_path, ca_pem).expect("write CA");
    let (cert1, key1) = write_node_files(dir.path(), "node-1", &ca);
    let tls =
        ClusterTls::from_pem_files(ClusterPemFiles::new(&ca_path, &cert1, &key1)).expect("tls");
    let before = tls.node_certificate_chain();

    std::fs::write(&cert1, "truncated").expect("break the file");
    assert!(tls.rotate().is_err());
    assert_eq!(before, tls.node_certificate_chain());
}
