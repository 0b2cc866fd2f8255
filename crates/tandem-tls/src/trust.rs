//! Which peers a node accepts: certificates that chain to one of the trust anchors (the derived
//! CA of each configured secret, or the operator's CA file). Both verifiers read the anchors
//! through one swappable cell, so re-reading a CA file takes effect on the next handshake.

use std::sync::Arc;

use arc_swap::ArcSwap;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::WebPkiClientVerifier;
use rustls::{DigitallySignedStruct, DistinguishedName, RootCertStore, SignatureScheme};

use crate::{TlsError, CLUSTER_SERVER_NAME};

/// The verifiers built from one set of trust anchors.
#[derive(Debug)]
struct AnchorVerifiers {
    clients: Arc<dyn ClientCertVerifier>,
    servers: Arc<WebPkiServerVerifier>,
}

/// The current trust anchors, shared by the server and client sides of a node.
#[derive(Debug)]
pub(crate) struct TrustAnchors {
    current: ArcSwap<AnchorVerifiers>,
    provider: Arc<CryptoProvider>,
}

impl TrustAnchors {
    pub(crate) fn new(
        roots: RootCertStore,
        provider: Arc<CryptoProvider>,
    ) -> Result<Self, TlsError> {
        let verifiers = build_verifiers(roots, &provider)?;
        Ok(Self {
            current: ArcSwap::from_pointee(verifiers),
            provider,
        })
    }

    pub(crate) fn replace(&self, roots: RootCertStore) -> Result<(), TlsError> {
        let verifiers = build_verifiers(roots, &self.provider)?;
        self.current.store(Arc::new(verifiers));
        Ok(())
    }
}

fn build_verifiers(
    roots: RootCertStore,
    provider: &Arc<CryptoProvider>,
) -> Result<AnchorVerifiers, TlsError> {
    let roots = Arc::new(roots);
    // Client certificates are mandatory: the builder's default, stated here because it is the point.
    let clients = WebPkiClientVerifier::builder_with_provider(roots.clone(), provider.clone())
        .build()
        .map_err(|e| TlsError::Config(format!("client certificate verifier: {e}")))?;
    let servers = WebPkiServerVerifier::builder_with_provider(roots, provider.clone())
        .build()
        .map_err(|e| TlsError::Config(format!("server certificate verifier: {e}")))?;
    Ok(AnchorVerifiers { clients, servers })
}

/// Server side: requires a client certificate that chains to a trust anchor.
#[derive(Debug)]
pub(crate) struct ClusterClientVerifier(pub(crate) Arc<TrustAnchors>);

impl ClientCertVerifier for ClusterClientVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        true
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        // The anchors can change under us, so no borrowed hints; cluster clients hold exactly
        // one certificate and do not need them.
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.0
            .current
            .load()
            .clients
            .verify_client_cert(end_entity, intermediates, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0
            .current
            .load()
            .clients
            .verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0
            .current
            .load()
            .clients
            .verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.current.load().clients.supported_verify_schemes()
    }
}

/// Client side: checks the server's chain against the trust anchors and the fixed name
/// [`CLUSTER_SERVER_NAME`], whatever IP address or host name was dialled.
#[derive(Debug)]
pub(crate) struct ClusterServerVerifier {
    anchors: Arc<TrustAnchors>,
    cluster_name: ServerName<'static>,
}

impl ClusterServerVerifier {
    pub(crate) fn new(anchors: Arc<TrustAnchors>) -> Self {
        let cluster_name = ServerName::try_from(CLUSTER_SERVER_NAME)
            .expect("CLUSTER_SERVER_NAME is a valid DNS name");
        Self {
            anchors,
            cluster_name,
        }
    }
}

impl ServerCertVerifier for ClusterServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _dialled_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.anchors.current.load().servers.verify_server_cert(
            end_entity,
            intermediates,
            &self.cluster_name,
            ocsp_response,
            now,
        )
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.anchors
            .current
            .load()
            .servers
            .verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.anchors
            .current
            .load()
            .servers
            .verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.anchors
            .current
            .load()
            .servers
            .supported_verify_schemes()
    }
}
