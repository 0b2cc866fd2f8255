use std::fmt;
use std::str::FromStr;

use jsonwebtoken::Algorithm;

/// The signature algorithm of a server's own keys.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SigningAlgorithm {
    /// ECDSA on P-256 with SHA-256: what most JWT libraries verify.
    Es256,
    /// Ed25519: smaller and faster, supported by fewer verifiers.
    Eddsa,
}

impl SigningAlgorithm {
    pub fn jwt_algorithm(self) -> Algorithm {
        match self {
            SigningAlgorithm::Es256 => Algorithm::ES256,
            SigningAlgorithm::Eddsa => Algorithm::EdDSA,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            SigningAlgorithm::Es256 => "es256",
            SigningAlgorithm::Eddsa => "eddsa",
        }
    }
}

impl FromStr for SigningAlgorithm {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "es256" => Ok(SigningAlgorithm::Es256),
            "eddsa" | "ed25519" => Ok(SigningAlgorithm::Eddsa),
            _ => Err(format!(
                "signing algorithm {s:?} is not known; use es256 or eddsa"
            )),
        }
    }
}

impl fmt::Display for SigningAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}
