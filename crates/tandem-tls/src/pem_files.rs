//! Bring-your-own CA: the operator's CA certificate(s), node certificate chain and node key,
//! read from PEM files at start and again on every rotation.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;
use rustls::RootCertStore;

use crate::TlsError;

/// How often [`crate::ClusterTls::spawn_rotation`] re-reads the files unless told otherwise.
pub const DEFAULT_RELOAD_INTERVAL: Duration = Duration::from_secs(60 * 60);

/// Where an operator's own CA and node certificate live.
///
/// The node certificate must carry the DNS name [`crate::CLUSTER_SERVER_NAME`] and both the
/// serverAuth and clientAuth extended key usages (or none), because every node is a server and
/// a client of the cluster channel. The CA file may hold several certificates: all are trusted,
/// which is how a CA is replaced without downtime.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterPemFiles {
    /// PEM file with the CA certificate(s) that peers' certificates must chain to.
    pub ca_certificates: PathBuf,
    /// PEM file with this node's certificate first, then any intermediates.
    pub certificate_chain: PathBuf,
    /// PEM file with this node's private key (PKCS#8, SEC1 or PKCS#1).
    pub private_key: PathBuf,
    /// How often the background rotation re-reads the three files.
    pub reload_interval: Duration,
}

impl ClusterPemFiles {
    pub fn new(
        ca_certificates: impl Into<PathBuf>,
        certificate_chain: impl Into<PathBuf>,
        private_key: impl Into<PathBuf>,
    ) -> Self {
        Self {
            ca_certificates: ca_certificates.into(),
            certificate_chain: certificate_chain.into(),
            private_key: private_key.into(),
            reload_interval: DEFAULT_RELOAD_INTERVAL,
        }
    }

    pub(crate) fn load_trust_anchors(&self) -> Result<RootCertStore, TlsError> {
        let path = &self.ca_certificates;
        let mut roots = RootCertStore::empty();
        for (index, certificate) in read_certificates(path)?.into_iter().enumerate() {
            roots
                .add(certificate)
                .map_err(|source| TlsError::BadTrustAnchor {
                    path: path.clone(),
                    index: index + 1,
                    source,
                })?;
        }
        Ok(roots)
    }

    pub(crate) fn load_node_certificate(
        &self,
        provider: &CryptoProvider,
    ) -> Result<CertifiedKey, TlsError> {
        load_certified_key(&self.certificate_chain, &self.private_key, provider)
    }
}

/// A certificate chain (leaf first) and its private key from PEM files, checked to match.
pub(crate) fn load_certified_key(
    chain_path: &Path,
    key_path: &Path,
    provider: &CryptoProvider,
) -> Result<CertifiedKey, TlsError> {
    let chain = read_certificates(chain_path)?;
    let key_pem = read(key_path)?;
    let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| TlsError::NotPemKey {
        path: key_path.to_path_buf(),
        detail: e.to_string(),
    })?;
    let signing_key = provider
        .key_provider
        .load_private_key(key)
        .map_err(|source| TlsError::UnusableKey {
            path: key_path.to_path_buf(),
            source,
        })?;
    let certified = CertifiedKey::new(chain, signing_key);
    certified
        .keys_match()
        .map_err(|source| TlsError::KeyMismatch {
            cert: chain_path.to_path_buf(),
            key: key_path.to_path_buf(),
            source,
        })?;
    Ok(certified)
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::ReadFile {
        path: path.to_path_buf(),
        source,
    })
}

/// All certificates of a PEM file, in order; an error if there are none.
fn read_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = read(path)?;
    let not_pem = |detail: String| TlsError::NotPemCertificates {
        path: path.to_path_buf(),
        detail,
    };
    let certificates = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| not_pem(e.to_string()))?;
    if certificates.is_empty() {
        return Err(not_pem("no certificate found".into()));
    }
    Ok(certificates)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn garbage_certificate_file_is_named_as_not_pem() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("node.crt");
        std::fs::write(&path, b"this is not a certificate").expect("write");
        let err = read_certificates(&path).expect_err("must refuse");
        let message = err.to_string();
        assert!(message.contains("node.crt"), "{message}");
        assert!(message.contains("not PEM"), "{message}");
    }

    #[test]
    fn missing_file_names_the_path() {
        let files = ClusterPemFiles::new("/nonexistent/ca.pem", "/nonexistent/n.pem", "/x/k.pem");
        let err = files.load_trust_anchors().expect_err("must refuse");
        assert!(err.to_string().contains("/nonexistent/ca.pem"), "{err}");
    }
}
