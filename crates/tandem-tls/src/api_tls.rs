//! TLS on the client API. Either every server issues itself a certificate for its API names
//! from a CA derived from the cluster secret (`api_tls = "auto"`; clients trust that CA, which
//! any server hands out), or the operator gives a certificate and key in PEM files, which are
//! read again when they change, so a renewed certificate needs no restart.
//!
//! The API speaks TLS 1.3 and 1.2 (HTTP clients of every kind connect to it), asks for no client
//! certificate, and offers HTTP/2 before HTTP/1.1.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use rustls::crypto::CryptoProvider;
use rustls::sign::CertifiedKey;
use rustls::ServerConfig;

use crate::cluster_tls::{aws_lc_provider, SERVER_ALPN};
use crate::derived_ca::{CaPurpose, DerivedCa};
use crate::node_cert::{issue_leaf, NodeCertResolver};
use crate::pem_files::load_certified_key;
use crate::TlsError;

/// How long an API certificate issued from the derived CA is valid; it is issued again at half
/// of that.
pub const API_CERT_VALIDITY: Duration = Duration::from_secs(30 * 24 * 60 * 60);

/// How often certificate files are checked for a change.
pub const API_CERT_FILES_CHECK: Duration = Duration::from_secs(2);

/// The client API's certificate and the server configuration built on it. Cheap to clone.
#[derive(Clone, Debug)]
pub struct ApiTls {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    source: Source,
    resolver: Arc<NodeCertResolver>,
    server_config: Arc<ServerConfig>,
    provider: Arc<CryptoProvider>,
}

#[derive(Debug)]
enum Source {
    Derived {
        ca: Box<DerivedCa>,
        names: Vec<String>,
        issued: Mutex<SystemTime>,
    },
    Files {
        certificate_chain: PathBuf,
        private_key: PathBuf,
        /// The files' modification times and sizes when last read.
        seen: Mutex<Option<FilesStamp>>,
    },
}

type FilesStamp = [(Option<SystemTime>, u64); 2];

fn stamp(paths: [&PathBuf; 2]) -> FilesStamp {
    paths.map(|path| {
        std::fs::metadata(path).map_or((None, 0), |meta| (meta.modified().ok(), meta.len()))
    })
}

impl ApiTls {
    /// Derives the API CA from the cluster secret and issues a certificate for `names` (host
    /// names and IP addresses clients dial).
    pub fn from_secret(secret: &str, names: Vec<String>) -> Result<Self, TlsError> {
        let provider = aws_lc_provider();
        let ca = DerivedCa::derive(secret, CaPurpose::Api)?;
        let now = SystemTime::now();
        let first = issue(&ca, &names, now, &provider)?;
        let source = Source::Derived {
            ca: Box::new(ca),
            names,
            issued: Mutex::new(now),
        };
        Self::with(source, first, provider)
    }

    /// The certificate chain and key in these PEM files.
    pub fn from_files(
        certificate_chain: impl Into<PathBuf>,
        private_key: impl Into<PathBuf>,
    ) -> Result<Self, TlsError> {
        let provider = aws_lc_provider();
        let (certificate_chain, private_key) = (certificate_chain.into(), private_key.into());
        let seen = stamp([&certificate_chain, &private_key]);
        let first = load_certified_key(&certificate_chain, &private_key, &provider)?;
        let source = Source::Files {
            certificate_chain,
            private_key,
            seen: Mutex::new(Some(seen)),
        };
        Self::with(source, first, provider)
    }

    fn with(
        source: Source,
        first: CertifiedKey,
        provider: Arc<CryptoProvider>,
    ) -> Result<Self, TlsError> {
        let resolver = Arc::new(NodeCertResolver::new(first));
        let mut config = ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .map_err(|e| TlsError::Config(format!("API TLS versions: {e}")))?
            .with_no_client_auth()
            .with_cert_resolver(resolver.clone());
        config.alpn_protocols = SERVER_ALPN.iter().map(|p| p.to_vec()).collect();
        Ok(Self {
            inner: Arc::new(Inner {
                source,
                resolver,
                server_config: Arc::new(config),
                provider,
            }),
        })
    }

    /// A `tokio-rustls` acceptor for [`crate::TlsListener`]; certificate changes reach it.
    pub fn acceptor(&self) -> tokio_rustls::TlsAcceptor {
        tokio_rustls::TlsAcceptor::from(self.inner.server_config.clone())
    }

    /// The CA certificate (PEM) clients trust, when the certificate is issued from the derived
    /// API CA; `None` when it comes from files (its CA is the operator's).
    pub fn ca_pem(&self) -> Option<&str> {
        match &self.inner.source {
            Source::Derived { ca, .. } => Some(ca.certificate_pem()),
            Source::Files { .. } => None,
        }
    }

    /// Issues a new certificate when half of the current one's validity has passed, or reads
    /// the files again when they changed. True when the certificate was replaced. On an error
    /// the current certificate stays in use.
    pub fn refresh(&self) -> Result<bool, TlsError> {
        let inner = &self.inner;
        match &inner.source {
            Source::Derived { ca, names, issued } => {
                let now = SystemTime::now();
                let mut issued = issued.lock().unwrap_or_else(|e| e.into_inner());
                let age = now.duration_since(*issued).unwrap_or_default();
                if age < API_CERT_VALIDITY / 2 {
                    return Ok(false);
                }
                inner
                    .resolver
                    .replace(issue(ca, names, now, &inner.provider)?);
                *issued = now;
                Ok(true)
            }
            Source::Files {
                certificate_chain,
                private_key,
                seen,
            } => {
                let now = stamp([certificate_chain, private_key]);
                let mut seen = seen.lock().unwrap_or_else(|e| e.into_inner());
                if seen.as_ref() == Some(&now) {
                    return Ok(false);
                }
                // Marked as seen before reading: a bad file is reported once, not every check.
                *seen = Some(now);
                let next = load_certified_key(certificate_chain, private_key, &inner.provider)?;
                inner.resolver.replace(next);
                Ok(true)
            }
        }
    }

    /// Calls [`ApiTls::refresh`] every `every` until the task is aborted, logging what it does.
    pub fn spawn_refresh(&self, every: Duration) -> tokio::task::JoinHandle<()> {
        let tls = self.clone();
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(every);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            ticks.tick().await;
            loop {
                ticks.tick().await;
                match tls.refresh() {
                    Ok(true) => tracing::info!("API TLS: certificate replaced"),
                    Ok(false) => {}
                    Err(error) => tracing::error!(
                        %error,
                        "API TLS: the new certificate cannot be used; the current one stays in use"
                    ),
                }
            }
        })
    }
}

/// A certificate for `names` from the API CA, valid for [`API_CERT_VALIDITY`].
fn issue(
    ca: &DerivedCa,
    names: &[String],
    now: SystemTime,
    provider: &CryptoProvider,
) -> Result<CertifiedKey, TlsError> {
    let common_name = names.first().map_or("tandem-api", String::as_str);
    issue_leaf(
        ca,
        names.to_vec(),
        common_name,
        API_CERT_VALIDITY,
        now,
        provider,
    )
}
