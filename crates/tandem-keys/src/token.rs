use std::collections::HashMap;

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey, Header, Validation};
use serde_json::Value;

use crate::{KeyError, SigningKey};

/// The claims of a token: any JSON object.
pub type Claims = serde_json::Map<String, Value>;

/// Claims the server sets on every token it issues; a request may not set them itself.
pub const SERVER_SET_CLAIMS: [&str; 3] = ["iss", "iat", "exp"];

/// Signs `claims` with `key`, adding `iss`, `iat` (now) and `exp` (now + ttl), in seconds.
pub fn issue_token(
    key: &SigningKey,
    issuer: &str,
    mut claims: Claims,
    now_secs: u64,
    ttl_secs: u64,
) -> Result<String, KeyError> {
    if let Some(reserved) = SERVER_SET_CLAIMS.iter().find(|c| claims.contains_key(**c)) {
        return Err(KeyError::Invalid(format!(
            "claim {reserved:?} is set by the server (iss, iat, exp); give \"ttl\" to choose the lifetime"
        )));
    }
    claims.insert("iss".into(), issuer.into());
    claims.insert("iat".into(), now_secs.into());
    claims.insert("exp".into(), now_secs.saturating_add(ttl_secs).into());
    key.sign(&claims)
}

/// Why a token was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("the token is malformed: {0}")]
    Malformed(String),
    #[error("the token was signed with key {0:?}, which no server of this cluster or configured peer publishes")]
    UnknownKey(String),
    #[error("the token's signature does not verify with key {0:?}")]
    BadSignature(String),
    #[error("the token has expired")]
    Expired,
    #[error("the token is not valid yet (its nbf is in the future)")]
    NotYetValid,
}

impl VerifyError {
    /// The error code the API answers with.
    pub fn code(&self) -> &'static str {
        match self {
            VerifyError::Malformed(_) => "token_malformed",
            VerifyError::UnknownKey(_) => "token_unknown_key",
            VerifyError::BadSignature(_) => "token_bad_signature",
            VerifyError::Expired => "token_expired",
            VerifyError::NotYetValid => "token_not_yet_valid",
        }
    }
}

/// The key id a token's header names, if it is readable at all.
pub fn token_key_id(token: &str) -> Option<String> {
    jsonwebtoken::decode_header(token).ok()?.kid
}

/// A public key ready to check signatures: decoded from its JWK once, with the validation rules
/// of its algorithm.
struct VerifyingKey {
    /// `None` for a published key whose algorithm this server cannot check: every token it
    /// signed has a bad signature.
    decoded: Option<(DecodingKey, Validation)>,
}

impl VerifyingKey {
    /// The key decides the algorithm, never the token: a token may not pick a weaker one. A
    /// JWK that names no algorithm takes the one the token's header names, checked per token.
    fn from_jwk(jwk: &Jwk, header_alg: Option<Algorithm>) -> VerifyingKey {
        let algorithm = match jwk.common.key_algorithm {
            Some(alg) => Algorithm::try_from(alg).ok(),
            None => header_alg,
        };
        let decoded = algorithm.and_then(|algorithm| {
            let key = DecodingKey::from_jwk(jwk).ok()?;
            let mut validation = Validation::new(algorithm);
            validation.leeway = 0;
            validation.validate_nbf = true;
            validation.validate_aud = false;
            validation.set_required_spec_claims(&["exp"]);
            Some((key, validation))
        });
        VerifyingKey { decoded }
    }
}

/// A key set decoded once, for verifying many tokens: build it again when the set changes.
#[derive(Default)]
pub struct VerifyingKeys {
    keys: HashMap<String, VerifyingKey>,
    /// Keys that name no algorithm: decoded per token, with the algorithm its header names.
    undecided: HashMap<String, Jwk>,
}

impl VerifyingKeys {
    pub fn new(set: &JwkSet) -> VerifyingKeys {
        let mut keys = VerifyingKeys::default();
        for jwk in &set.keys {
            let kid = jwk.common.key_id.clone().unwrap_or_default();
            if jwk.common.key_algorithm.is_some() {
                keys.keys.insert(kid, VerifyingKey::from_jwk(jwk, None));
            } else {
                keys.undecided.insert(kid, jwk.clone());
            }
        }
        keys
    }

    /// Whether the set holds the key `kid`.
    pub fn knows(&self, kid: &str) -> bool {
        self.keys.contains_key(kid) || self.undecided.contains_key(kid)
    }

    /// Checks a token as [`verify_token`] does, with the keys of this set.
    pub fn verify(&self, token: &str) -> Result<Claims, VerifyError> {
        let (header, kid) = read_header(token)?;
        if let Some(key) = self.keys.get(&kid) {
            return check(token, &header, kid, key);
        }
        let jwk = self
            .undecided
            .get(&kid)
            .ok_or_else(|| VerifyError::UnknownKey(kid.clone()))?;
        let key = VerifyingKey::from_jwk(jwk, Some(header.alg));
        check(token, &header, kid, &key)
    }
}

fn read_header(token: &str) -> Result<(Header, String), VerifyError> {
    let header = jsonwebtoken::decode_header(token)
        .map_err(|e| VerifyError::Malformed(format!("unreadable header: {e}")))?;
    let kid = header
        .kid
        .clone()
        .ok_or_else(|| VerifyError::Malformed("the header names no key (\"kid\")".into()))?;
    Ok((header, kid))
}

/// Checks a token's signature with the key its header names (looked up by `find_key`), then
/// its `exp` (required) and `nbf`, with no leeway. Answers its claims. To verify many tokens
/// with one key set, decode it once into [`VerifyingKeys`].
pub fn verify_token(
    token: &str,
    find_key: impl Fn(&str) -> Option<Jwk>,
) -> Result<Claims, VerifyError> {
    let (header, kid) = read_header(token)?;
    let jwk = find_key(&kid).ok_or_else(|| VerifyError::UnknownKey(kid.clone()))?;
    let key = VerifyingKey::from_jwk(&jwk, Some(header.alg));
    check(token, &header, kid, &key)
}

/// Checks the signature of `token` (whose header is `header`, naming `kid`) with `key`, then
/// its claims.
fn check(
    token: &str,
    header: &Header,
    kid: String,
    key: &VerifyingKey,
) -> Result<Claims, VerifyError> {
    let bad_signature = || VerifyError::BadSignature(kid.clone());
    let Some((key, validation)) = &key.decoded else {
        return Err(bad_signature());
    };
    if !validation.algorithms.contains(&header.alg) {
        return Err(bad_signature());
    }
    match jsonwebtoken::decode::<Claims>(token, key, validation) {
        Ok(data) => Ok(data.claims),
        Err(e) => Err(match e.into_kind() {
            ErrorKind::ExpiredSignature => VerifyError::Expired,
            ErrorKind::ImmatureSignature => VerifyError::NotYetValid,
            ErrorKind::InvalidToken => VerifyError::Malformed("not a JWT".into()),
            ErrorKind::Base64(e) => VerifyError::Malformed(format!("bad base64: {e}")),
            ErrorKind::Json(e) => VerifyError::Malformed(format!("bad JSON: {e}")),
            ErrorKind::Utf8(e) => VerifyError::Malformed(format!("bad UTF-8: {e}")),
            ErrorKind::MissingRequiredClaim(claim) => {
                VerifyError::Malformed(format!("the token has no {claim:?} claim"))
            }
            ErrorKind::InvalidClaimFormat(claim) => {
                VerifyError::Malformed(format!("claim {claim:?} has the wrong type"))
            }
            _ => bad_signature(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;

    use super::*;
    use crate::SigningAlgorithm;

    fn now() -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
    }

    fn claims(json: Value) -> Claims {
        json.as_object().unwrap().clone()
    }

    #[test]
    fn issued_tokens_verify_with_both_algorithms() {
        for algorithm in [SigningAlgorithm::Es256, SigningAlgorithm::Eddsa] {
            let key = SigningKey::generate(algorithm, "k1".into()).unwrap();
            let token = issue_token(
                &key,
                "tandem",
                claims(serde_json::json!({"sub": "ann"})),
                now(),
                60,
            )
            .unwrap();
            let found = |kid: &str| (kid == "k1").then(|| key.public_jwk().clone());
            let set = VerifyingKeys::new(&JwkSet {
                keys: vec![key.public_jwk().clone()],
            });
            assert_eq!(set.verify(&token), verify_token(&token, found));
            let verified = verify_token(&token, found).unwrap();
            assert_eq!(verified["sub"], "ann");
            assert_eq!(verified["iss"], "tandem");
            assert_eq!(
                verified["exp"].as_u64().unwrap() - verified["iat"].as_u64().unwrap(),
                60
            );
        }
    }

    #[test]
    fn each_failure_has_its_reason() {
        let key = SigningKey::generate(SigningAlgorithm::Es256, "k1".into()).unwrap();
        let other = SigningKey::generate(SigningAlgorithm::Es256, "k1".into()).unwrap();
        let find = |kid: &str| (kid == "k1").then(|| key.public_jwk().clone());
        let set = VerifyingKeys::new(&JwkSet {
            keys: vec![key.public_jwk().clone()],
        });
        assert!(set.knows("k1") && !set.knows("k9"));
        let by_lookup = |token: &str| verify_token(token, find);
        let by_set = |token: &str| set.verify(token);
        let verifiers: [Verify; 2] = [&by_lookup, &by_set];
        for verify in verifiers {
            check_failures(verify, &key, &other);
        }
    }

    /// One way to verify a token.
    type Verify<'a> = &'a dyn Fn(&str) -> Result<Claims, VerifyError>;

    fn check_failures(verify: Verify, key: &SigningKey, other: &SigningKey) {
        let sign = |k: &SigningKey, iat: u64, ttl: u64| {
            issue_token(k, "t", Claims::new(), iat, ttl).unwrap()
        };

        let expired = sign(key, now() - 100, 10);
        assert_eq!(verify(&expired), Err(VerifyError::Expired));

        let forged = sign(other, now(), 60);
        assert!(matches!(verify(&forged), Err(VerifyError::BadSignature(_))));

        // Change one claim and keep the signature.
        let good = sign(key, now(), 60);
        let parts: Vec<&str> = good.split('.').collect();
        let mut payload: Claims =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
        payload.insert("admin".into(), true.into());
        let tampered = format!(
            "{}.{}.{}",
            parts[0],
            URL_SAFE_NO_PAD.encode(serde_json::to_vec(&payload).unwrap()),
            parts[2]
        );
        assert!(matches!(
            verify(&tampered),
            Err(VerifyError::BadSignature(_))
        ));

        let stranger = SigningKey::generate(SigningAlgorithm::Es256, "k9".into()).unwrap();
        assert_eq!(
            verify(&sign(&stranger, now(), 60)),
            Err(VerifyError::UnknownKey("k9".into()))
        );
        assert!(matches!(verify("abc"), Err(VerifyError::Malformed(_))));
    }

    #[test]
    fn server_set_claims_cannot_be_given() {
        let key = SigningKey::generate(SigningAlgorithm::Es256, "k".into()).unwrap();
        let err =
            issue_token(&key, "t", claims(serde_json::json!({"exp": 1})), now(), 5).unwrap_err();
        assert!(err.to_string().contains("\"exp\""), "{err}");
    }
}
