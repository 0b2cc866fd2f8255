//! An independent JOSE implementation as a verifier: PyJWT, which fetches the key set over HTTP
//! the way a resource server does.

use serde_json::Value;

const VERIFY_SCRIPT: &str = r#"
import json, sys
import jwt
url, token = sys.argv[1], sys.argv[2]
key = jwt.PyJWKClient(url).get_signing_key_from_jwt(token)
claims = jwt.decode(token, key.key, algorithms=["ES256", "EdDSA"], options={"verify_aud": False})
print(json.dumps(claims))
"#;

/// Verifies `token` with PyJWT against the key set at `jwks_url`; answers the claims, or what
/// PyJWT said when it refused the token.
pub async fn verify_with_pyjwt(jwks_url: &str, token: &str) -> Result<Value, String> {
    let output = tokio::process::Command::new("python3")
        .args(["-c", VERIFY_SCRIPT, jwks_url, token])
        .output()
        .await
        .map_err(|e| format!("cannot run python3: {e}"))?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    if stderr.contains("No module named 'jwt'") {
        panic!("the JOSE cross-check needs PyJWT: pip install pyjwt cryptography (.ci/run installs it)");
    }
    if !output.status.success() {
        return Err(stderr.into_owned());
    }
    serde_json::from_slice(&output.stdout).map_err(|e| format!("PyJWT printed no claims: {e}"))
}
