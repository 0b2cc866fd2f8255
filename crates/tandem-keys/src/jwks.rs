use std::collections::BTreeSet;

use jsonwebtoken::jwk::{AlgorithmParameters, Jwk, JwkSet};

/// A public key as a verifier may use it: it has an id and is not a shared secret, since a
/// symmetric key in a public set would let anyone who reads the set forge tokens.
fn usable(jwk: &Jwk) -> Result<(), String> {
    if jwk.common.key_id.as_deref().unwrap_or_default().is_empty() {
        return Err("the key has no \"kid\"".into());
    }
    match jwk.algorithm {
        AlgorithmParameters::EllipticCurve(_)
        | AlgorithmParameters::RSA(_)
        | AlgorithmParameters::OctetKeyPair(_) => Ok(()),
        AlgorithmParameters::OctetKey(_) => Err("symmetric keys are never published".into()),
        _ => Err("unsupported key type".into()),
    }
}

/// Reads one published public key (as the replicated state holds it).
pub fn public_jwk_from_json(text: &str) -> Result<Jwk, String> {
    let jwk: Jwk = serde_json::from_str(text).map_err(|e| format!("not a JWK: {e}"))?;
    usable(&jwk)?;
    Ok(jwk)
}

/// Reads a key set fetched from a peer. Keys this server cannot use are left out rather than
/// failing the whole set; a body that is not a key set at all is an error.
pub fn parse_jwks(body: &[u8]) -> Result<Vec<Jwk>, String> {
    #[derive(serde::Deserialize)]
    struct RawSet {
        keys: Vec<serde_json::Value>,
    }
    let raw: RawSet =
        serde_json::from_slice(body).map_err(|e| format!("not a JWKS document: {e}"))?;
    Ok(raw
        .keys
        .into_iter()
        .filter_map(|key| serde_json::from_value::<Jwk>(key).ok())
        .filter(|jwk| usable(jwk).is_ok())
        .collect())
}

/// The set every server serves: the cluster's own keys, then peers' keys whose ids the cluster
/// does not already use (a peer cannot shadow a cluster key).
pub fn merge_jwks(cluster: Vec<Jwk>, peers: impl IntoIterator<Item = Jwk>) -> JwkSet {
    let mut seen = BTreeSet::new();
    let keys = cluster
        .into_iter()
        .chain(peers)
        .filter(|jwk| seen.insert(jwk.common.key_id.clone().unwrap_or_default()))
        .collect();
    JwkSet { keys }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{SigningAlgorithm, SigningKey};

    fn jwk(kid: &str) -> Jwk {
        SigningKey::generate(SigningAlgorithm::Es256, kid.into())
            .unwrap()
            .public_jwk()
            .clone()
    }

    #[test]
    fn cluster_keys_win_over_peer_keys_with_the_same_id() {
        let ours = jwk("a");
        let merged = merge_jwks(vec![ours.clone()], vec![jwk("a"), jwk("b")]);
        assert_eq!(merged.keys.len(), 2);
        assert_eq!(merged.keys[0], ours);
    }

    #[test]
    fn peer_sets_drop_unusable_keys_and_reject_garbage() {
        let good = serde_json::to_value(jwk("p1")).unwrap();
        let body = serde_json::json!({"keys": [
            good,
            {"kty": "oct", "kid": "secret", "k": "c2VjcmV0"},
            {"kty": "EC", "crv": "P-256"},
            {"kty": "weird"},
        ]});
        let keys = parse_jwks(body.to_string().as_bytes()).unwrap();
        assert_eq!(keys.len(), 1);
        assert!(parse_jwks(b"<html>").is_err());
        assert!(parse_jwks(b"{\"keys\": 3}").is_err());
    }

    #[test]
    fn published_keys_need_an_id_and_a_public_type() {
        let text = serde_json::to_string(&jwk("x")).unwrap();
        assert!(public_jwk_from_json(&text).is_ok());
        assert!(public_jwk_from_json(r#"{"kty":"oct","kid":"s","k":"c2VjcmV0"}"#).is_err());
        assert!(public_jwk_from_json("{}").is_err());
    }
}
