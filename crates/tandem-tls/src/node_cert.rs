//! This node's certificate: issued by the derived CA (or read from files) and swapped in place on
//! rotation, so new handshakes use the new certificate while open connections carry on.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;
use rcgen::{
    CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, KeyPair,
    KeyUsagePurpose, SerialNumber, PKCS_ECDSA_P256_SHA256,
};
use rustls::client::ResolvesClientCert;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::SignatureScheme;

use crate::derived_ca::DerivedCa;
use crate::{TlsError, CLUSTER_SERVER_NAME};

/// Node certificates start this long before "now", so peers whose clocks lag still accept them.
const CLOCK_SKEW_ALLOWANCE: Duration = Duration::from_secs(5 * 60);

/// The per-node DNS name every derived node certificate carries besides [`CLUSTER_SERVER_NAME`].
pub fn node_dns_name(node_id: u64) -> String {
    format!("node-{node_id}.{CLUSTER_SERVER_NAME}")
}

/// Issues a fresh node certificate (new P-256 key, random serial) signed by `ca`, valid from a
/// little before `now` until `now + validity`.
pub(crate) fn issue_node_certificate(
    ca: &DerivedCa,
    node_id: u64,
    validity: Duration,
    now: SystemTime,
    provider: &CryptoProvider,
) -> Result<CertifiedKey, TlsError> {
    let node_name = node_dns_name(node_id);
    let names = vec![CLUSTER_SERVER_NAME.to_string(), node_name.clone()];
    issue_leaf(ca, names, &node_name, validity, now, provider)
}

/// Issues a certificate for `names` (DNS names or IP addresses) with a new P-256 key and a
/// random serial, signed by `ca`, valid from a little before `now` until `now + validity`.
pub(crate) fn issue_leaf(
    ca: &DerivedCa,
    names: Vec<String>,
    common_name: &str,
    validity: Duration,
    now: SystemTime,
    provider: &CryptoProvider,
) -> Result<CertifiedKey, TlsError> {
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
    let params = leaf_params(names, &[(DnType::CommonName, common_name)], now, validity)?;
    let certificate = params.signed_by(&key, ca.issuer())?;
    let key_der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
    CertifiedKey::from_der(vec![certificate.der().clone()], key_der, provider)
        .map_err(|e| TlsError::Config(format!("loading a freshly issued key: {e}")))
}

/// The parameters of a leaf certificate for `dns_names` with `subject`, valid from a little
/// before `now` for `validity`, with a random serial. Its holder is both a server and a client
/// (of the cluster channel, or of its mesh peers).
pub(crate) fn leaf_params(
    dns_names: Vec<String>,
    subject: &[(DnType, &str)],
    now: SystemTime,
    validity: Duration,
) -> Result<CertificateParams, TlsError> {
    let mut params = CertificateParams::new(dns_names)?;
    let mut name = DistinguishedName::new();
    for (kind, value) in subject {
        name.push(kind.clone(), *value);
    }
    params.distinguished_name = name;
    let not_after = now.checked_add(validity).ok_or_else(|| {
        TlsError::Config(format!("validity {validity:?} runs past the year 9999"))
    })?;
    set_validity(
        &mut params,
        now.checked_sub(CLOCK_SKEW_ALLOWANCE).unwrap_or(now),
        not_after,
    );
    params.serial_number = Some(random_serial()?);
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    params.use_authority_key_identifier_extension = true;
    Ok(params)
}

/// rcgen takes `time::OffsetDateTime`; counting from the Unix epoch avoids a direct `time`
/// dependency. X.509 times have whole seconds.
fn set_validity(params: &mut CertificateParams, from: SystemTime, until: SystemTime) {
    let seconds = |at: SystemTime| {
        Duration::from_secs(at.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs())
    };
    let epoch = rcgen::date_time_ymd(1970, 1, 1);
    params.not_before = epoch + seconds(from);
    params.not_after = epoch + seconds(until);
}

fn random_serial() -> Result<SerialNumber, TlsError> {
    let mut bytes = [0u8; 16];
    aws_lc_rs::rand::fill(&mut bytes)
        .map_err(|_| TlsError::Config("the system random generator failed".into()))?;
    // A positive INTEGER with no leading zero octet.
    bytes[0] = (bytes[0] & 0x7f) | 0x40;
    Ok(SerialNumber::from_slice(&bytes))
}

/// Hands the current node certificate to every handshake, server and client side alike.
#[derive(Debug)]
pub(crate) struct NodeCertResolver {
    current: ArcSwap<CertifiedKey>,
}

impl NodeCertResolver {
    pub(crate) fn new(initial: CertifiedKey) -> Self {
        Self {
            current: ArcSwap::from_pointee(initial),
        }
    }

    pub(crate) fn current(&self) -> Arc<CertifiedKey> {
        self.current.load_full()
    }

    pub(crate) fn replace(&self, next: CertifiedKey) {
        self.current.store(Arc::new(next));
    }
}

impl ResolvesServerCert for NodeCertResolver {
    fn resolve(&self, _client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
    }
}

impl ResolvesClientCert for NodeCertResolver {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        _sigschemes: &[SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
    }

    fn has_certs(&self) -> bool {
        true
    }
}
