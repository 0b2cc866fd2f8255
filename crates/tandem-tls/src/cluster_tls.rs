//! A node's TLS identity on the cluster channel and the rustls configurations built from it.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use rustls::client::Resumption;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::CertificateDer;
use rustls::server::NoServerSessionStorage;
use rustls::{ClientConfig, RootCertStore, ServerConfig};

use crate::derived_ca::DerivedCa;
use crate::node_cert::{issue_node_certificate, NodeCertResolver};
use crate::pem_files::ClusterPemFiles;
use crate::trust::{ClusterClientVerifier, ClusterServerVerifier, TrustAnchors};
use crate::TlsError;

/// How long a node certificate issued from the derived CA is valid unless told otherwise.
pub const DEFAULT_NODE_CERT_VALIDITY: Duration = Duration::from_secs(7 * 24 * 60 * 60);

/// The shortest node certificate validity accepted.
pub const MIN_NODE_CERT_VALIDITY: Duration = Duration::from_secs(60);

/// The longest node certificate validity accepted: node certificates are meant to be short-lived.
pub const MAX_NODE_CERT_VALIDITY: Duration = Duration::from_secs(366 * 24 * 60 * 60);

/// After a failed rotation, try again this soon (or sooner, if the interval is shorter).
const ROTATION_RETRY: Duration = Duration::from_secs(60);

/// Rotations never follow each other faster than this, whatever the configured interval.
const MIN_ROTATION_INTERVAL: Duration = Duration::from_secs(1);

/// ALPN protocols the cluster listener offers, in order of preference.
pub const SERVER_ALPN: [&[u8]; 2] = [b"h2", b"http/1.1"];

/// The cluster client speaks HTTP/1.1: the workspace builds reqwest without its `http2` feature.
pub const CLIENT_ALPN: [&[u8]; 1] = [b"http/1.1"];

/// Settings for a node whose certificates come from the CA derived from the cluster secret.
///
/// Changing the secret without downtime, one node at a time: (1) every node gets
/// `also_trusted_secret = NEW`; (2) every node swaps to `secret = NEW, also_trusted_secret = OLD`;
/// (3) every node drops `also_trusted_secret`. Any two nodes trust each other at every step.
#[derive(Clone)]
pub struct DerivedCaSettings {
    /// This node's id; its certificate also names `node-<id>.cluster.tandem`.
    pub node_id: u64,
    /// The cluster secret, the same on every node (at least 16 characters).
    pub secret: String,
    /// A second secret whose CA is also trusted (not used to sign): the previous one while nodes
    /// move to a new secret one at a time, or the next one before they do.
    pub also_trusted_secret: Option<String>,
    /// Validity of each node certificate; [`ClusterTls::spawn_rotation`] re-issues at half of it.
    pub validity: Duration,
}

impl DerivedCaSettings {
    /// Settings with the default validity and no second secret.
    pub fn new(node_id: u64, secret: impl Into<String>) -> Self {
        Self {
            node_id,
            secret: secret.into(),
            also_trusted_secret: None,
            validity: DEFAULT_NODE_CERT_VALIDITY,
        }
    }
}

impl std::fmt::Debug for DerivedCaSettings {
    // Never print secrets.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DerivedCaSettings")
            .field("node_id", &self.node_id)
            .field("also_trusted_secret", &self.also_trusted_secret.is_some())
            .field("validity", &self.validity)
            .finish_non_exhaustive()
    }
}

/// Mutual TLS for the cluster channel: this node's certificate (hot-swapped by
/// [`ClusterTls::rotate`]), the trust anchors peers must chain to, and the server and client
/// configurations built on both. Cheap to clone; clones share everything.
#[derive(Debug, Clone)]
pub struct ClusterTls {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    identity: IdentitySource,
    node_cert: Arc<NodeCertResolver>,
    anchors: Arc<TrustAnchors>,
    provider: Arc<CryptoProvider>,
    server_config: Arc<ServerConfig>,
    client_config: ClientConfig,
}

#[derive(Debug)]
enum IdentitySource {
    Derived {
        // Boxed: the CA (with its certificate) is much larger than the file source.
        ca: Box<DerivedCa>,
        node_id: u64,
        validity: Duration,
    },
    Files(ClusterPemFiles),
}

impl ClusterTls {
    /// Derives the cluster CA from the secret(s) and issues this node's first certificate.
    pub fn from_secret(settings: DerivedCaSettings) -> Result<Self, TlsError> {
        if !(MIN_NODE_CERT_VALIDITY..=MAX_NODE_CERT_VALIDITY).contains(&settings.validity) {
            return Err(TlsError::ValidityOutOfRange {
                validity: settings.validity,
                min: MIN_NODE_CERT_VALIDITY,
                max: MAX_NODE_CERT_VALIDITY,
            });
        }
        let provider = aws_lc_provider();
        let ca = DerivedCa::from_secret(&settings.secret)?;
        let mut roots = RootCertStore::empty();
        add_derived_anchor(&mut roots, &ca)?;
        if let Some(other) = &settings.also_trusted_secret {
            let other_ca = DerivedCa::from_secret(other).map_err(|e| match e {
                TlsError::SecretTooShort { len, min, .. } => TlsError::SecretTooShort {
                    which: "the also-trusted (previous or next) cluster secret",
                    len,
                    min,
                },
                other => other,
            })?;
            add_derived_anchor(&mut roots, &other_ca)?;
        }
        let node_cert = issue_node_certificate(
            &ca,
            settings.node_id,
            settings.validity,
            SystemTime::now(),
            &provider,
        )?;
        let identity = IdentitySource::Derived {
            ca: Box::new(ca),
            node_id: settings.node_id,
            validity: settings.validity,
        };
        Self::assemble(identity, node_cert, roots, provider)
    }

    /// Uses the operator's own CA and node certificate from PEM files.
    pub fn from_pem_files(files: ClusterPemFiles) -> Result<Self, TlsError> {
        let provider = aws_lc_provider();
        let roots = files.load_trust_anchors()?;
        let node_cert = files.load_node_certificate(&provider)?;
        Self::assemble(IdentitySource::Files(files), node_cert, roots, provider)
    }

    fn assemble(
        identity: IdentitySource,
        node_cert: rustls::sign::CertifiedKey,
        roots: RootCertStore,
        provider: Arc<CryptoProvider>,
    ) -> Result<Self, TlsError> {
        let node_cert = Arc::new(NodeCertResolver::new(node_cert));
        let anchors = Arc::new(TrustAnchors::new(roots, provider.clone())?);
        let server_config = server_config(&provider, &node_cert, &anchors)?;
        let client_config = client_config(&provider, &node_cert, &anchors)?;
        Ok(Self {
            inner: Arc::new(Inner {
                identity,
                node_cert,
                anchors,
                provider,
                server_config: Arc::new(server_config),
                client_config,
            }),
        })
    }

    /// Re-issues this node's certificate (derived CA) or re-reads the three files (own CA), and
    /// swaps the result in: handshakes that start afterwards use it, open connections carry on.
    /// On error nothing changes.
    pub fn rotate(&self) -> Result<(), TlsError> {
        let inner = &self.inner;
        match &inner.identity {
            IdentitySource::Derived {
                ca,
                node_id,
                validity,
            } => {
                let next = issue_node_certificate(
                    ca,
                    *node_id,
                    *validity,
                    SystemTime::now(),
                    &inner.provider,
                )?;
                inner.node_cert.replace(next);
            }
            IdentitySource::Files(files) => {
                let roots = files.load_trust_anchors()?;
                let next = files.load_node_certificate(&inner.provider)?;
                inner.anchors.replace(roots)?;
                inner.node_cert.replace(next);
            }
        }
        Ok(())
    }

    /// How long after a rotation the next one is due: half the validity of a derived
    /// certificate, or the files' reload interval.
    pub fn rotation_interval(&self) -> Duration {
        match &self.inner.identity {
            IdentitySource::Derived { validity, .. } => *validity / 2,
            IdentitySource::Files(files) => files.reload_interval,
        }
    }

    /// Spawns a task that calls [`ClusterTls::rotate`] every [`ClusterTls::rotation_interval`]
    /// (sooner after a failure, keeping the current certificate meanwhile). Abort the returned
    /// handle to stop it. Must be called inside a Tokio runtime.
    pub fn spawn_rotation(&self) -> tokio::task::JoinHandle<()> {
        let tls = self.clone();
        tokio::spawn(async move {
            let interval = tls.rotation_interval().max(MIN_ROTATION_INTERVAL);
            let mut delay = interval;
            loop {
                tokio::time::sleep(delay).await;
                delay = match tls.rotate() {
                    Ok(()) => {
                        tracing::info!("cluster TLS: node certificate rotated");
                        interval
                    }
                    Err(error) => {
                        let retry = interval.min(ROTATION_RETRY);
                        tracing::warn!(
                            %error,
                            "cluster TLS: rotation failed; keeping the current certificate, \
                             retrying in {retry:?}"
                        );
                        retry
                    }
                };
            }
        })
    }

    /// The certificate this node presents right now (end entity first, as sent on the wire).
    pub fn node_certificate_chain(&self) -> Vec<CertificateDer<'static>> {
        self.inner.node_cert.current().cert.clone()
    }

    /// Server side: TLS 1.3 only, a client certificate chaining to a trust anchor required,
    /// ALPN [`SERVER_ALPN`].
    pub fn server_config(&self) -> Arc<ServerConfig> {
        self.inner.server_config.clone()
    }

    /// A `tokio-rustls` acceptor over [`ClusterTls::server_config`], for [`crate::TlsListener`].
    pub fn acceptor(&self) -> tokio_rustls::TlsAcceptor {
        tokio_rustls::TlsAcceptor::from(self.server_config())
    }

    /// Client side: TLS 1.3 only, presents this node's certificate, verifies the server against
    /// the trust anchors under the name [`crate::CLUSTER_SERVER_NAME`] whatever address is
    /// dialled, ALPN [`CLIENT_ALPN`]. Rotation is picked up without rebuilding it.
    pub fn client_config(&self) -> ClientConfig {
        self.inner.client_config.clone()
    }
}

/// The one crypto provider of the whole graph, passed explicitly rather than installed globally.
pub(crate) fn aws_lc_provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

fn add_derived_anchor(roots: &mut RootCertStore, ca: &DerivedCa) -> Result<(), TlsError> {
    roots.add(ca.certificate().clone()).map_err(|e| {
        TlsError::DeriveCa(format!("the derived CA is not a usable trust anchor: {e}"))
    })
}

// Resumed sessions skip certificate checks; without them every connection is verified against
// the current anchors, so a rotation (or a retired secret) takes effect on the next connection.
fn server_config(
    provider: &Arc<CryptoProvider>,
    node_cert: &Arc<NodeCertResolver>,
    anchors: &Arc<TrustAnchors>,
) -> Result<ServerConfig, TlsError> {
    let mut config = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| TlsError::Config(format!("server protocol versions: {e}")))?
        .with_client_cert_verifier(Arc::new(ClusterClientVerifier(anchors.clone())))
        .with_cert_resolver(node_cert.clone());
    config.alpn_protocols = SERVER_ALPN.iter().map(|p| p.to_vec()).collect();
    config.session_storage = Arc::new(NoServerSessionStorage {});
    config.send_tls13_tickets = 0;
    Ok(config)
}

fn client_config(
    provider: &Arc<CryptoProvider>,
    node_cert: &Arc<NodeCertResolver>,
    anchors: &Arc<TrustAnchors>,
) -> Result<ClientConfig, TlsError> {
    let mut config = ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| TlsError::Config(format!("client protocol versions: {e}")))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(ClusterServerVerifier::new(anchors.clone())))
        .with_client_cert_resolver(node_cert.clone());
    config.alpn_protocols = CLIENT_ALPN.iter().map(|p| p.to_vec()).collect();
    config.resumption = Resumption::disabled();
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "unit-test-secret-raft-0123456789";

    #[test]
    fn rotation_issues_a_new_certificate() {
        let tls = ClusterTls::from_secret(DerivedCaSettings::new(1, SECRET)).expect("tls");
        let before = tls.node_certificate_chain();
        tls.rotate().expect("rotate");
        assert_ne!(before, tls.node_certificate_chain());
    }

    #[test]
    fn rotation_interval_is_half_the_validity() {
        let mut settings = DerivedCaSettings::new(1, SECRET);
        settings.validity = Duration::from_secs(600);
        let tls = ClusterTls::from_secret(settings).expect("tls");
        assert_eq!(tls.rotation_interval(), Duration::from_secs(300));
    }

    #[test]
    fn validity_out_of_range_is_refused() {
        for validity in [Duration::from_secs(1), Duration::from_secs(u64::MAX)] {
            let mut settings = DerivedCaSettings::new(1, SECRET);
            settings.validity = validity;
            let err = ClusterTls::from_secret(settings).expect_err("must refuse");
            assert!(matches!(err, TlsError::ValidityOutOfRange { .. }), "{err}");
        }
    }

    #[test]
    fn short_second_secret_is_named() {
        let mut settings = DerivedCaSettings::new(1, SECRET);
        settings.also_trusted_secret = Some("short".into());
        let err = ClusterTls::from_secret(settings).expect_err("must refuse");
        assert!(err.to_string().contains("also-trusted"), "{err}");
    }

    #[test]
    fn debug_output_hides_secrets() {
        let mut settings = DerivedCaSettings::new(1, SECRET);
        settings.also_trusted_secret = Some("another-secret-0123456789".into());
        let printed = format!("{settings:?}");
        assert!(!printed.contains(SECRET), "{printed}");
        assert!(!printed.contains("another-secret"), "{printed}");
    }
}
