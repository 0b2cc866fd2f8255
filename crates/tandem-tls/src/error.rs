//! What can go wrong while building or rotating the cluster channel's TLS identity.

use std::path::PathBuf;
use std::time::Duration;

/// An error from `tandem-tls`. Each message names what was wrong and what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error(
        "{which} is {len} characters long; the cluster CA is derived from it and needs at least \
         {min} (use the same long random string on every node, e.g. in TANDEM_SECRET_CLUSTER)"
    )]
    SecretTooShort {
        which: &'static str,
        len: usize,
        min: usize,
    },

    #[error(
        "cluster certificate validity {validity:?} is out of range; use {min:?} to {max:?} \
         (certificates are re-issued when half of it has passed)"
    )]
    ValidityOutOfRange {
        validity: Duration,
        min: Duration,
        max: Duration,
    },

    #[error("cluster TLS file {path}: {source} (check the path and that this user may read it)")]
    ReadFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error(
        "cluster certificate file {path}: not PEM ({detail}); expected one or more \
         '-----BEGIN CERTIFICATE-----' blocks"
    )]
    NotPemCertificates { path: PathBuf, detail: String },

    #[error(
        "cluster key file {path}: no PEM private key ({detail}); expected a '-----BEGIN PRIVATE \
         KEY-----', 'EC PRIVATE KEY' or 'RSA PRIVATE KEY' block"
    )]
    NotPemKey { path: PathBuf, detail: String },

    #[error("cluster key file {path}: the key cannot be used for TLS: {source}")]
    UnusableKey {
        path: PathBuf,
        #[source]
        source: rustls::Error,
    },

    #[error(
        "cluster certificate {cert} does not belong to key {key} ({source}); give the key that \
         was issued together with the certificate"
    )]
    KeyMismatch {
        cert: PathBuf,
        key: PathBuf,
        #[source]
        source: rustls::Error,
    },

    #[error(
        "cluster CA file {path}: certificate #{index} cannot be used as a trust anchor: {source}"
    )]
    BadTrustAnchor {
        path: PathBuf,
        index: usize,
        #[source]
        source: rustls::Error,
    },

    #[error("deriving the cluster CA from the cluster secret failed: {0}")]
    DeriveCa(String),

    #[error("issuing the node certificate failed: {0}")]
    IssueCertificate(#[from] rcgen::Error),

    #[error("building the cluster TLS configuration failed: {0}")]
    Config(String),

    #[error("building the cluster HTTPS client failed: {0}")]
    HttpClient(#[source] reqwest::Error),
}
