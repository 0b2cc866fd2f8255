use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{
    EcdsaKeyPair, Ed25519KeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING,
};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::jwk::{
    AlgorithmParameters, CommonParameters, EllipticCurve, EllipticCurveKeyParameters,
    EllipticCurveKeyType, Jwk, OctetKeyPairParameters, OctetKeyPairType, PublicKeyUse,
};
use jsonwebtoken::{EncodingKey, Header};

use crate::{KeyError, SigningAlgorithm};

/// A server's private signing key with its id and the public half as a JWK.
pub struct SigningKey {
    kid: String,
    algorithm: SigningAlgorithm,
    pkcs8: Vec<u8>,
    encoding: EncodingKey,
    public_jwk: Jwk,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the private key.
        f.debug_struct("SigningKey")
            .field("kid", &self.kid)
            .field("algorithm", &self.algorithm)
            .finish()
    }
}

impl SigningKey {
    pub fn generate(algorithm: SigningAlgorithm, kid: String) -> Result<SigningKey, KeyError> {
        let rng = SystemRandom::new();
        let document = match algorithm {
            SigningAlgorithm::Es256 => {
                EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
            }
            SigningAlgorithm::Eddsa => Ed25519KeyPair::generate_pkcs8(&rng),
        }
        .map_err(|_| KeyError::Generate {
            algorithm: algorithm.name(),
        })?;
        SigningKey::from_pkcs8(algorithm, kid, document.as_ref().to_vec())
    }

    /// A key from its PKCS#8 DER encoding, as [`SigningKey::pkcs8`] gives it.
    pub fn from_pkcs8(
        algorithm: SigningAlgorithm,
        kid: String,
        pkcs8: Vec<u8>,
    ) -> Result<SigningKey, KeyError> {
        let unreadable = |e: &dyn std::fmt::Display| {
            KeyError::Invalid(format!("key {kid}: not a {algorithm} private key: {e}"))
        };
        let (params, encoding) = match algorithm {
            SigningAlgorithm::Es256 => {
                let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &pkcs8)
                    .map_err(|e| unreadable(&e))?;
                // An uncompressed P-256 point: 0x04, then x and y of 32 bytes each.
                let point = pair.public_key().as_ref();
                if point.len() != 65 {
                    return Err(unreadable(&"unexpected public key length"));
                }
                (
                    AlgorithmParameters::EllipticCurve(EllipticCurveKeyParameters {
                        key_type: EllipticCurveKeyType::EC,
                        curve: EllipticCurve::P256,
                        x: URL_SAFE_NO_PAD.encode(&point[1..33]),
                        y: URL_SAFE_NO_PAD.encode(&point[33..65]),
                    }),
                    EncodingKey::from_ec_der(&pkcs8),
                )
            }
            SigningAlgorithm::Eddsa => {
                let pair = Ed25519KeyPair::from_pkcs8(&pkcs8).map_err(|e| unreadable(&e))?;
                (
                    AlgorithmParameters::OctetKeyPair(OctetKeyPairParameters {
                        key_type: OctetKeyPairType::OctetKeyPair,
                        curve: EllipticCurve::Ed25519,
                        x: URL_SAFE_NO_PAD.encode(pair.public_key().as_ref()),
                    }),
                    EncodingKey::from_ed_der(&pkcs8),
                )
            }
        };
        let public_jwk = Jwk {
            common: CommonParameters {
                public_key_use: Some(PublicKeyUse::Signature),
                key_algorithm: Some(algorithm.jwt_algorithm().into()),
                key_id: Some(kid.clone()),
                ..Default::default()
            },
            algorithm: params,
        };
        Ok(SigningKey {
            kid,
            algorithm,
            pkcs8,
            encoding,
            public_jwk,
        })
    }

    pub fn kid(&self) -> &str {
        &self.kid
    }

    pub fn algorithm(&self) -> SigningAlgorithm {
        self.algorithm
    }

    /// The private key, PKCS#8 DER: only for storing it.
    pub fn pkcs8(&self) -> &[u8] {
        &self.pkcs8
    }

    pub fn public_jwk(&self) -> &Jwk {
        &self.public_jwk
    }

    /// Signs `claims` as a JWT with this key's id in the header.
    pub fn sign(
        &self,
        claims: &serde_json::Map<String, serde_json::Value>,
    ) -> Result<String, KeyError> {
        let mut header = Header::new(self.algorithm.jwt_algorithm());
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, claims, &self.encoding)
            .map_err(|e| KeyError::Sign(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_algorithms_round_trip_through_pkcs8() {
        for algorithm in [SigningAlgorithm::Es256, SigningAlgorithm::Eddsa] {
            let key = SigningKey::generate(algorithm, "k-1".into()).unwrap();
            let again =
                SigningKey::from_pkcs8(algorithm, "k-1".into(), key.pkcs8().to_vec()).unwrap();
            assert_eq!(key.public_jwk(), again.public_jwk());
            assert_eq!(key.public_jwk().common.key_id.as_deref(), Some("k-1"));
            assert!(key.sign(&serde_json::Map::new()).is_ok());
        }
    }

    #[test]
    fn the_wrong_algorithm_or_garbage_is_an_error() {
        let ec = SigningKey::generate(SigningAlgorithm::Es256, "k".into()).unwrap();
        assert!(
            SigningKey::from_pkcs8(SigningAlgorithm::Eddsa, "k".into(), ec.pkcs8().to_vec())
                .is_err()
        );
        assert!(
            SigningKey::from_pkcs8(SigningAlgorithm::Es256, "k".into(), vec![1, 2, 3]).is_err()
        );
    }
}
