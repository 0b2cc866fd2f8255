//! Secrets the servers hand out, join tokens for agents and scoped credentials for clients, as
//! their holders carry them: `<id>.<secret>`. The id finds the row; only a hash of the secret is
//! replicated, so a copy of the state (a backup, a snapshot) lets nobody in.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use rand::RngCore;

/// A secret as created: its id and the whole token to hand out.
pub struct IssuedSecret {
    pub id: String,
    pub token: String,
    pub secret_sha256: Vec<u8>,
}

pub fn issue_secret() -> IssuedSecret {
    let mut rng = rand::rng();
    let mut id = [0u8; 8];
    let mut secret = [0u8; 32];
    rng.fill_bytes(&mut id);
    rng.fill_bytes(&mut secret);
    let id: String = id.iter().map(|b| format!("{b:02x}")).collect();
    let secret = URL_SAFE_NO_PAD.encode(secret);
    IssuedSecret {
        token: format!("{id}.{secret}"),
        secret_sha256: sha256(&secret),
        id,
    }
}

/// A presented token's id and the hash of its secret; `None` when it is not shaped like one.
pub fn parse_issued(token: &str) -> Option<(String, Vec<u8>)> {
    let (id, secret) = token.trim().split_once('.')?;
    let hex_id = id.len() == 16 && id.bytes().all(|b| b.is_ascii_hexdigit());
    (hex_id && !secret.is_empty()).then(|| (id.to_string(), sha256(secret)))
}

fn sha256(secret: &str) -> Vec<u8> {
    aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, secret.as_bytes())
        .as_ref()
        .to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_token_parses_to_its_id_and_hash() {
        let new = issue_secret();
        let (id, hash) = parse_issued(&new.token).unwrap();
        assert_eq!(id, new.id);
        assert_eq!(hash, new.secret_sha256);
        assert_ne!(issue_secret().token, new.token);
    }

    #[test]
    fn malformed_tokens_do_not_parse() {
        for bad in [
            "",
            "nodot",
            "short.secret",
            "zzzzzzzzzzzzzzzz.secret",
            "0123456789abcdef.",
        ] {
            assert!(parse_issued(bad).is_none(), "{bad}");
        }
    }
}
