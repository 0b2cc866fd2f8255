//! Mutual TLS between mesh agents: each presents the certificate the agent CA issued it at
//! enrolment, and accepts a peer only if the peer's certificate chains to that CA, is within its
//! validity, names an agent (`<name>.agents.tandem`) and that agent is not revoked.
//!
//! The dialer either names the agent it expects ([`agent_dns_name`] as the server name) or
//! accepts any valid agent ([`ANY_AGENT_SERVER_NAME`]) when it only knows an address, as with
//! `peers = [{address = "transit-a:4433"}]`; the name it learns is the one the certificate proves.
//!
//! The same identity signs what an agent tells the whole mesh (its route advertisements, which
//! other agents relay): [`AgentTls::sign`] with the agent's key, [`AgentTls::check_signed`] by
//! any agent, against the certificate carried beside the signature, which must pass the same
//! checks as a peer's in a handshake and name the agent that claims to have signed.

use std::fmt;
use std::sync::Arc;

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{EcdsaKeyPair, ECDSA_P256_SHA256_ASN1_SIGNING};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{Resumption, WebPkiServerVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{NoServerSessionStorage, WebPkiClientVerifier};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, DistinguishedName, RootCertStore,
    ServerConfig, SignatureScheme,
};

use crate::agent_dns_name;

/// The ALPN protocol of the mesh; a peer offering anything else fails the handshake.
pub const MESH_ALPN: &[u8] = b"tandem-mesh/1";

/// The server name a dialer gives when it accepts any valid agent: no agent certificate can
/// carry it, since every agent name sits *under* it.
pub const ANY_AGENT_SERVER_NAME: &str = "agents.tandem";

const AGENT_NAME_SUFFIX: &str = ".agents.tandem";

/// Says whether an agent has been revoked. Asked during every handshake, both sides, so it must
/// answer from memory (the runtime keeps the registry's revoked names current).
pub trait RevocationCheck: Send + Sync {
    fn is_revoked(&self, agent_name: &str) -> bool;
}

impl<F> RevocationCheck for F
where
    F: Fn(&str) -> bool + Send + Sync,
{
    fn is_revoked(&self, agent_name: &str) -> bool {
        self(agent_name)
    }
}

/// Why an agent's TLS identity could not be built from its credential.
#[derive(Debug, thiserror::Error)]
pub enum AgentTlsError {
    #[error("the agent CA certificate is not PEM ({0}); expected a '-----BEGIN CERTIFICATE-----' block from the credential")]
    CaNotPem(String),
    #[error("the agent CA certificate cannot be used as a trust anchor: {0}")]
    BadCa(rustls::Error),
    #[error("the agent certificate is not PEM ({0}); expected a '-----BEGIN CERTIFICATE-----' block from the credential")]
    CertificateNotPem(String),
    #[error("the agent certificate names no agent (no DNS name <name>{AGENT_NAME_SUFFIX}); it was not issued at enrolment")]
    NotAnAgentCertificate,
    #[error("the agent certificate of {name:?} is not valid under the agent CA ({source}); if it expired or the cluster secret changed, enrol the agent again")]
    CertificateRefused {
        name: String,
        #[source]
        source: rustls::Error,
    },
    #[error("the agent's private key cannot be used with its certificate ({0}); the credential file is damaged, enrol the agent again")]
    UnusableKey(rustls::Error),
    #[error("building the mesh TLS configuration failed: {0}")]
    Config(String),
    #[error("the agent's private key is not a P-256 key in PKCS#8 ({0}); the credential file is damaged, enrol the agent again")]
    SigningKey(String),
}

/// Signing failed: the system's random number generator did not answer.
#[derive(Debug, thiserror::Error)]
#[error("signing failed: the system's random number generator did not answer")]
pub struct SigningFailed;

/// Why a statement signed by an agent was refused.
#[derive(Debug, thiserror::Error)]
pub enum SignedStatementError {
    #[error("the signer's certificate is not an agent certificate: {0}")]
    NotAnAgentCertificate(String),
    #[error("the statement claims to come from {claimed:?}, but the certificate carried with it names {certified:?}")]
    WrongSigner { claimed: String, certified: String },
    #[error("the signer's certificate is refused ({0})")]
    CertificateRefused(rustls::Error),
    #[error("the signature does not match the statement and the certificate")]
    BadSignature,
}

/// An agent's TLS identity on the mesh: the rustls server and client configurations built from
/// its credential. Cheap to clone.
#[derive(Clone)]
pub struct AgentTls {
    name: String,
    server: Arc<ServerConfig>,
    client: Arc<ClientConfig>,
    certificate: CertificateDer<'static>,
    signing_key: Arc<EcdsaKeyPair>,
    verifier: Arc<AgentVerifier>,
    provider: Arc<CryptoProvider>,
}

impl fmt::Debug for AgentTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AgentTls")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl AgentTls {
    /// Builds both configurations from an enrolment credential: the agent's certificate (PEM,
    /// first certificate is the agent's), its private key (PKCS#8 DER) and the agent CA (PEM).
    /// Refuses a certificate that is not a valid agent certificate of that CA right now.
    pub fn new(
        certificate_pem: &str,
        private_key_pkcs8_der: &[u8],
        ca_certificate_pem: &str,
        revoked: Arc<dyn RevocationCheck>,
    ) -> Result<Self, AgentTlsError> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let roots = Arc::new(load_roots(ca_certificate_pem)?);
        let chain = CertificateDer::pem_slice_iter(certificate_pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| AgentTlsError::CertificateNotPem(e.to_string()))?;
        if chain.is_empty() {
            return Err(AgentTlsError::CertificateNotPem(
                "no certificate found".into(),
            ));
        }
        let name = peer_agent_name(&chain).ok_or(AgentTlsError::NotAnAgentCertificate)?;
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(private_key_pkcs8_der.to_vec()));
        let signing_key =
            EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, private_key_pkcs8_der)
                .map_err(|e| AgentTlsError::SigningKey(e.to_string()))?;

        let verifier = Arc::new(AgentVerifier::new(roots, provider.clone(), revoked)?);
        verifier
            .verify_chain(&chain[0], &chain[1..], UnixTime::now(), None)
            .map_err(|source| AgentTlsError::CertificateRefused {
                name: name.clone(),
                source,
            })?;

        let server = server_config(&provider, verifier.clone(), chain.clone(), key.clone_key())?;
        let client = client_config(&provider, verifier.clone(), chain.clone(), key)?;
        Ok(Self {
            name,
            server: Arc::new(server),
            client: Arc::new(client),
            certificate: chain[0].clone(),
            signing_key: Arc::new(signing_key),
            verifier,
            provider,
        })
    }

    /// This agent's name, as its certificate states it.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// For the listening side: requires a client certificate of an unrevoked agent.
    pub fn server_config(&self) -> Arc<ServerConfig> {
        self.server.clone()
    }

    /// For the dialing side: give [`agent_dns_name`] of the expected peer as the server name, or
    /// [`ANY_AGENT_SERVER_NAME`] to accept any unrevoked agent.
    pub fn client_config(&self) -> Arc<ClientConfig> {
        self.client.clone()
    }

    /// This agent's certificate (DER), to carry beside what it signs.
    pub fn certificate(&self) -> &CertificateDer<'static> {
        &self.certificate
    }

    /// Signs `statement` with this agent's key: ECDSA P-256 with SHA-256, ASN.1 DER encoded.
    /// Fails only when the system's random number generator does.
    pub fn sign(&self, statement: &[u8]) -> Result<Vec<u8>, SigningFailed> {
        self.signing_key
            .sign(&SystemRandom::new(), statement)
            .map(|signature| signature.as_ref().to_vec())
            .map_err(|_| SigningFailed)
    }

    /// Checks that agent `signer` signed `statement`: `certificate` (DER) must be a valid,
    /// unrevoked agent certificate of this cluster naming `signer`, and `signature` must be its
    /// key's signature of `statement`, as [`AgentTls::sign`] makes it.
    pub fn check_signed(
        &self,
        signer: &str,
        certificate: &[u8],
        statement: &[u8],
        signature: &[u8],
    ) -> Result<(), SignedStatementError> {
        let certificate = CertificateDer::from(certificate);
        let certified = peer_agent_name(std::slice::from_ref(&certificate)).ok_or_else(|| {
            SignedStatementError::NotAnAgentCertificate("it names no agent".into())
        })?;
        if certified != signer {
            return Err(SignedStatementError::WrongSigner {
                claimed: signer.to_owned(),
                certified,
            });
        }
        self.verifier
            .verify_chain(&certificate, &[], UnixTime::now(), None)
            .map_err(SignedStatementError::CertificateRefused)?;
        let leaf = webpki::EndEntityCert::try_from(&certificate)
            .map_err(|e| SignedStatementError::NotAnAgentCertificate(e.to_string()))?;
        let algorithms = self
            .provider
            .signature_verification_algorithms
            .mapping
            .iter()
            .filter(|(scheme, _)| *scheme == SignatureScheme::ECDSA_NISTP256_SHA256)
            .flat_map(|(_, algorithms)| algorithms.iter());
        for algorithm in algorithms {
            if leaf
                .verify_signature(*algorithm, statement, signature)
                .is_ok()
            {
                return Ok(());
            }
        }
        Err(SignedStatementError::BadSignature)
    }
}

/// The agent a certificate chain (leaf first) was issued to, from its `<name>.agents.tandem`
/// DNS name. Only meaningful for a chain the handshake verified.
pub fn peer_agent_name(certs: &[CertificateDer<'_>]) -> Option<String> {
    let leaf = webpki::EndEntityCert::try_from(certs.first()?).ok()?;
    let found = leaf
        .valid_dns_names()
        .filter_map(agent_name_of_dns_name)
        .next();
    found
}

fn agent_name_of_dns_name(dns_name: &str) -> Option<String> {
    let name = dns_name.strip_suffix(AGENT_NAME_SUFFIX)?;
    (!name.is_empty() && !name.starts_with('*')).then(|| name.to_owned())
}

fn load_roots(ca_certificate_pem: &str) -> Result<RootCertStore, AgentTlsError> {
    let cas = CertificateDer::pem_slice_iter(ca_certificate_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| AgentTlsError::CaNotPem(e.to_string()))?;
    if cas.is_empty() {
        return Err(AgentTlsError::CaNotPem("no certificate found".into()));
    }
    let mut roots = RootCertStore::empty();
    for ca in cas {
        roots.add(ca).map_err(AgentTlsError::BadCa)?;
    }
    Ok(roots)
}

// Resumed sessions skip certificate checks, and so would skip the revocation check: every
// connection does a full handshake.
fn server_config(
    provider: &Arc<CryptoProvider>,
    verifier: Arc<AgentVerifier>,
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<ServerConfig, AgentTlsError> {
    let mut config = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| AgentTlsError::Config(format!("server protocol versions: {e}")))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .map_err(AgentTlsError::UnusableKey)?;
    config.alpn_protocols = vec![MESH_ALPN.to_vec()];
    config.session_storage = Arc::new(NoServerSessionStorage {});
    config.send_tls13_tickets = 0;
    Ok(config)
}

fn client_config(
    provider: &Arc<CryptoProvider>,
    verifier: Arc<AgentVerifier>,
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<ClientConfig, AgentTlsError> {
    let mut config = ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| AgentTlsError::Config(format!("client protocol versions: {e}")))?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_client_auth_cert(chain, key)
        .map_err(AgentTlsError::UnusableKey)?;
    config.alpn_protocols = vec![MESH_ALPN.to_vec()];
    config.resumption = Resumption::disabled();
    Ok(config)
}

/// Verifies peers on both sides of a handshake: the chain against the agent CA (webpki: time,
/// signature, key usage), then the agent name against the revocation check.
struct AgentVerifier {
    clients: Arc<dyn ClientCertVerifier>,
    servers: Arc<WebPkiServerVerifier>,
    revoked: Arc<dyn RevocationCheck>,
}

impl fmt::Debug for AgentVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AgentVerifier").finish_non_exhaustive()
    }
}

impl AgentVerifier {
    fn new(
        roots: Arc<RootCertStore>,
        provider: Arc<CryptoProvider>,
        revoked: Arc<dyn RevocationCheck>,
    ) -> Result<Self, AgentTlsError> {
        // Client certificates are mandatory: the builder's default, stated because it is the point.
        let clients = WebPkiClientVerifier::builder_with_provider(roots.clone(), provider.clone())
            .build()
            .map_err(|e| AgentTlsError::Config(format!("client certificate verifier: {e}")))?;
        let servers = WebPkiServerVerifier::builder_with_provider(roots, provider)
            .build()
            .map_err(|e| AgentTlsError::Config(format!("server certificate verifier: {e}")))?;
        Ok(Self {
            clients,
            servers,
            revoked,
        })
    }

    /// Checks a peer's chain as a server certificate valid for `expected` (an agent's DNS name),
    /// or for the agent name it carries when `expected` is `None`, and then revocation.
    fn verify_chain(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
        expected: Option<&ServerName<'_>>,
    ) -> Result<(), rustls::Error> {
        let name = peer_agent_name(std::slice::from_ref(end_entity))
            .ok_or_else(|| not_an_agent("the certificate names no agent"))?;
        let own_name;
        let server_name = match expected {
            Some(expected) => expected,
            None => {
                own_name = ServerName::try_from(agent_dns_name(&name))
                    .map_err(|_| not_an_agent("the agent name is not a DNS name"))?;
                &own_name
            }
        };
        self.servers
            .verify_server_cert(end_entity, intermediates, server_name, &[], now)?;
        self.check_revoked(&name)
    }

    fn check_revoked(&self, name: &str) -> Result<(), rustls::Error> {
        if self.revoked.is_revoked(name) {
            return Err(rustls::Error::InvalidCertificate(CertificateError::Revoked));
        }
        Ok(())
    }
}

fn not_an_agent(why: &str) -> rustls::Error {
    rustls::Error::InvalidCertificate(CertificateError::Other(rustls::OtherError(Arc::new(
        NotAnAgent(why.to_owned()),
    ))))
}

#[derive(Debug, thiserror::Error)]
#[error("not an agent certificate: {0}")]
struct NotAnAgent(String);

impl ServerCertVerifier for AgentVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        dialled_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let any_agent = matches!(dialled_name, ServerName::DnsName(dns) if dns.as_ref() == ANY_AGENT_SERVER_NAME);
        let expected = (!any_agent).then_some(dialled_name);
        self.verify_chain(end_entity, intermediates, now, expected)?;
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.servers.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.servers.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.servers.supported_verify_schemes()
    }
}

impl ClientCertVerifier for AgentVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        true
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.clients.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.clients
            .verify_client_cert(end_entity, intermediates, now)?;
        let name = peer_agent_name(std::slice::from_ref(end_entity))
            .ok_or_else(|| not_an_agent("the certificate names no agent"))?;
        self.check_revoked(&name)?;
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.clients.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.clients.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.clients.supported_verify_schemes()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::time::{Duration, SystemTime};

    use rcgen::{KeyPair, PKCS_ECDSA_P256_SHA256};
    use rustls::{ClientConnection, ServerConnection};

    use super::*;
    use crate::AgentCa;

    const SECRET: &str = "agent-tls-unit-test-secret-0123";
    const OTHER_SECRET: &str = "another-cluster-secret-98765432";

    fn no_revocations() -> Arc<dyn RevocationCheck> {
        Arc::new(|_: &str| false)
    }

    fn revoking(names: &[&str]) -> Arc<dyn RevocationCheck> {
        let names: BTreeSet<String> = names.iter().map(|n| n.to_string()).collect();
        Arc::new(move |name: &str| names.contains(name))
    }

    /// An agent credential: certificate, PKCS#8 key, CA certificate.
    fn credential(ca: &AgentCa, name: &str, issued_at: SystemTime) -> (String, Vec<u8>, String) {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).expect("key");
        let point = key.public_key_raw();
        let pem = ca
            .issue(name, "pool", &point[1..33], &point[33..65], issued_at)
            .expect("issue");
        (pem, key.serialize_der(), ca.certificate_pem())
    }

    fn agent(ca: &AgentCa, name: &str, revoked: Arc<dyn RevocationCheck>) -> AgentTls {
        let (cert, key, ca_pem) = credential(ca, name, SystemTime::now());
        AgentTls::new(&cert, &key, &ca_pem, revoked).expect("agent tls")
    }

    /// Runs a TLS handshake in memory; returns the name each side learnt of the other, or the
    /// first error either side met.
    fn handshake(
        client: &AgentTls,
        server: &AgentTls,
        server_name: &str,
    ) -> Result<(String, String), rustls::Error> {
        let name = ServerName::try_from(server_name.to_owned()).expect("server name");
        let mut c = ClientConnection::new(client.client_config(), name)?;
        let mut s = ServerConnection::new(server.server_config())?;
        for _ in 0..20 {
            let mut buf = Vec::new();
            while c.wants_write() {
                c.write_tls(&mut buf).expect("client write");
            }
            if !buf.is_empty() {
                s.read_tls(&mut buf.as_slice()).expect("server read");
                s.process_new_packets()?;
            }
            let mut buf = Vec::new();
            while s.wants_write() {
                s.write_tls(&mut buf).expect("server write");
            }
            if !buf.is_empty() {
                c.read_tls(&mut buf.as_slice()).expect("client read");
                c.process_new_packets()?;
            }
            if !c.is_handshaking() && !s.is_handshaking() {
                let of = |certs: Option<&[CertificateDer<'_>]>| {
                    certs.and_then(peer_agent_name).expect("peer name")
                };
                assert_eq!(c.alpn_protocol(), Some(MESH_ALPN));
                return Ok((of(c.peer_certificates()), of(s.peer_certificates())));
            }
        }
        panic!("the handshake did not finish");
    }

    #[test]
    fn two_agents_of_one_ca_learn_each_others_names() {
        let ca = AgentCa::from_secret(SECRET).expect("ca");
        let a = agent(&ca, "ingress-1", no_revocations());
        let b = agent(&ca, "exit.eu_2", no_revocations());
        assert_eq!(a.name(), "ingress-1");
        let (seen_by_a, seen_by_b) =
            handshake(&a, &b, &agent_dns_name("exit.eu_2")).expect("named peer");
        assert_eq!(
            (seen_by_a.as_str(), seen_by_b.as_str()),
            ("exit.eu_2", "ingress-1")
        );
        let (seen_by_a, _) = handshake(&a, &b, ANY_AGENT_SERVER_NAME).expect("any agent");
        assert_eq!(seen_by_a, "exit.eu_2");
    }

    #[test]
    fn a_peer_other_than_the_named_one_is_refused() {
        let ca = AgentCa::from_secret(SECRET).expect("ca");
        let a = agent(&ca, "a", no_revocations());
        let b = agent(&ca, "b", no_revocations());
        let err = handshake(&a, &b, &agent_dns_name("c")).expect_err("wrong name");
        assert!(matches!(err, rustls::Error::InvalidCertificate(_)), "{err}");
    }

    #[test]
    fn an_agent_of_another_ca_is_refused_both_ways() {
        let ours = AgentCa::from_secret(SECRET).expect("ca");
        let theirs = AgentCa::from_secret(OTHER_SECRET).expect("other ca");
        let a = agent(&ours, "a", no_revocations());
        let stranger = agent(&theirs, "a-stranger", no_revocations());
        for (client, server) in [(&a, &stranger), (&stranger, &a)] {
            let err = handshake(client, server, ANY_AGENT_SERVER_NAME).expect_err("refused");
            assert!(
                matches!(
                    err,
                    rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer)
                ),
                "{err}"
            );
        }
    }

    #[test]
    fn a_revoked_agent_is_refused_both_ways() {
        let ca = AgentCa::from_secret(SECRET).expect("ca");
        let a = agent(&ca, "a", revoking(&["gone"]));
        let gone = agent(&ca, "gone", no_revocations());
        for (client, server) in [(&a, &gone), (&gone, &a)] {
            let err = handshake(client, server, ANY_AGENT_SERVER_NAME).expect_err("refused");
            assert!(
                matches!(
                    err,
                    rustls::Error::InvalidCertificate(CertificateError::Revoked)
                ),
                "{err}"
            );
        }
        // The same agent, asked by name, is refused too.
        let err = handshake(&a, &gone, &agent_dns_name("gone")).expect_err("refused");
        assert!(matches!(
            err,
            rustls::Error::InvalidCertificate(CertificateError::Revoked)
        ));
    }

    #[test]
    fn an_expired_certificate_is_refused_and_cannot_be_loaded() {
        let ca = AgentCa::from_secret(SECRET).expect("ca");
        let long_ago = SystemTime::now() - Duration::from_secs(2 * 365 * 24 * 3600);
        let (cert, key, ca_pem) = credential(&ca, "old", long_ago);
        let err = AgentTls::new(&cert, &key, &ca_pem, no_revocations()).expect_err("expired");
        assert!(
            matches!(err, AgentTlsError::CertificateRefused { .. }),
            "{err}"
        );
        assert!(err.to_string().contains("enrol the agent again"), "{err}");
    }

    #[test]
    fn a_credential_of_mismatched_parts_is_refused() {
        let ours = AgentCa::from_secret(SECRET).expect("ca");
        let theirs = AgentCa::from_secret(OTHER_SECRET).expect("other ca");
        let (cert, key, _) = credential(&ours, "a", SystemTime::now());
        let err = AgentTls::new(&cert, &key, &theirs.certificate_pem(), no_revocations())
            .expect_err("other CA");
        assert!(
            matches!(err, AgentTlsError::CertificateRefused { .. }),
            "{err}"
        );
        let (_, other_key, _) = credential(&ours, "b", SystemTime::now());
        let err = AgentTls::new(&cert, &other_key, &ours.certificate_pem(), no_revocations())
            .expect_err("other key");
        assert!(matches!(err, AgentTlsError::UnusableKey(_)), "{err}");
        let err = AgentTls::new("garbage", &key, &ours.certificate_pem(), no_revocations())
            .expect_err("garbage");
        assert!(matches!(err, AgentTlsError::CertificateNotPem(_)), "{err}");
    }

    #[test]
    fn a_signed_statement_checks_only_with_its_signer_and_its_words() {
        let ca = AgentCa::from_secret(SECRET).expect("ca");
        let exit = agent(&ca, "exit-a", no_revocations());
        let ingress = agent(&ca, "ingress", revoking(&["gone"]));
        let statement = b"exit-a announces 10.0.0.0/8 at seq 7";
        let signature = exit.sign(statement).expect("signs");
        let cert = exit.certificate().as_ref();
        ingress
            .check_signed("exit-a", cert, statement, &signature)
            .expect("genuine");

        let err = ingress
            .check_signed("exit-b", cert, statement, &signature)
            .expect_err("claimed by another agent");
        assert!(
            matches!(err, SignedStatementError::WrongSigner { .. }),
            "{err}"
        );
        let err = ingress
            .check_signed("exit-a", cert, b"exit-a announces 0.0.0.0/0", &signature)
            .expect_err("other words");
        assert!(matches!(err, SignedStatementError::BadSignature), "{err}");

        // A forger with its own valid certificate cannot sign in exit-a's name.
        let forger = agent(&ca, "forger", no_revocations());
        let forged = forger.sign(statement).expect("signs");
        let err = ingress
            .check_signed("exit-a", cert, statement, &forged)
            .expect_err("forged");
        assert!(matches!(err, SignedStatementError::BadSignature), "{err}");
    }

    #[test]
    fn a_statement_of_a_stranger_or_a_revoked_agent_is_refused() {
        let ours = AgentCa::from_secret(SECRET).expect("ca");
        let theirs = AgentCa::from_secret(OTHER_SECRET).expect("other ca");
        let ingress = agent(&ours, "ingress", revoking(&["gone"]));
        for (ca, name) in [(&theirs, "exit-a"), (&ours, "gone")] {
            let signer = agent(ca, name, no_revocations());
            let signature = signer.sign(b"routes").expect("signs");
            let err = ingress
                .check_signed(name, signer.certificate().as_ref(), b"routes", &signature)
                .expect_err("refused");
            assert!(
                matches!(err, SignedStatementError::CertificateRefused(_)),
                "{name}: {err}"
            );
        }
        let err = ingress
            .check_signed("exit-a", b"not a certificate", b"routes", b"sig")
            .expect_err("garbage");
        assert!(
            matches!(err, SignedStatementError::NotAnAgentCertificate(_)),
            "{err}"
        );
    }

    #[test]
    fn agent_names_come_only_from_agent_dns_names() {
        assert_eq!(
            agent_name_of_dns_name("gw-1.agents.tandem").as_deref(),
            Some("gw-1")
        );
        assert_eq!(
            agent_name_of_dns_name("a.b.agents.tandem").as_deref(),
            Some("a.b")
        );
        assert_eq!(agent_name_of_dns_name("agents.tandem"), None);
        assert_eq!(agent_name_of_dns_name(".agents.tandem"), None);
        assert_eq!(agent_name_of_dns_name("*.agents.tandem"), None);
        assert_eq!(agent_name_of_dns_name("cluster.tandem"), None);
        assert_eq!(peer_agent_name(&[]), None);
        assert_eq!(
            peer_agent_name(&[CertificateDer::from(vec![1, 2, 3])]),
            None
        );
    }
}
