//! Certificates for enrolled agents, issued by the agent CA for a public key the agent sent:
//! the agent's private key never leaves it. Agents present these to each other when they peer.

use std::time::{Duration, SystemTime};

use rcgen::{DnType, PublicKeyData, SignatureAlgorithm, PKCS_ECDSA_P256_SHA256};

use crate::derived_ca::{CaPurpose, DerivedCa};
use crate::node_cert::leaf_params;
use crate::TlsError;

/// How long an agent certificate is valid.
pub const AGENT_CERT_VALIDITY: Duration = Duration::from_secs(365 * 24 * 3600);

/// The DNS name an agent's certificate carries, from its name.
pub fn agent_dns_name(name: &str) -> String {
    format!("{name}.agents.tandem")
}

/// The agent CA of a cluster secret: every server derives the same one, so any server can
/// enrol an agent.
#[derive(Debug)]
pub struct AgentCa {
    ca: DerivedCa,
}

/// An uncompressed P-256 public key (0x04, x, y), as rcgen signs it into a certificate.
struct P256PublicKey(Vec<u8>);

impl PublicKeyData for P256PublicKey {
    fn der_bytes(&self) -> &[u8] {
        &self.0
    }

    fn algorithm(&self) -> &'static SignatureAlgorithm {
        &PKCS_ECDSA_P256_SHA256
    }
}

impl AgentCa {
    pub fn from_secret(secret: &str) -> Result<Self, TlsError> {
        Ok(Self {
            ca: DerivedCa::derive(secret, CaPurpose::Agents)?,
        })
    }

    /// The CA's certificate in PEM, which agents trust for each other.
    pub fn certificate_pem(&self) -> String {
        self.ca.certificate_pem().to_string()
    }

    /// Issues a certificate for agent `name` of `pool` over the public key given as the P-256
    /// point's coordinates `x` and `y` (32 bytes each, as a JWK carries them).
    pub fn issue(
        &self,
        name: &str,
        pool: &str,
        x: &[u8],
        y: &[u8],
        now: SystemTime,
    ) -> Result<String, TlsError> {
        if x.len() != 32 || y.len() != 32 {
            return Err(TlsError::Config(format!(
                "an agent key must be a P-256 point (32-byte x and y), got {} and {} bytes",
                x.len(),
                y.len()
            )));
        }
        let mut point = Vec::with_capacity(65);
        point.push(0x04);
        point.extend_from_slice(x);
        point.extend_from_slice(y);
        let params = leaf_params(
            vec![agent_dns_name(name)],
            &[
                (DnType::CommonName, name),
                (DnType::OrganizationalUnitName, pool),
            ],
            now,
            AGENT_CERT_VALIDITY,
        )?;
        let certificate = params.signed_by(&P256PublicKey(point), self.ca.issuer())?;
        Ok(certificate.pem())
    }
}

#[cfg(test)]
mod tests {
    use rcgen::{KeyPair, PKCS_ECDSA_P256_SHA256};

    use super::*;

    #[test]
    fn an_agent_certificate_carries_its_name_and_the_agents_key() {
        let ca = AgentCa::from_secret("0123456789abcdef-secret").unwrap();
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
        let point = key.public_key_raw();
        let pem = ca
            .issue(
                "gw-1",
                "vpn",
                &point[1..33],
                &point[33..65],
                SystemTime::now(),
            )
            .unwrap();
        assert!(pem.starts_with("-----BEGIN CERTIFICATE-----"));
        assert!(ca.certificate_pem().contains("BEGIN CERTIFICATE"));
        assert!(ca
            .issue("gw-1", "vpn", &[1; 31], &[2; 32], SystemTime::now())
            .is_err());
    }
}
