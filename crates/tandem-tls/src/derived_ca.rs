//! CAs derived from the cluster secret: every node that knows the secret computes the same
//! Ed25519 key and the same self-signed certificate, so no CA material is ever exchanged. Two
//! CAs come from one secret, with different labels: the cluster CA, which signs the nodes'
//! certificates for the cluster channel, and the agent CA, which signs enrolled agents'
//! certificates. An agent's certificate therefore never passes the cluster channel's handshake.

use aws_lc_rs::hkdf;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, PKCS_ED25519,
};
use rustls::pki_types::{CertificateDer, PrivatePkcs8KeyDer};

use crate::TlsError;

/// The shortest the cluster secret (`secret_cluster`) from which a CA is derived.
pub const MIN_SECRET_LEN: usize = 16;

/// Subject common name of every derived cluster CA. The subject is fixed per secret (see
/// `ca_params`), so all nodes build the same anchor.
pub const DERIVED_CA_COMMON_NAME: &str = "Tandem cluster CA";

/// Subject common name of every derived agent CA.
pub const AGENT_CA_COMMON_NAME: &str = "Tandem agent CA";

/// Subject common name of every derived API CA.
pub const API_CA_COMMON_NAME: &str = "Tandem API CA";

/// What a derived CA signs; each purpose has its own labels, so its own key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CaPurpose {
    /// Node certificates for the cluster channel.
    Cluster,
    /// Certificates of enrolled agents.
    Agents,
    /// The servers' certificates on the client API (`api_tls = "auto"`). A CA of its own, so a
    /// client that trusts it trusts no cluster-channel certificate.
    Api,
}

impl CaPurpose {
    // Changing a salt changes every CA of that purpose: it is a new cluster-wide trust root.
    fn hkdf_salt(self) -> &'static [u8] {
        match self {
            CaPurpose::Cluster => b"tandem cluster ca v1",
            CaPurpose::Agents => b"tandem agent ca v1",
            CaPurpose::Api => b"tandem api ca v1",
        }
    }

    fn common_name(self) -> &'static str {
        match self {
            CaPurpose::Cluster => DERIVED_CA_COMMON_NAME,
            CaPurpose::Agents => AGENT_CA_COMMON_NAME,
            CaPurpose::Api => API_CA_COMMON_NAME,
        }
    }
}

const HKDF_INFO: &[u8] = b"ed25519 seed";

/// PKCS#8 v1 (RFC 8410) wrapping of a 32-byte Ed25519 seed, up to the seed itself.
const ED25519_PKCS8_PREFIX: [u8; 16] = [
    0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
];

/// The CA derived from one secret: its certificate (a trust anchor) and its signing key.
pub struct DerivedCa {
    purpose: CaPurpose,
    certificate: CertificateDer<'static>,
    certificate_pem: String,
    issuer: Issuer<'static, KeyPair>,
}

impl DerivedCa {
    /// Derives the cluster CA of `secret`. The same secret gives a byte-identical certificate on
    /// every node.
    pub fn from_secret(secret: &str) -> Result<Self, TlsError> {
        Self::derive(secret, CaPurpose::Cluster)
    }

    /// Derives the CA of `secret` for `purpose`.
    pub fn derive(secret: &str, purpose: CaPurpose) -> Result<Self, TlsError> {
        let len = secret.chars().count();
        if len < MIN_SECRET_LEN {
            return Err(TlsError::SecretTooShort {
                which: "secret_cluster",
                len,
                min: MIN_SECRET_LEN,
            });
        }
        let seed = derive_seed(secret.as_bytes(), purpose.hkdf_salt())?;
        let mut pkcs8 = Vec::with_capacity(ED25519_PKCS8_PREFIX.len() + seed.len());
        pkcs8.extend_from_slice(&ED25519_PKCS8_PREFIX);
        pkcs8.extend_from_slice(&seed);
        let key =
            KeyPair::from_pkcs8_der_and_sign_algo(&PrivatePkcs8KeyDer::from(pkcs8), &PKCS_ED25519)?;

        let params = ca_params(&key, purpose.common_name());
        // Ed25519 signatures are deterministic and the parameters fixed (rcgen's default validity
        // 1975..4096, serial from the public key), so every node gets the same bytes.
        let self_signed = params.self_signed(&key)?;
        Ok(Self {
            purpose,
            certificate: self_signed.der().clone(),
            certificate_pem: self_signed.pem(),
            issuer: Issuer::new(params, key),
        })
    }

    /// The self-signed CA certificate, to be trusted by every node.
    pub fn certificate(&self) -> &CertificateDer<'static> {
        &self.certificate
    }

    /// The same certificate in PEM.
    pub fn certificate_pem(&self) -> &str {
        &self.certificate_pem
    }

    /// Signs the certificates of its purpose.
    pub(crate) fn issuer(&self) -> &Issuer<'static, KeyPair> {
        &self.issuer
    }
}

impl std::fmt::Debug for DerivedCa {
    // Never print the key.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DerivedCa")
            .field("common_name", &self.purpose.common_name())
            .finish_non_exhaustive()
    }
}

/// The subject also names the CA's key, so the CAs of two secrets differ in name: a peer of
/// another secret is refused as "unknown issuer", not as a bad signature, and with two trusted
/// secrets each certificate is checked against its own anchor only.
fn ca_params(key: &KeyPair, common_name: &str) -> CertificateParams {
    let mut params = CertificateParams::default();
    let mut name = DistinguishedName::new();
    name.push(DnType::CommonName, common_name);
    name.push(DnType::OrganizationalUnitName, ca_key_id(key));
    params.distinguished_name = name;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params
}

/// `ca-` and the first 8 bytes of SHA-256 over the CA's public key, in hex.
fn ca_key_id(key: &KeyPair) -> String {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, key.public_key_raw());
    let hex: String = digest.as_ref()[..8]
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect();
    format!("ca-{hex}")
}

/// HKDF-SHA256 over the secret with fixed labels: the Ed25519 seed of the cluster CA.
fn derive_seed(secret: &[u8], salt: &[u8]) -> Result<[u8; 32], TlsError> {
    struct SeedLen;
    impl hkdf::KeyType for SeedLen {
        fn len(&self) -> usize {
            32
        }
    }
    let failed = |_| TlsError::DeriveCa("HKDF-SHA256 expand rejected its output length".into());
    let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, salt).extract(secret);
    let okm = prk.expand(&[HKDF_INFO], SeedLen).map_err(failed)?;
    let mut seed = [0u8; 32];
    okm.fill(&mut seed).map_err(failed)?;
    Ok(seed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_secret_gives_the_same_certificate() {
        let a = DerivedCa::from_secret("0123456789abcdef-secret").expect("derive a");
        let b = DerivedCa::from_secret("0123456789abcdef-secret").expect("derive b");
        assert_eq!(a.certificate(), b.certificate());
    }

    #[test]
    fn different_secrets_give_different_certificates() {
        let a = DerivedCa::from_secret("0123456789abcdef-one").expect("derive a");
        let b = DerivedCa::from_secret("0123456789abcdef-two").expect("derive b");
        assert_ne!(a.certificate(), b.certificate());
    }

    #[test]
    fn the_agent_ca_differs_from_the_cluster_ca_of_the_same_secret() {
        let secret = "0123456789abcdef-secret";
        let cluster = DerivedCa::from_secret(secret).expect("cluster");
        let agents = DerivedCa::derive(secret, CaPurpose::Agents).expect("agents");
        assert_ne!(cluster.certificate(), agents.certificate());
        let again = DerivedCa::derive(secret, CaPurpose::Agents).expect("agents again");
        assert_eq!(agents.certificate(), again.certificate());
    }

    #[test]
    fn short_secret_is_refused_with_advice() {
        let err = DerivedCa::from_secret("short").expect_err("must refuse");
        let message = err.to_string();
        assert!(message.contains("5 characters"), "{message}");
        assert!(message.contains("TANDEM_SECRET_CLUSTER"), "{message}");
    }
}
